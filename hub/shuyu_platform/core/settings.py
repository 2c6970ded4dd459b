"""The operator's knobs for Shuyu, declared once as traitlets traits.

An operator sets them in ``jupyterhub_config.py`` exactly as they set JupyterHub's
own options (``c.Shuyu.home = "/srv/shuyu"``). Every knob also has an environment
variable (named in its help) so that the demo, the tests and container images can
point a stock config file somewhere else without editing it.

The platform service is a separate process: it receives the few settings it needs
through its environment (:meth:`Shuyu.service_environment`) and rebuilds a
:class:`Shuyu` from them with :meth:`Shuyu.from_environment`.
"""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Bool, Float, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from .workdays import Calendar, parse_dates

#: The repository root (where ``jupyterhub_config.py`` and ``policies/`` live).
REPO_ROOT = Path(__file__).resolve().parents[3]
#: The platform's matplotlib defaults (a CJK font first, for Chinese labels): read by
#: sandboxes and dashboard kernels through ``MATPLOTLIBRC``, and by the platform's charts.
MATPLOTLIBRC = REPO_ROOT / "kernels" / "matplotlibrc"

#: Data zones under the state root, with who may read each (ARCHITECTURE.md § Data zones).
ZONES: dict[str, str] = {
    "raw": "source Parquet; read by the DP service and the masking job only",
    "views": "masked Parquet per tenant; read-only in that tenant's sandboxes",
    "synthetic": "synthetic twins of every dataset; every tenant",
    "imports": "merchants' approved imports, identifiers pseudonymised; read-only in that "
    "tenant's sandboxes",
    "work": "per-user notebooks and scratch",
    "outbox": "frozen snapshots of egress requests; review service only",
    "released": "approved, watermarked artefacts; review service, requester, dashboards",
    "published": "approved dashboard notebooks; Voila service only",
    "db": "the platform database (SQLite by default)",
    "hub": "JupyterHub's own state: its database, cookie secret, accounts",
    "run": "per-server relay sockets and generated /etc files of running sandboxes",
    "logs": "each sandbox's stdout and stderr; operators only, never mounted in a sandbox",
    "jobs": "frozen job code, production inputs and run folders; the sealed runner only",
}


def _env(name: str, fallback: str) -> str:
    value = os.environ.get(name, "")
    return value if value else fallback


#: Smallest image mkfs.ext4 makes with a journal, and the smallest disk quota accepted.
MIN_DISK_QUOTA_BYTES = 16 * 1024**2


