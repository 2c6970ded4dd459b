"""Production spawner for one host: each single-user server in a locked-down container.

:class:`ShuyuDockerSpawner` is DockerSpawner with Shuyu's isolation (ARCHITECTURE.md
§ Isolation) as its defaults, and with the settings that make up the isolation always
applied, whatever else the operator adds through ``extra_host_config`` or
``extra_create_kwargs``.

What a container gets:

- the image :data:`IMAGE` (``images/singleuser.Dockerfile``, tagged with the project's
  version), running ``python -m shuyu_server.singleuser`` as the non-root
  ``container_user`` with every capability dropped, ``no-new-privileges``, a read-only
  root filesystem, private IPC and cgroup namespaces, an init process, and no devices;
- exactly four host folders, all computed from the user's tenant (``tenant-<slug>``
  group): ``<home>/views/<tenant>`` at ``/data/views`` read-only,
  ``<home>/imports/<tenant>`` (its approved imports) at ``/data/imports`` read-only,
  ``<home>/synthetic`` at ``/data/synthetic`` read-only, and
  ``<home>/work/<tenant>/<user>`` at ``/home/jovyan/work`` read-write. Never ``raw/``,
  ``outbox/``, ``db/``, ``hub/`` or another tenant's folder; ``volumes``,
  ``read_only_volumes`` and ``mounts`` are refused. (With the hub's ``internal_ssl``,
  DockerSpawner's certificate volume is added at ``/certs``, read-only.);
- two small tmpfs mounts for what Jupyter writes outside the work folder: ``/tmp`` and
  ``/home/jovyan/.local`` (the Jupyter runtime and data dirs, IPython's profile and
  history, JupyterLab's settings and workspaces are pointed there), both ``noexec``;
- memory, CPU and process-count limits, and no swap beyond the memory limit;
- one network: ``network_name``, which must be an *internal* Docker network (no route
  out): the spawner inspects it before every start and refuses any other; no published
  ports (``use_internal_ip`` must stay on).

Enforced means that :meth:`ShuyuDockerSpawner.isolation_host_config` and
:meth:`~ShuyuDockerSpawner.isolation_create_kwargs` are laid over whatever
``extra_host_config`` / ``extra_create_kwargs`` hold (``privileged``, ``cap_add``,
``binds``, ``mounts``, ``network_mode``, ``security_opt``, the memory and CPU limits, a
second network through ``networking_config``, ``user``, ...), and that ``volumes``,
``read_only_volumes`` and ``mounts`` stop the spawn. Other operator extras (labels,
``shm_size``, ulimits, a stricter ``runtime``) pass through.

Operator setup, once per host::

    docker network create --internal shuyu-sandbox
    docker network connect shuyu-sandbox shuyu-hub

The hub container (named ``shuyu-hub``, :attr:`~ShuyuDockerSpawner.hub_hostname`; it
also runs the platform service, which the hub starts) is attached both to a normal
network, for the published proxy port, and to ``shuyu-sandbox``. Containers on
``shuyu-sandbox`` therefore reach the hub API (``hub_connect_url``, port 8081) and the
platform service (``platform_api_url``, port 10101), and no other host and no Internet.
A Docker network does not filter ports, so they can also reach whatever else listens
on that network: the proxy's public port 8000, which ``images/hub.Dockerfile`` binds on
every interface (it leads only to the hub, the platform service and other users'
servers, each behind the hub's login), and other user containers' server port 8888,
which answers only to its owner's hub credentials.

Use Docker Engine 26.0 or later (or 25.0.5 / 23.0.11): older engines forwarded DNS
queries from internal networks to the host's resolver, an exfiltration path
(CVE-2024-29018).

The hub container needs the Docker socket, and the state root mounted at the *same*
path as on the host (bind sources are host paths). By default the hub API and the
platform service listen on 127.0.0.1 only; call :func:`listen_on_sandbox_network` after
``configure(c)`` in ``jupyterhub_config.py`` so that containers can reach them::

    c.Shuyu.spawner = "docker"
    settings = configure(c)
    from shuyu_platform.isolation.docker import listen_on_sandbox_network
    listen_on_sandbox_network(c, settings)

Memory and CPU: ``configure`` sets ``c.Spawner.mem_limit`` / ``cpu_limit`` from
``c.Shuyu.mem_limit`` / ``cpu_limit``, which take precedence over this class's defaults
(4G, 2 CPUs) unless ``c.ShuyuDockerSpawner`` sets them.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors
from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Dict, Integer, Unicode, default, validate
from traitlets.config import Config

from ..core import roles
from ..core.settings import Shuyu
from .spawner import tenant_of

#: The single-user image built from ``images/singleuser.Dockerfile`` (tag = project version).
IMAGE = "shuyu/singleuser:0.1.0"
#: The server command: jupyterhub-singleuser through Shuyu's fast-start wrapper, in
#: Python's isolated mode (``-I``: no ``PYTHON*`` variables, no user site, and the
#: working directory, the tenant's work folder, off ``sys.path``), as the sandbox runs it.
SINGLEUSER_CMD = ["python", "-I", "-m", "shuyu_server.singleuser"]
#: CPU accounting period (microseconds) of the CPU quota.
CPU_PERIOD = 100_000

#: Where things are inside the container.
CONTAINER_HOME = "/home/jovyan"
CONTAINER_WORK = f"{CONTAINER_HOME}/work"
CONTAINER_VIEWS = "/data/views"
CONTAINER_IMPORTS = "/data/imports"
CONTAINER_SYNTHETIC = "/data/synthetic"
#: The writable (tmpfs) part of $HOME; the Jupyter and IPython state dirs live under it.
CONTAINER_LOCAL = f"{CONTAINER_HOME}/.local"

#: A user name that is safe as one path component and inside a Docker bind spec
#: (no "/", ":" or ",", not "." or "..").
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Isolated:
    """An ``extra_host_config`` / ``extra_create_kwargs`` value with isolation on top.

    Wraps what the operator configured (a dict, or a callable that may be async) and,
    when DockerSpawner evaluates it, returns it with the spawner's isolation settings
    laid over it: the operator may add settings but never loosen those.
    """

    def __init__(self, extra: Any, enforced: str) -> None:
        self.extra = extra
        self.enforced = enforced

    async def __call__(self, spawner: ShuyuDockerSpawner) -> dict[str, Any]:
        extra = self.extra(spawner) if callable(self.extra) else self.extra
        if inspect.isawaitable(extra):
            extra = await extra
        enforced: Callable[[], dict[str, Any]] = getattr(spawner, self.enforced)
        return {**(extra or {}), **enforced()}

    def __repr__(self) -> str:
        return f"<{self.extra!r} with {self.enforced}() applied over it>"


class ShuyuDockerSpawner(DockerSpawner):
    """Each single-user server in a locked-down container (see the module docstring)."""

    shuyu_home = Unicode(
        help="""State root on the Docker host (the hub's c.Shuyu.home; it must be the same
        path inside the hub container). Bind sources are computed under it.""",
    ).tag(config=True)

    @default("shuyu_home")
    def _default_shuyu_home(self) -> str:
        return Shuyu(config=self.config).home

    hub_hostname = Unicode(
        "shuyu-hub",
        help="""Name of the hub container on the sandbox network (Docker's embedded DNS
        resolves it there). The defaults of hub_connect_url and platform_api_url use it.""",
    ).tag(config=True)

    platform_api_url = Unicode(
        help="""URL of the platform service as containers reach it on the sandbox network
        (becomes SHUYU_API_URL for the in-kernel client). Default:
        http://<hub_hostname>:<c.Shuyu.service_port>/services/shuyu/.""",
    ).tag(config=True)

    @default("platform_api_url")
    def _default_platform_api_url(self) -> str:
        port = Shuyu(config=self.config).service_port
        return f"http://{self.hub_hostname}:{port}/services/{roles.SERVICE_NAME}/"

    container_user = Unicode(
        "1000:1000",
        help="""Numeric "uid:gid" the server runs as; neither may be 0. The host's work
        folders are given to this uid. Choose ids that no person has on the host.""",
    ).tag(config=True)

    @validate("container_user")
    def _non_root(self, proposal: Any) -> str:
        value = proposal["value"]
        match = re.fullmatch(r"(\d+):(\d+)", value)
        if match is None or 0 in (int(match[1]), int(match[2])):
            raise ValueError(f'container_user must be a non-root numeric "uid:gid", not {value!r}')
        return value

    pids_limit = Integer(512, min=32, help="Most processes and threads one container may run.").tag(
        config=True
    )

    tmpfs = Dict(
        Unicode(),
        default_value={
            "/tmp": "rw,noexec,nosuid,nodev,size=512m",
            CONTAINER_LOCAL: "rw,noexec,nosuid,nodev,size=64m",
        },
        help=f"""In-memory writable mounts (path -> mount options) on the read-only root
        filesystem. Must keep /tmp and {CONTAINER_LOCAL} (the Jupyter state dirs are
        pointed there); sizes and options may change.""",
    ).tag(config=True)

    @validate("tmpfs")
    def _keeps_state_dirs(self, proposal: Any) -> dict[str, str]:
        value = proposal["value"]
        missing = {"/tmp", CONTAINER_LOCAL} - set(value)
        if missing:
            raise ValueError(f"tmpfs must keep {', '.join(sorted(missing))}")
        return value

    # ------------------------------------------------- DockerSpawner defaults
    @default("image")
    def _default_image(self) -> str:
        return IMAGE

    @default("pull_policy")
    def _default_pull_policy(self) -> str:
        # Never fetch "shuyu/singleuser" from a public registry by surprise: build it
        # (images/README.md) or point `image` at your own registry and pull explicitly.
        return "never"

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return list(SINGLEUSER_CMD)

    @default("prefix")
    def _default_prefix(self) -> str:
        return "shuyu"

    @default("network_name")
    def _default_network_name(self) -> str:
        return "shuyu-sandbox"

    @default("use_internal_ip")
    def _default_use_internal_ip(self) -> bool:
        return True

    @default("remove")
    def _default_remove(self) -> bool:
        return True

    @default("notebook_dir")
    def _default_notebook_dir(self) -> str:
        return CONTAINER_WORK

    @default("mem_limit")
    def _default_mem_limit(self) -> str:
        return "4G"

    @default("cpu_limit")
    def _default_cpu_limit(self) -> float:
        return 2.0

    @default("hub_connect_url")
    def _default_hub_connect_url(self) -> str:
        return f"http://{self.hub_hostname}:{Shuyu(config=self.config).hub_port}"

    # Defaults are not passed through the validators below, so they are wrapped here.
    @default("extra_host_config")
    def _default_extra_host_config(self) -> _Isolated:
        return _Isolated({}, "isolation_host_config")

    @default("extra_create_kwargs")
    def _default_extra_create_kwargs(self) -> _Isolated:
        return _Isolated({}, "isolation_create_kwargs")

    @validate("extra_host_config")
    def _isolate_host_config(self, proposal: Any) -> _Isolated:
        value = proposal["value"]
        return value if isinstance(value, _Isolated) else _Isolated(value, "isolation_host_config")

    @validate("extra_create_kwargs")
    def _isolate_create_kwargs(self, proposal: Any) -> _Isolated:
        value = proposal["value"]
        if isinstance(value, _Isolated):
            return value
        return _Isolated(value, "isolation_create_kwargs")

    # ---------------------------------------------------------------- tenant
    @property
    def tenant(self) -> str:
        """The user's tenant slug; refuses (403) a user in no tenant."""
        tenant = tenant_of(self.user)
        if tenant is None:
            raise web.HTTPError(
                403,
                f"No sandbox: {self.user.name} belongs to no tenant (no "
                f"{roles.TENANT_GROUP_PREFIX}<slug> group), so there is no data to mount.",
            )
        if not roles.TENANT_SLUG.match(tenant):
            raise web.HTTPError(403, f"No sandbox: {tenant!r} is not a valid tenant slug.")
        return tenant

    def host_paths(self, tenant: str) -> dict[str, Path]:
        """The four host folders a tenant's container mounts, and nothing else."""
        name = self.user.name
        if not _SAFE_NAME.match(name):
            raise web.HTTPError(403, f"No sandbox: user name {name!r} cannot name a folder.")
        home = Path(self.shuyu_home)
        return {
            "views": home / "views" / tenant,
            "imports": home / "imports" / tenant,
            "synthetic": home / "synthetic",
            "work": home / "work" / tenant / name,
        }

    def tenant_binds(self, tenant: str) -> dict[str, dict[str, str]]:
        """Host path -> ``{"bind": container path, "mode": "ro" | "rw"}``."""
        paths = self.host_paths(tenant)
        return {
            str(paths["views"]): {"bind": CONTAINER_VIEWS, "mode": "ro"},
            str(paths["imports"]): {"bind": CONTAINER_IMPORTS, "mode": "ro"},
            str(paths["synthetic"]): {"bind": CONTAINER_SYNTHETIC, "mode": "ro"},
            str(paths["work"]): {"bind": CONTAINER_WORK, "mode": "rw"},
        }

    @property
    def volume_binds(self) -> dict[str, dict[str, str]]:
        """The binds DockerSpawner passes to Docker: the tenant's folders only."""
        binds = self.tenant_binds(self.tenant)
        if getattr(self, "internal_ssl", False):
            volume = self.format_volume_name(self.certs_volume_name, self)
            binds[volume] = {"bind": "/certs", "mode": "ro"}
        return binds

    # ------------------------------------------------------------- isolation
    def isolation_host_config(self) -> dict[str, Any]:
        """Host-config settings laid over ``extra_host_config`` (docker-py names).

        ``None`` removes a setting (docker-py then sends nothing: the engine's default,
        which is the unprivileged one).
        """
        return {
            # privileges
            "privileged": False,
            "cap_drop": ["ALL"],
            "cap_add": None,
            "security_opt": ["no-new-privileges:true"],
            "devices": None,
            "device_cgroup_rules": None,
            "device_requests": None,
            "userns_mode": None,
            # namespaces
            "pid_mode": None,
            "ipc_mode": "private",
            "uts_mode": None,
            "cgroupns": "private",
            # filesystem
            "read_only": True,
            "tmpfs": dict(self.tmpfs),
            "binds": self.volume_binds,
            "mounts": [],
            "volumes_from": None,
            "volume_driver": None,
            # network: the internal network only, nothing published on the host
            "network_mode": self.network_name,
            "port_bindings": None,
            "publish_all_ports": False,
            # resources
            "mem_limit": self.mem_limit,
            "memswap_limit": self.mem_limit,  # memory + swap = memory: no swap
            "oom_kill_disable": False,
            "cpu_period": CPU_PERIOD,
            "cpu_quota": int(self.cpu_limit * CPU_PERIOD),
            "nano_cpus": None,
            "pids_limit": self.pids_limit,
            "init": True,
        }

    def isolation_create_kwargs(self) -> dict[str, Any]:
        """Container-create settings laid over ``extra_create_kwargs``."""
        return {
            "user": self.container_user,
            "working_dir": CONTAINER_WORK,
            "volumes": self.volume_mount_points,
            "networking_config": None,  # no second network attached at creation
            "host_config": {},  # no raw API host config slipping past the settings above
        }

    def check_config(self) -> None:
        """Refuse settings that would widen what a container sees or uses."""
        if self.volumes or self.read_only_volumes or self.mounts:
            raise RuntimeError(
                "ShuyuDockerSpawner computes its mounts from the tenant; remove "
                "c.DockerSpawner.volumes / read_only_volumes / mounts from the configuration."
            )
        if not self.mem_limit or not self.cpu_limit:
            raise RuntimeError(
                "ShuyuDockerSpawner refuses to start without mem_limit and cpu_limit."
            )
        if not self.use_internal_ip:
            raise RuntimeError(
                "ShuyuDockerSpawner reaches servers on the sandbox network and publishes no "
                "port on the host; do not set use_internal_ip = False."
            )

    async def check_network(self) -> None:
        """Refuse to start unless ``network_name`` is an internal Docker network.

        On a normal network (the default ``bridge``, ``host``, or one created without
        ``--internal``) a container would have a route to the Internet.
        """
        try:
            network = await self.docker("inspect_network", self.network_name)
        except docker.errors.NotFound:
            raise RuntimeError(
                f"Docker network {self.network_name!r} does not exist; create it with "
                f"`docker network create --internal {self.network_name}`."
            ) from None
        if not network.get("Internal"):
            raise RuntimeError(
                f"Docker network {self.network_name!r} is not internal, so containers on it "
                f"can reach the Internet; recreate it with `docker network create --internal`."
            )

    def prepare_host(self, tenant: str) -> dict[str, Path]:
        """Create the tenant's folders on the host, owned so that the container can use them.

        Docker would create a missing bind source itself, owned by root; the work
        folder must instead belong to ``container_user``, and the views and imports be
        readable by its group (the imports zone itself only passable, 0711, so no tenant
        lists the others). Ownership can only be given when the hub runs as root.
        """
        uid, gid = (int(part) for part in self.container_user.split(":"))
        paths = self.host_paths(tenant)
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(paths["work"], uid, gid)
            os.chown(paths["views"], 0, gid)
            os.chown(paths["imports"], 0, gid)
        elif os.geteuid() != uid:
            self.log.warning(
                "The hub is not root: %s must be writable and %s readable by %s",
                paths["work"],
                paths["views"],
                self.container_user,
            )
        os.chmod(paths["work"], 0o700)
        os.chmod(paths["views"], 0o750)
        os.chmod(paths["imports"], 0o750)
        os.chmod(paths["imports"].parent, 0o711)
        os.chmod(paths["synthetic"], 0o755)
        return paths

    # ------------------------------------------------------------ lifecycle
    def get_env(self) -> dict[str, str]:
        """The server's environment: container paths and the in-network service URLs."""
        env = super().get_env()
        env.update(
            {
                "SHUYU_TENANT": self.tenant,
                "SHUYU_API_URL": self.platform_api_url,
                "SHUYU_VIEWS": CONTAINER_VIEWS,
                "SHUYU_IMPORTS": CONTAINER_IMPORTS,
                "SHUYU_SYNTHETIC": CONTAINER_SYNTHETIC,
                "JUPYTERHUB_ROOT_DIR": CONTAINER_WORK,
                "HOME": CONTAINER_HOME,
                "JUPYTER_DATA_DIR": f"{CONTAINER_LOCAL}/share/jupyter",
                "JUPYTER_RUNTIME_DIR": f"{CONTAINER_LOCAL}/share/jupyter/runtime",
                "JUPYTERLAB_SETTINGS_DIR": f"{CONTAINER_LOCAL}/jupyterlab/user-settings",
                "JUPYTERLAB_WORKSPACES_DIR": f"{CONTAINER_LOCAL}/jupyterlab/workspaces",
                "IPYTHONDIR": f"{CONTAINER_LOCAL}/ipython",
                "XDG_CONFIG_HOME": f"{CONTAINER_LOCAL}/config",
                "XDG_CACHE_HOME": "/tmp/cache",
                "MPLCONFIGDIR": "/tmp/matplotlib",
                "PYTHONNOUSERSITE": "1",
            }
        )
        return env

    async def start(self) -> tuple[str, int]:
        """Check the user, the settings and the network, prepare the folders, then start.

        Every refusal (403 for a user without a tenant or with a name that cannot be a
        folder, RuntimeError for a configuration that would widen the sandbox) comes
        before anything is created on the host or in Docker.
        """
        tenant = self.tenant
        self.host_paths(tenant)  # refuses a user name that cannot name a folder
        self.check_config()
        await self.check_network()
        # The spawn policy hook points notebook_dir at the host folder; inside, it is here.
        self.notebook_dir = CONTAINER_WORK
        self.prepare_host(tenant)
        return await super().start()


def listen_on_sandbox_network(c: Config, settings: Shuyu) -> None:
    """Let containers on the sandbox network reach the hub API and the platform service.

    Call after ``configure(c)``: the hub API listens on every interface of the hub
    container instead of 127.0.0.1 (processes in the hub container keep using
    127.0.0.1), and so does the platform service, on its port.
    """
    hub = c.JupyterHub
    hub.hub_bind_url = f"http://0.0.0.0:{settings.hub_port}"
    hub.hub_connect_url = f"http://127.0.0.1:{settings.hub_port}"
    services = []
    for service in hub.get("services", []):
        if service.get("name") == roles.SERVICE_NAME:
            service = {**service, "url": f"http://0.0.0.0:{settings.service_port}"}
        services.append(service)
    hub.services = services
