"""The operator's one configuration file for a Shuyu (数域) installation.

Set Shuyu's knobs below (each is documented: `jupyterhub --help-all | grep -A3 Shuyu`,
or read hub/shuyu_platform/settings.py), and any JupyterHub option as usual.
`# --- Differential-privacy queries -----------------------------------------------
# c.Shuyu.dp_engine = "shuyu_platform.dp.opendp_engine:OpenDpEngine"  # env SHUYU_DP_ENGINE
# c.Shuyu.dp_refund_failures = True                 # env SHUYU_DP_REFUND_FAILURES=0

configure(c)` must come last: it validates the dataset policies (a malformed one
stops the hub with file, line and field), prepares the state folders and the
platform database, and fills in every hub option you did not set yourself.
"""

from shuyu_platform.hubconfig import configure

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

# --- Where state lives (every data zone) and the platform database -------------
# c.Shuyu.home = "/srv/shuyu"                      # env SHUYU_HOME; demo: ./.shuyu
# c.Shuyu.db_url = "postgresql+psycopg://shuyu@db/shuyu"   # env SHUYU_DB_URL
# c.Shuyu.policies_dir = "/etc/shuyu/policies"      # env SHUYU_POLICIES_DIR

# --- Network (the demo listens on 127.0.0.1 only) --------------------------------
# c.Shuyu.ip = "127.0.0.1"                          # env SHUYU_IP
# c.Shuyu.port = 8000                               # env SHUYU_PORT

# --- Isolation of single-user servers --------------------------------------------
# c.Shuyu.spawner = "local"                         # env SHUYU_SPAWNER
# c.Shuyu.allow_terminals = False                   # env SHUYU_ALLOW_TERMINALS=1

# --- Differential-privacy queries -----------------------------------------------
# c.Shuyu.dp_engine = "shuyu_platform.dp.opendp_engine:OpenDpEngine"  # env SHUYU_DP_ENGINE
# Spark engine (`make install-tumult`): "shuyu_platform.dp.spark_engine:SparkEngine"
# c.Shuyu.spark_master = "local[*]"                # env SHUYU_SPARK_MASTER; spark://..., k8s://...
# c.Shuyu.spark_conf = ["spark.executor.memory=8g"]  # env SHUYU_SPARK_CONF (space-separated)
# c.Shuyu.spark_raw_url = "s3a://bucket/raw"       # env SHUYU_SPARK_RAW_URL; empty: the raw zone
# c.Shuyu.data_memory_limit = "2G"                  # env SHUYU_DATA_MEMORY_LIMIT

configure(c)
