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

#: Data zones under the state root, with who may read each (ARCHITECTURE.md § Data zones).
ZONES: dict[str, str] = {
    "raw": "source Parquet; read by the DP service and the masking job only",
    "views": "masked Parquet per tenant; read-only in that tenant's sandboxes",
    "synthetic": "synthetic twins of every dataset; every tenant",
    "work": "per-user notebooks and scratch",
    "outbox": "frozen snapshots of egress requests; review service only",
    "released": "approved, watermarked artefacts; review service, requester, dashboards",
    "published": "approved dashboard notebooks; Voila service only",
    "db": "the platform database (SQLite by default)",
    "hub": "JupyterHub's own state: its database, cookie secret, accounts",
    "run": "per-server relay sockets and generated /etc files of running sandboxes",
    "logs": "each sandbox's stdout and stderr; operators only, never mounted in a sandbox",
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

    @validate("dashboards_url")
    def _origin_only(self, proposal: dict) -> str:
        return str(proposal["value"]).rstrip("/")

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
    def hub_url(self) -> str:
        """Public URL of the platform (the proxy)."""
        return f"http://{self.ip}:{self.port}"

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
            "SHUYU_DP_REFUND_FAILURES": "1" if self.dp_refund_failures else "0",
            "SHUYU_DATA_MEMORY_LIMIT": self.data_memory_limit,
            "SHUYU_EGRESS_APPROVALS": str(self.egress_approvals_required),
            "SHUYU_TENANT_REPORTS_PER_MINUTE": str(self.tenant_reports_per_minute),
            "SHUYU_COMPLIANCE_DAYS": str(self.compliance_review_days),
            "SHUYU_SOURCE_REVIEW_DAYS": str(self.source_review_days),
            "SHUYU_REGISTRATION_DAYS": str(self.registration_review_days),
            "SHUYU_SILENCE_APPROVES": "1" if self.silence_approves else "0",
            "SHUYU_HOLIDAYS": ",".join(self.holidays),
            "SHUYU_EXTRA_WORKDAYS": ",".join(self.extra_workdays),
            "SHUYU_AUDIT_SIGNING_KEY": self.audit_signing_key_file,
            "SHUYU_AUDIT_CHECKPOINTS": self.audit_checkpoints_file,
            "SHUYU_AUDIT_CHECKPOINT_SECONDS": str(self.audit_checkpoint_seconds),
            "SHUYU_IP": self.ip,
            "SHUYU_PORT": str(self.port),
            "SHUYU_DASHBOARDS_PORT": str(self.dashboards_port),
            "SHUYU_DASHBOARDS_URL": self.dashboards_url,
            "SHUYU_JAIL_MEMORY_MB": str(self.jail_memory_mb),
            "SHUYU_JAIL_CPU_SECONDS": str(self.jail_cpu_seconds),
            "SHUYU_JAIL_WALL_SECONDS": str(self.jail_wall_seconds),
            "SHUYU_JAIL_OUTPUT_MB": str(self.jail_output_mb),
            "SHUYU_JAIL_CONCURRENCY": str(self.jail_concurrency),
        }

    @classmethod
    def from_environment(cls) -> Shuyu:
        """Settings as a separate process (service, CLI) sees them: defaults and env."""
        return cls()