def parse_size(text: str) -> int:
    """Bytes of a disk quota: ``'5G'``, ``'512M'``, ``'64K'`` or a plain number (binary units)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = 1
    for suffix, multiple in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if value.endswith(suffix):
            value, factor = value[:-1], multiple
            break
    try:
        size = int(float(value) * factor)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 5G, 512M)") from None
    if size < MIN_DISK_QUOTA_BYTES:
        raise ValueError(f"a disk quota of {text!r} is below the smallest image (16M)")
    return size


class Shuyu(Configurable):
    """Everything an operator can set about a Shuyu installation."""

    home = Unicode(
        help="""State root holding every data zone (raw/, views/, synthetic/, work/, outbox/,
        released/, published/, db/, hub/). Env: SHUYU_HOME. Default: .shuyu/ in the
        repository, which suits the demo only.""",
    ).tag(config=True)

    @default("home")
    def _default_home(self) -> str:
        return _env("SHUYU_HOME", str(REPO_ROOT / ".shuyu"))

    @validate("home")
    def _absolute_home(self, proposal: dict) -> str:
        return str(Path(proposal["value"]).expanduser().resolve())

    db_url = Unicode(
        help="""SQLAlchemy URL of the platform database (catalogue state, audit chain,
        budgets, requests). Env: SHUYU_DB_URL. Default: SQLite in WAL mode under
        <home>/db/. Use postgresql+psycopg://... in production.""",
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return _env("SHUYU_DB_URL", f"sqlite:///{Path(self.home) / 'db' / 'shuyu.sqlite'}")

    policies_dir = Unicode(
        help="""Folder of dataset policy files (one YAML per dataset), validated at start-up:
        a malformed policy stops the hub. Env: SHUYU_POLICIES_DIR.""",
    ).tag(config=True)

    @default("policies_dir")
    def _default_policies_dir(self) -> str:
        return _env("SHUYU_POLICIES_DIR", str(REPO_ROOT / "policies"))

    ip = Unicode(
        help="Address the public proxy listens on. Env: SHUYU_IP. Default 127.0.0.1.",
    ).tag(config=True)

    @default("ip")
    def _default_ip(self) -> str:
        return _env("SHUYU_IP", "127.0.0.1")

    port = Integer(help="Public port of the proxy. Env: SHUYU_PORT. Default 8000.").tag(config=True)

    @default("port")
    def _default_port(self) -> int:
        return int(_env("SHUYU_PORT", "8000"))

    proxy_api_port = Integer(
        help="Port of the proxy's REST API on 127.0.0.1. Env: SHUYU_PROXY_API_PORT. "
        "Default: port + 1.",
    ).tag(config=True)

    @default("proxy_api_port")
    def _default_proxy_api_port(self) -> int:
        return int(_env("SHUYU_PROXY_API_PORT", str(self.port + 1)))

    hub_port = Integer(
        help="Port the hub itself listens on, on 127.0.0.1. Env: SHUYU_HUB_PORT. Default 8081.",
    ).tag(config=True)

    @default("hub_port")
    def _default_hub_port(self) -> int:
        return int(_env("SHUYU_HUB_PORT", "8081"))

    service_port = Integer(
        help="Port of the platform service (catalogue, audit, DP, review) on 127.0.0.1. "
        "Env: SHUYU_SERVICE_PORT. Default 10101.",
    ).tag(config=True)

    @default("service_port")
    def _default_service_port(self) -> int:
        return int(_env("SHUYU_SERVICE_PORT", "10101"))

    dashboards_port = Integer(
        help="Port of the Voila service of published dashboards. It listens on the public "
        "address (ip) itself, not behind the proxy: dashboards are merchant content and get "
        "an origin of their own. Env: SHUYU_DASHBOARDS_PORT. Default 10102.",
    ).tag(config=True)

    @default("dashboards_port")
    def _default_dashboards_port(self) -> int:
        return int(_env("SHUYU_DASHBOARDS_PORT", "10102"))

    dashboards_url = Unicode(
        help="""Public origin of the dashboards service (scheme://host:port), which must
        differ from the platform's in its host name, not only its port (browsers share
        cookies across ports), e.g. https://dashboards.example.org behind a TLS
        terminator. Env: SHUYU_DASHBOARDS_URL. Default: http://localhost:<dashboards_port>
        when the platform is on 127.0.0.1 (the demo), else http://<ip>:<dashboards_port>.""",
    ).tag(config=True)

    @default("dashboards_url")
    def _default_dashboards_url(self) -> str:
        host = "localhost" if self.ip in ("127.0.0.1", "") else self.ip
        return _env("SHUYU_DASHBOARDS_URL", f"http://{host}:{self.dashboards_port}")

    @validate("dashboards_url", "public_hub_url")
    def _origin_only(self, proposal: dict) -> str:
        return str(proposal["value"]).rstrip("/")

    public_hub_url = Unicode(
        help="""Public origin of the platform (scheme://host[:port]) as browsers reach it,
        e.g. https://shuyu.example.org behind an Ingress or TLS terminator. Published
        dashboards, on their own origin, send viewers there to sign in (the hub's OAuth
        login page), and the demo prints it. Env: SHUYU_PUBLIC_HUB_URL. Default:
        http://<ip>:<port>, the proxy's own address.""",
    ).tag(config=True)

    @default("public_hub_url")
    def _default_public_hub_url(self) -> str:
        return _env("SHUYU_PUBLIC_HUB_URL", f"http://{self.ip}:{self.port}")

    spawner = Unicode(
        help="""How single-user servers are isolated: 'sandbox' (bubblewrap namespaces, the
        default), 'docker' (one host, production), 'local' (plain processes: NO isolation,
        development only), or a spawner class's import path. Env: SHUYU_SPAWNER.""",
    ).tag(config=True)

    @default("spawner")
    def _default_spawner(self) -> str:
        return _env("SHUYU_SPAWNER", "sandbox")

    mem_limit = Unicode(
        help="""Memory limit of one single-user server and its kernels, e.g. '2G'.
        Env: SHUYU_MEM_LIMIT.""",
    ).tag(config=True)

    @default("mem_limit")
    def _default_mem_limit(self) -> str:
        return _env("SHUYU_MEM_LIMIT", "2G")

    disk_quota = Unicode(
        help="""Disk space of one tenant, shared by its users' work folders, e.g. '5G'.
        Each tenant's folders live in a filesystem image of this size (sandbox spawner;
        a PersistentVolumeClaim of this size on Kubernetes), so a full home gets ENOSPC
        and the platform's own filesystem is untouched. Env: SHUYU_DISK_QUOTA.
        Default 5G.""",
    ).tag(config=True)

    @default("disk_quota")
    def _default_disk_quota(self) -> str:
        return _env("SHUYU_DISK_QUOTA", "5G")

    @validate("disk_quota")
    def _valid_disk_quota(self, proposal: dict) -> str:
        try:
            parse_size(proposal["value"])
        except ValueError as exc:
            raise TraitError(f"c.Shuyu.disk_quota: {exc}") from None
        return proposal["value"]

    cpu_limit = Float(
        help="CPUs one single-user server may use (e.g. 1.5). Env: SHUYU_CPU_LIMIT.",
    ).tag(config=True)

    @default("cpu_limit")
    def _default_cpu_limit(self) -> float:
        return float(_env("SHUYU_CPU_LIMIT", "1.0"))

    cull_idle_seconds = Integer(
        help="""Stop a single-user server after this many seconds without activity
        (0: never). Env: SHUYU_CULL_IDLE_SECONDS. Default one hour.""",
    ).tag(config=True)

    @default("cull_idle_seconds")
    def _default_cull_idle_seconds(self) -> int:
        return int(_env("SHUYU_CULL_IDLE_SECONDS", "3600"))

    allow_terminals = Bool(
        help="""Give merchants terminals in their servers. Off by default: a terminal is one
        more way to look at and copy files; the egress guard refuses its routes unless this
        is on. Env: SHUYU_ALLOW_TERMINALS=1.""",
    ).tag(config=True)

    @default("allow_terminals")
    def _default_allow_terminals(self) -> bool:
        return _env("SHUYU_ALLOW_TERMINALS", "0") == "1"

    server_template = Bool(
        help="""Start each sandbox's server as a fork of the server template, a process
        beside the hub that has imported a server once, instead of in a new interpreter:
        a start then costs about a sixth of the CPU (sandbox spawner; a server command
        other than the default always starts on its own). Env: SHUYU_SERVER_TEMPLATE
        (1 or 0). Default on.""",
    ).tag(config=True)

    @default("server_template")
    def _default_server_template(self) -> bool:
        return _env("SHUYU_SERVER_TEMPLATE", "1") == "1"

    egress_approvals_required = Integer(
        help="""Reviewers who must approve an egress request before it is approved: 1, or 2
        for the two-reviewer rule. Env: SHUYU_EGRESS_APPROVALS. Default 1.""",
    ).tag(config=True)

    @default("egress_approvals_required")
    def _default_egress_approvals_required(self) -> int:
        return int(_env("SHUYU_EGRESS_APPROVALS", "1"))

    @validate("egress_approvals_required")
    def _one_or_two(self, proposal: dict) -> int:
        if proposal["value"] not in (1, 2):
            raise ValueError("egress_approvals_required must be 1 or 2")
        return int(proposal["value"])

    tenant_reports_per_minute = Integer(
        help="""Most events one user's sandbox may report a minute (e.g. the in-sandbox
        guard's egress.blocked records); past that the platform answers 429 and records
        one report.rate_limited event a minute. Env: SHUYU_TENANT_REPORTS_PER_MINUTE.
        Default 30.""",
    ).tag(config=True)

    @default("tenant_reports_per_minute")
    def _default_tenant_reports_per_minute(self) -> int:
        return int(_env("SHUYU_TENANT_REPORTS_PER_MINUTE", "30"))

    compliance_review_days = Integer(
        help="""Working days the operator's compliance check of a scenario application may
        take (R20). Env: SHUYU_COMPLIANCE_DAYS. Default 5.""",
    ).tag(config=True)

    @default("compliance_review_days")
    def _default_compliance_review_days(self) -> int:
        return int(_env("SHUYU_COMPLIANCE_DAYS", "5"))

    source_review_days = Integer(
        help="""Working days the source departments' review of a scenario application may
        take (R20). Env: SHUYU_SOURCE_REVIEW_DAYS. Default 10.""",
    ).tag(config=True)

    @default("source_review_days")
    def _default_source_review_days(self) -> int:
        return int(_env("SHUYU_SOURCE_REVIEW_DAYS", "10"))

    registration_review_days = Integer(
        help="""Working days the operator has to answer a merchant's registration (R18).
        Env: SHUYU_REGISTRATION_DAYS. Default 5.""",
    ).tag(config=True)

    @default("registration_review_days")
    def _default_registration_review_days(self) -> int:
        return int(_env("SHUYU_REGISTRATION_DAYS", "5"))

    login_lockout_failures = Integer(
        5,
        help="""Wrong passwords in a row after which an account refuses every login for
        login_lockout_minutes (audited as auth.lockout).""",
    ).tag(config=True)

    login_lockout_minutes = Integer(
        15, help="Minutes an account stays locked after login_lockout_failures wrong passwords."
    ).tag(config=True)

    password_hash_cost = Integer(
        help="""bcrypt cost (log2 of its rounds) of the password hashes the platform writes;
        an existing hash keeps the cost it was made with, and a login to an unknown account
        spends the time of this cost. Env: SHUYU_PASSWORD_HASH_COST. Default 12 (about
        0.3 s a login on one core); bcrypt accepts 4 to 31. Lower it only where passwords
        protect nothing (the test suite uses 4).""",
    ).tag(config=True)

    @default("password_hash_cost")
    def _default_password_hash_cost(self) -> int:
        return int(_env("SHUYU_PASSWORD_HASH_COST", "12"))

    @validate("password_hash_cost")
    def _bcrypt_cost(self, proposal: dict) -> int:
        if not 4 <= int(proposal["value"]) <= 31:
            raise ValueError("password_hash_cost must be between 4 and 31 (bcrypt's range)")
        return int(proposal["value"])

    @validate("compliance_review_days", "source_review_days", "registration_review_days")
    def _positive_days(self, proposal: dict) -> int:
        if int(proposal["value"]) < 1:
            raise ValueError(f"{proposal['trait'].name} must be at least 1 working day")
        return int(proposal["value"])

    silence_approves = Bool(
        help="""Whether a review stage left unanswered past its deadline (and not extended
        again) counts as approval, recorded as a deemed approval in the audit chain (R20:
        逾期未答复且未延期的视为同意). Env: SHUYU_SILENCE_APPROVES (1 or 0). Default on.""",
    ).tag(config=True)

    @default("silence_approves")
    def _default_silence_approves(self) -> bool:
        return _env("SHUYU_SILENCE_APPROVES", "1") == "1"

    holidays = List(
        Unicode(),
        help="""Public holidays (ISO dates) that are not working days, as the State Council
        publishes them each year. Env: SHUYU_HOLIDAYS (comma-separated). Default none.""",
    ).tag(config=True)

    @default("holidays")
    def _default_holidays(self) -> list[str]:
        return [d for d in _env("SHUYU_HOLIDAYS", "").split(",") if d.strip()]

    extra_workdays = List(
        Unicode(),
        help="""Weekend days that are working days (调休 make-up days), ISO dates.
        Env: SHUYU_EXTRA_WORKDAYS (comma-separated). Default none.""",
    ).tag(config=True)

    @default("extra_workdays")
    def _default_extra_workdays(self) -> list[str]:
        return [d for d in _env("SHUYU_EXTRA_WORKDAYS", "").split(",") if d.strip()]

    @validate("holidays", "extra_workdays")
    def _iso_dates(self, proposal: dict) -> list[str]:
        parse_dates(proposal["value"], f"c.Shuyu.{proposal['trait'].name}")
        return list(proposal["value"])

    @property
    def calendar(self) -> Calendar:
        """The working-day calendar of review deadlines."""
        return Calendar(
            parse_dates(self.holidays, "holidays"),
            parse_dates(self.extra_workdays, "extra_workdays"),
        )

    dp_engine = Unicode(
        help="""The DP query engine, as 'module:Class' implementing
        shuyu_platform.dp.engine.Engine. Env: SHUYU_DP_ENGINE. Default: OpenDP on Polars in
        the platform service's process; replace it (e.g. with an engine on Spark) for data
        larger than one machine.""",
    ).tag(config=True)

    @default("dp_engine")
    def _default_dp_engine(self) -> str:
        return _env("SHUYU_DP_ENGINE", "shuyu_platform.dp.opendp_engine:OpenDpEngine")

    egress_daily_cap = Integer(
        help="""Most bytes one user's servers may send to the browser in a UTC day, counted
        by the egress gateway (HTTP response bodies and kernel websocket frames; JupyterLab's
        own assets, served by the gateway from the image, are not counted). Past it the
        gateway answers 429 and closes kernel websockets with a message saying why, until
        the next day. 0 switches the cap off (volumes are still metered and audited).
        Env: SHUYU_EGRESS_DAILY_CAP. Default 512 MiB: a heavy day of analysis (opening
        notebooks of a few MB dozens of times, a few thousand plots and tables of ~100 KB,
        the file browser polling every 10 s for 10 hours) sends about 100–200 MB, while
        taking data out through the screen takes far more (the masked health_records view
        alone is 7.8 MB as CSV, and a real tenant's views are many times that).""",
    ).tag(config=True)

    @default("egress_daily_cap")
    def _default_egress_daily_cap(self) -> int:
        return int(_env("SHUYU_EGRESS_DAILY_CAP", str(512 * 1024 * 1024)))

    @validate("egress_daily_cap")
    def _cap_not_negative(self, proposal: dict) -> int:
        if int(proposal["value"]) < 0:
            raise ValueError("egress_daily_cap must be 0 (off) or a number of bytes")
        return int(proposal["value"])

    gateway_notebook_cap = Integer(
        help="""Largest contents-API reply (a notebook or a folder listing, JSON) the egress
        gateway lets through to the browser; larger ones are refused, audited.
        Env: SHUYU_GATEWAY_NOTEBOOK_CAP. Default 16 MiB, the platform's snapshot limit.""",
    ).tag(config=True)

    @default("gateway_notebook_cap")
    def _default_gateway_notebook_cap(self) -> int:
        return int(_env("SHUYU_GATEWAY_NOTEBOOK_CAP", str(16 * 1024 * 1024)))

    data_memory_limit = Unicode(
        help="""Memory the DP engine's work on one raw file may use, e.g. '2G': queries
        stream the raw Parquet in batches, and the privacy-unit check reads a large file
        in several passes when its hashes (8 bytes a row) would take more than half of
        it. (Masked-view builds stream in fixed batches and do not read this yet.)
        Env: SHUYU_DATA_MEMORY_LIMIT. Default 2G.""",
    ).tag(config=True)

    @default("data_memory_limit")
    def _default_data_memory_limit(self) -> str:
        return _env("SHUYU_DATA_MEMORY_LIMIT", "2G")

    @validate("data_memory_limit")
    def _valid_data_memory_limit(self, proposal: dict) -> str:
        try:
            parse_size(proposal["value"])
        except ValueError as exc:
            raise TraitError(f"c.Shuyu.data_memory_limit: {exc}") from None
        return proposal["value"]

    @property
    def data_memory_bytes(self) -> int:
        """:attr:`data_memory_limit` in bytes."""
        return parse_size(self.data_memory_limit)

    spark_master = Unicode(
        help="""Where the Spark engine (shuyu_platform.dp.spark_engine:SparkEngine) runs its
        queries: 'local[N]' (this machine, N cores), or a cluster's URL ('spark://host:7077',
        'k8s://https://...'). Env: SHUYU_SPARK_MASTER. Default local[*].""",
    ).tag(config=True)

    @default("spark_master")
    def _default_spark_master(self) -> str:
        return _env("SHUYU_SPARK_MASTER", "local[*]")

    spark_python = Unicode(
        help="""The Python of the Tumult Analytics venv that runs the Spark driver (it pins
        older pandas and numpy than the platform, so never the platform's own). Env:
        SHUYU_SPARK_PYTHON. Default: .venv-tumult/bin/python of the source checkout
        (made by `make install-tumult`).""",
    ).tag(config=True)

    @default("spark_python")
    def _default_spark_python(self) -> str:
        return _env("SHUYU_SPARK_PYTHON", str(REPO_ROOT / ".venv-tumult" / "bin" / "python"))

    spark_conf = List(
        Unicode(),
        help="""Extra Spark properties of the driver, as 'key=value' strings (e.g.
        'spark.executor.memory=8g', 'spark.kubernetes.container.image=...'). Env:
        SHUYU_SPARK_CONF (separated by spaces). Default none.""",
    ).tag(config=True)

    @default("spark_conf")
    def _default_spark_conf(self) -> list[str]:
        return _env("SHUYU_SPARK_CONF", "").split()

    @validate("spark_conf")
    def _spark_properties(self, proposal: dict) -> list[str]:
        bad = [p for p in proposal["value"] if "=" not in p or not p.startswith("spark.")]
        if bad:
            raise ValueError(f"c.Shuyu.spark_conf entries must be 'spark.key=value', not {bad}")
        return list(proposal["value"])

    spark_raw_url = Unicode(
        help="""Where Spark's executors read the raw zone's Parquet files, e.g.
        's3a://bucket/raw' or 'hdfs://nn/shuyu/raw' (shared storage a cluster reaches).
        Env: SHUYU_SPARK_RAW_URL. Default empty: the raw zone's own path, which is right in
        local mode or where every executor mounts it at the same path.""",
    ).tag(config=True)

    @default("spark_raw_url")
    def _default_spark_raw_url(self) -> str:
        return _env("SHUYU_SPARK_RAW_URL", "")

    spark_one_pass = Bool(
        help="""Whether the Spark engine answers a query of counts and sums over a file that
        keeps its contribution bound in one Spark pass, with Tumult Core's sensitivities
        and noise added on the driver (on), or evaluates each count and sum as a query of
        its own in a Tumult Analytics session (off: about 2x slower per primitive, every
        step in Tumult's own code). Quantiles, and files whose bound Tumult must enforce,
        always take the session. Env: SHUYU_SPARK_ONE_PASS (1 or 0). Default on.""",
    ).tag(config=True)

    @default("spark_one_pass")
    def _default_spark_one_pass(self) -> bool:
        return _env("SHUYU_SPARK_ONE_PASS", "1") == "1"

    dp_refund_failures = Bool(
        help="""Whether a DP query or model fit that was debited but released nothing (the
        engine failed, or the platform service died before storing the answer) gives its ε
        back. On, it is marked 'refunded'; off, 'failed' and its ε stays spent, which is
        stricter where a failure could depend on the data. Env: SHUYU_DP_REFUND_FAILURES
        (1 or 0). Default on.""",
    ).tag(config=True)

    @default("dp_refund_failures")
    def _default_dp_refund_failures(self) -> bool:
        return _env("SHUYU_DP_REFUND_FAILURES", "1") == "1"

    dp_compute_threads = Integer(
        help="""Worker threads of the platform service that run DP computations (reading
        the raw data, planning, measuring). They are apart from the threads that do
        database reads and writes, so cheap requests (catalogue, budget, egress lists)
        are never queued behind queries. Env: SHUYU_DP_COMPUTE_THREADS. Default 2.""",
    ).tag(config=True)

    @default("dp_compute_threads")
    def _default_dp_compute_threads(self) -> int:
        return int(_env("SHUYU_DP_COMPUTE_THREADS", "2"))

    service_threads = Integer(
        help="""Worker threads of the platform service for database work (the cheap reads
        and every write, their audit records, the background sweeps); DP computations
        have their own (``dp_compute_threads``). Each process keeps this many plus
        ``dp_compute_threads`` plus 4 database connections open for reuse, so a burst of
        requests never waits for PostgreSQL to start a connection. Env:
        SHUYU_SERVICE_THREADS. Default 8.""",
    ).tag(config=True)

    @default("service_threads")
    def _default_service_threads(self) -> int:
        return int(_env("SHUYU_SERVICE_THREADS", "8"))

    audit_signing_key_file = Unicode(
        help="""Ed25519 private key (PEM, mode 0600) that signs the audit chain's
        checkpoints; created on first use. Keep it outside the database's reach (another
        disk, another host's mount): whoever holds it can vouch for a rewritten chain.
        Env: SHUYU_AUDIT_SIGNING_KEY. Default: <home>/hub/audit-signing-key.pem.""",
    ).tag(config=True)

    @default("audit_signing_key_file")
    def _default_audit_signing_key_file(self) -> str:
        return _env(
            "SHUYU_AUDIT_SIGNING_KEY", str(Path(self.home) / "hub" / "audit-signing-key.pem")
        )

    audit_checkpoints_file = Unicode(
        help="""Append-only file of signed checkpoints of the audit chain's head (JSON
        lines), published on the public product register. Env: SHUYU_AUDIT_CHECKPOINTS.
        Default: <home>/hub/audit-checkpoints.jsonl.""",
    ).tag(config=True)

    @default("audit_checkpoints_file")
    def _default_audit_checkpoints_file(self) -> str:
        return _env(
            "SHUYU_AUDIT_CHECKPOINTS", str(Path(self.home) / "hub" / "audit-checkpoints.jsonl")
        )

    audit_checkpoint_seconds = Integer(
        help="""How often the platform service signs a checkpoint of the audit chain's head
        (only when the chain grew). Env: SHUYU_AUDIT_CHECKPOINT_SECONDS. Default 300.""",
    ).tag(config=True)

    @default("audit_checkpoint_seconds")
    def _default_audit_checkpoint_seconds(self) -> int:
        return int(_env("SHUYU_AUDIT_CHECKPOINT_SECONDS", "300"))

    @validate("audit_checkpoint_seconds")
    def _positive_seconds(self, proposal: dict) -> int:
        if int(proposal["value"]) < 1:
            raise ValueError("audit_checkpoint_seconds must be at least 1")
        return int(proposal["value"])

    proxy_command = Unicode(
        help="""Command that starts configurable-http-proxy. Env: SHUYU_PROXY_COMMAND.
        Default: the copy installed by `npm ci` in the repository, else the one on PATH.""",
    ).tag(config=True)

    @default("proxy_command")
    def _default_proxy_command(self) -> str:
        local = REPO_ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
        return _env(
            "SHUYU_PROXY_COMMAND", str(local) if local.exists() else "configurable-http-proxy"
        )

    # ------------------------------------------------------------ parsing jail
    jail_memory_mb = Integer(
        help="""Address space (RLIMIT_AS, MiB) of one parsing jail: the throw-away process
        that reads a merchant's snapshot for the disclosure checks, watermarking and
        dashboard publishing. A file that needs more (a decompression bomb) is refused.
        Env: SHUYU_JAIL_MEMORY_MB. Default 1024: the largest snapshot (25 MiB) read as a
        table takes a few hundred MiB.""",
    ).tag(config=True)

    @default("jail_memory_mb")
    def _default_jail_memory_mb(self) -> int:
        return int(_env("SHUYU_JAIL_MEMORY_MB", "1024"))

    jail_cpu_seconds = Integer(
        help="""CPU seconds (RLIMIT_CPU) one parsing jail may use. Env: SHUYU_JAIL_CPU_SECONDS.
        Default 60.""",
    ).tag(config=True)

    @default("jail_cpu_seconds")
    def _default_jail_cpu_seconds(self) -> int:
        return int(_env("SHUYU_JAIL_CPU_SECONDS", "60"))

    jail_wall_seconds = Integer(
        help="""Seconds of wall-clock time after which a parsing jail is killed.
        Env: SHUYU_JAIL_WALL_SECONDS. Default 120.""",
    ).tag(config=True)

    @default("jail_wall_seconds")
    def _default_jail_wall_seconds(self) -> int:
        return int(_env("SHUYU_JAIL_WALL_SECONDS", "120"))

    jail_output_mb = Integer(
        help="""Largest answer (RLIMIT_FSIZE, MiB) of one parsing jail, e.g. a watermarked
        file. Env: SHUYU_JAIL_OUTPUT_MB. Default 256.""",
    ).tag(config=True)

    @default("jail_output_mb")
    def _default_jail_output_mb(self) -> int:
        return int(_env("SHUYU_JAIL_OUTPUT_MB", "256"))

    jail_concurrency = Integer(
        help="""Parsing jails one platform service runs at once (others wait their turn), so
        that jail_memory_mb times this fits the machine. Env: SHUYU_JAIL_CONCURRENCY.
        Default 2.""",
    ).tag(config=True)

    @default("jail_concurrency")
    def _default_jail_concurrency(self) -> int:
        return int(_env("SHUYU_JAIL_CONCURRENCY", "2"))

    @validate("jail_memory_mb", "jail_cpu_seconds", "jail_wall_seconds", "jail_output_mb",
              "jail_concurrency")  # fmt: skip
    def _positive_jail_limit(self, proposal: dict) -> int:
        if proposal["value"] < 1:
            raise ValueError(f"{proposal['trait'].name} must be at least 1")
        return int(proposal["value"])

    # ------------------------------------------------------ sealed production runs
    job_memory_mb = Integer(
        help="""Memory (MiB) of one sealed production run (a job): its cgroup's memory.max, and
        twice this as each process's address space (RLIMIT_AS). A job that needs more
        fails cleanly. Env: SHUYU_JOB_MEMORY_MB. Default 2048.""",
    ).tag(config=True)

    @default("job_memory_mb")
    def _default_job_memory_mb(self) -> int:
        return int(_env("SHUYU_JOB_MEMORY_MB", "2048"))

    job_cpu_seconds = Integer(
        help="""CPU seconds (RLIMIT_CPU) one job may use; past it the job is timed out.
        Env: SHUYU_JOB_CPU_SECONDS. Default 3600.""",
    ).tag(config=True)

    @default("job_cpu_seconds")
    def _default_job_cpu_seconds(self) -> int:
        return int(_env("SHUYU_JOB_CPU_SECONDS", "3600"))

    job_wall_seconds = Integer(
        help="""Seconds of wall-clock time after which the runner kills a job (timed out).
        Env: SHUYU_JOB_WALL_SECONDS. Default 3600.""",
    ).tag(config=True)

    @default("job_wall_seconds")
    def _default_job_wall_seconds(self) -> int:
        return int(_env("SHUYU_JOB_WALL_SECONDS", "3600"))

    job_disk_mb = Integer(
        help="""Disk (MiB) one job may write: the largest file (RLIMIT_FSIZE) and the whole work
        folder (polled by the runner); its /tmp is a tmpfs of at most 256 MiB.
        Env: SHUYU_JOB_DISK_MB. Default 1024.""",
    ).tag(config=True)

    @default("job_disk_mb")
    def _default_job_disk_mb(self) -> int:
        return int(_env("SHUYU_JOB_DISK_MB", "1024"))

    job_pids = Integer(
        help="""Most processes and threads one job may run (cgroup pids.max, else RLIMIT_NPROC):
        a fork bomb stops there. Env: SHUYU_JOB_PIDS. Default 256.""",
    ).tag(config=True)

    @default("job_pids")
    def _default_job_pids(self) -> int:
        return int(_env("SHUYU_JOB_PIDS", "256"))

    job_concurrency = Integer(
        help="""Jobs the platform runs at once, over all tenants (others wait in the queue).
        Env: SHUYU_JOB_CONCURRENCY. Default 2.""",
    ).tag(config=True)

    @default("job_concurrency")
    def _default_job_concurrency(self) -> int:
        return int(_env("SHUYU_JOB_CONCURRENCY", "2"))

    job_tenant_concurrency = Integer(
        help="""Jobs one tenant may have running at once (its others wait in the queue).
        Env: SHUYU_JOB_TENANT_CONCURRENCY. Default 1.""",
    ).tag(config=True)

    @default("job_tenant_concurrency")
    def _default_job_tenant_concurrency(self) -> int:
        return int(_env("SHUYU_JOB_TENANT_CONCURRENCY", "1"))

    job_cpus = Float(
        help="""CPU cores one job may use (its cgroup's cpu.max). Env: SHUYU_JOB_CPUS.
        Default 1.""",
    ).tag(config=True)

    @default("job_cpus")
    def _default_job_cpus(self) -> float:
        return float(_env("SHUYU_JOB_CPUS", "1"))

    @validate(
        "job_memory_mb", "job_cpu_seconds", "job_wall_seconds", "job_disk_mb", "job_pids",
        "job_concurrency", "job_tenant_concurrency", "job_cpus",
    )  # fmt: skip
    def _positive_job_limit(self, proposal: dict) -> float:
        if proposal["value"] <= 0:
            raise ValueError(f"{proposal['trait'].name} must be positive")
        return proposal["value"]

    # ------------------------------------------------------------ data in
    raw_versions_kept = Integer(
        help="""Raw versions of each dataset kept on disk, the current one included; a
        supply deletes older superseded versions (audited). Env: SHUYU_RAW_VERSIONS_KEPT.
        Default 3.""",
    ).tag(config=True)

    @default("raw_versions_kept")
    def _default_raw_versions_kept(self) -> int:
        return int(_env("SHUYU_RAW_VERSIONS_KEPT", "3"))

    supply_max_mb = Integer(
        help="""Largest raw version (MiB) a source department may send through the supply
        API; larger ones are supplied with the shuyu supply command on the host.
        Env: SHUYU_SUPPLY_MAX_MB. Default 1024.""",
    ).tag(config=True)

    @default("supply_max_mb")
    def _default_supply_max_mb(self) -> int:
        return int(_env("SHUYU_SUPPLY_MAX_MB", "1024"))

    import_max_mb = Integer(
        help="""Largest file (MiB) a merchant may bring in with an import request (sent
        base64-encoded in JSON, so at most 64). Env: SHUYU_IMPORT_MAX_MB. Default 32.""",
    ).tag(config=True)

    @default("import_max_mb")
    def _default_import_max_mb(self) -> int:
        return int(_env("SHUYU_IMPORT_MAX_MB", "32"))

    import_max_rows = Integer(
        help="""Most rows an import may hold (checked in the parsing jail).
        Env: SHUYU_IMPORT_MAX_ROWS. Default 5000000.""",
    ).tag(config=True)

    @default("import_max_rows")
    def _default_import_max_rows(self) -> int:
        return int(_env("SHUYU_IMPORT_MAX_ROWS", "5000000"))

    @validate("raw_versions_kept", "supply_max_mb", "import_max_mb", "import_max_rows")
    def _positive_data_in_limit(self, proposal: dict) -> int:
        if proposal["value"] < 1:
            raise ValueError(f"{proposal['trait'].name} must be at least 1")
        return int(proposal["value"])

    # ------------------------------------------------------------- operations
    alert_rules_file = Unicode(
        help="""Alert rules (YAML, validated at service start; see
        shuyu_platform.operations.alerts). Env: SHUYU_ALERT_RULES. Default:
        policies/operations/alerts.yaml in the repository.""",
    ).tag(config=True)

    @default("alert_rules_file")
    def _default_alert_rules_file(self) -> str:
        return _env("SHUYU_ALERT_RULES", str(REPO_ROOT / "policies" / "operations" / "alerts.yaml"))

    alert_webhook_url = Unicode(
        help="""URL each raised alert is POSTed to as JSON (a chat bot, an on-call system);
        empty: none. A failed delivery is recorded in the audit chain. Env:
        SHUYU_ALERT_WEBHOOK. Default empty.""",
    ).tag(config=True)

    @default("alert_webhook_url")
    def _default_alert_webhook_url(self) -> str:
        return _env("SHUYU_ALERT_WEBHOOK", "")

    pricing_file = Unicode(
        help="""The pricing policy (YAML, validated; see shuyu_platform.operations.fees):
        unit prices and caps of industrial use; public-interest use is free. Env:
        SHUYU_PRICING. Default: policies/operations/pricing.yaml in the repository.""",
    ).tag(config=True)

    @default("pricing_file")
    def _default_pricing_file(self) -> str:
        return _env("SHUYU_PRICING", str(REPO_ROOT / "policies" / "operations" / "pricing.yaml"))

    disclosure_refresh_seconds = Integer(
        help="""How often the platform service recomputes the public disclosure page's
        figures and charts. Env: SHUYU_DISCLOSURE_REFRESH_SECONDS. Default 3600.""",
    ).tag(config=True)

    @default("disclosure_refresh_seconds")
    def _default_disclosure_refresh_seconds(self) -> int:
        return int(_env("SHUYU_DISCLOSURE_REFRESH_SECONDS", "3600"))

    @validate("disclosure_refresh_seconds")
    def _positive_refresh(self, proposal: dict) -> int:
        if int(proposal["value"]) < 1:
            raise ValueError("disclosure_refresh_seconds must be at least 1")
        return int(proposal["value"])

    # ------------------------------------------------------------------ zones
    def zone(self, name: str) -> Path:
        """Path of one data zone under :attr:`home` (see :data:`ZONES`)."""
        if name not in ZONES:
            raise KeyError(f"unknown data zone {name!r}; zones are {', '.join(ZONES)}")
        return Path(self.home) / name

    @property
    def accounts_file(self) -> Path:
        """The real-name accounts (JSON, bcrypt hashes) in the hub zone; see ``accounts``."""
        return self.zone("hub") / "accounts.json"

    def ensure_zones(self) -> None:
        """Create every zone folder, private to the platform's own user."""
        Path(self.home).mkdir(parents=True, exist_ok=True)
        for name in ZONES:
            self.zone(name).mkdir(mode=0o700, exist_ok=True)

    @property
    def service_url(self) -> str:
        """Where the platform service listens (behind the proxy at /services/shuyu/)."""
        return f"http://127.0.0.1:{self.service_port}"

    # ------------------------------------------------- passing to the service
    def service_environment(self) -> dict[str, str]:
        """Environment that hands these settings to the platform service process."""
        return {
            "SHUYU_HOME": self.home,
            "SHUYU_DB_URL": self.db_url,
            "SHUYU_POLICIES_DIR": self.policies_dir,
            "SHUYU_DP_ENGINE": self.dp_engine,
            "SHUYU_SPARK_MASTER": self.spark_master,
            "SHUYU_SPARK_PYTHON": self.spark_python,
            "SHUYU_SPARK_CONF": " ".join(self.spark_conf),
            "SHUYU_SPARK_RAW_URL": self.spark_raw_url,
            "SHUYU_SPARK_ONE_PASS": "1" if self.spark_one_pass else "0",
            "SHUYU_DP_REFUND_FAILURES": "1" if self.dp_refund_failures else "0",
            "SHUYU_DP_COMPUTE_THREADS": str(self.dp_compute_threads),
            "SHUYU_SERVICE_THREADS": str(self.service_threads),
            "SHUYU_DATA_MEMORY_LIMIT": self.data_memory_limit,
            "SHUYU_EGRESS_APPROVALS": str(self.egress_approvals_required),
            "SHUYU_TENANT_REPORTS_PER_MINUTE": str(self.tenant_reports_per_minute),
            "SHUYU_COMPLIANCE_DAYS": str(self.compliance_review_days),
            "SHUYU_SOURCE_REVIEW_DAYS": str(self.source_review_days),
            "SHUYU_REGISTRATION_DAYS": str(self.registration_review_days),
            "SHUYU_PASSWORD_HASH_COST": str(self.password_hash_cost),
            "SHUYU_SILENCE_APPROVES": "1" if self.silence_approves else "0",
            "SHUYU_HOLIDAYS": ",".join(self.holidays),
            "SHUYU_EXTRA_WORKDAYS": ",".join(self.extra_workdays),
            "SHUYU_EGRESS_DAILY_CAP": str(self.egress_daily_cap),
            "SHUYU_AUDIT_SIGNING_KEY": self.audit_signing_key_file,
            "SHUYU_AUDIT_CHECKPOINTS": self.audit_checkpoints_file,
            "SHUYU_AUDIT_CHECKPOINT_SECONDS": str(self.audit_checkpoint_seconds),
            "SHUYU_IP": self.ip,
            "SHUYU_PORT": str(self.port),
            "SHUYU_DASHBOARDS_PORT": str(self.dashboards_port),
            "SHUYU_DASHBOARDS_URL": self.dashboards_url,
            "SHUYU_PUBLIC_HUB_URL": self.public_hub_url,
            "SHUYU_JAIL_MEMORY_MB": str(self.jail_memory_mb),
            "SHUYU_JAIL_CPU_SECONDS": str(self.jail_cpu_seconds),
            "SHUYU_JAIL_WALL_SECONDS": str(self.jail_wall_seconds),
            "SHUYU_JAIL_OUTPUT_MB": str(self.jail_output_mb),
            "SHUYU_JAIL_CONCURRENCY": str(self.jail_concurrency),
            "SHUYU_JOB_MEMORY_MB": str(self.job_memory_mb),
            "SHUYU_JOB_CPU_SECONDS": str(self.job_cpu_seconds),
            "SHUYU_JOB_WALL_SECONDS": str(self.job_wall_seconds),
            "SHUYU_JOB_DISK_MB": str(self.job_disk_mb),
            "SHUYU_JOB_PIDS": str(self.job_pids),
            "SHUYU_JOB_CONCURRENCY": str(self.job_concurrency),
            "SHUYU_JOB_TENANT_CONCURRENCY": str(self.job_tenant_concurrency),
            "SHUYU_JOB_CPUS": str(self.job_cpus),
            "SHUYU_RAW_VERSIONS_KEPT": str(self.raw_versions_kept),
            "SHUYU_SUPPLY_MAX_MB": str(self.supply_max_mb),
            "SHUYU_IMPORT_MAX_MB": str(self.import_max_mb),
            "SHUYU_IMPORT_MAX_ROWS": str(self.import_max_rows),
            "SHUYU_ALERT_RULES": self.alert_rules_file,
            "SHUYU_ALERT_WEBHOOK": self.alert_webhook_url,
            "SHUYU_PRICING": self.pricing_file,
            "SHUYU_DISCLOSURE_REFRESH_SECONDS": str(self.disclosure_refresh_seconds),
        }

    @classmethod
    def from_environment(cls) -> Shuyu:
        """Settings as a separate process (service, CLI) sees them: defaults and env."""
        return cls()
