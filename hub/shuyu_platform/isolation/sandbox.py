"""The namespace sandbox spawner: each single-user server inside bubblewrap.

What a sandbox sees (its private mount namespace):

- the software, read-only: ``/usr`` and the few ``/etc`` files programs need, the
  Python installation, the venv, and the in-sandbox packages (``extensions/``,
  ``kernels/``) but not the hub side;
- ``/data/views`` (its tenant's masked views), ``/data/imports`` (its tenant's approved
  imports) and ``/data/synthetic``, read-only;
- ``/home/<user>``: the user's own work folder, read-write, inside its tenant's
  filesystem image of ``c.Shuyu.disk_quota`` bytes (:mod:`.disk_quota`);
- ``/run/shuyu``: a folder of Unix sockets, its only ways in and out, read-only and
  root's, so nothing inside can rename a socket or bind one in its place;
- ``/etc/jupyter``: an empty folder of root's, the server's only configuration folder;
- a private ``/tmp``, ``/proc`` of its own PID namespace, a minimal ``/dev``.

Nothing else of the host exists there: no ``raw/``, no platform or hub database, no
hub configuration or secrets, no other tenant.

Network: the sandbox has its own network namespace with nothing but loopback. Relays
(:mod:`shuyu_server.relay`) are the only paths, each to one fixed destination:

    proxy --TCP--> egress gateway (hub) --server.sock--> sandbox relay --> server :8888
    server/kernel --> sandbox :8081 --hub.sock--> hub-side HTTP relay --> hub API
    kernel        --> sandbox :10101 --api.sock--> hub-side HTTP relay --> platform service

The hub-side relays and the egress gateway (:mod:`.gateway`) run in the hub's own
event loop; the sandbox-side relays in ``shuyu_server.sandbox_init``, the sandbox's
first program. The hub creates every socket: ``server.sock``'s listening socket is
handed to ``sandbox_init`` as an open file descriptor. The relays towards the hub and
the platform strip forwarding headers (:mod:`.http_relay`), so both see the relay's
address, never one a kernel made up.
Nothing listens on any other address, so a kernel that opens any other connection gets
"connection refused" or "network unreachable".

The server cannot be loosened from inside: it runs Python in isolated mode (``-I``: no
``PYTHON*`` variables, no user site, neither the working directory nor the home on
``sys.path``) from ``/``, which the tenant cannot write, and Jupyter reads configuration
and data only from read-only folders (:meth:`SandboxSpawner.sandbox_env`), never from
the home. Its stdout and stderr go through a pipe to a per-server log outside the
sandbox (:mod:`.server_log`).

The server itself is, by default, a fork of the server template
(:mod:`shuyu_server.template`, ``c.Shuyu.server_template``): bubblewrap then runs
``sandbox_init`` with the relays only, and once they listen the hub hands the template
the sandbox (a pidfd of its first process) and the template forks a process that
enters every namespace of it, joins its cgroup, drops root exactly as below and runs the
server there. A server's start then costs about 0.2 CPU-s instead of about 1; its
environment (the user's API token among it) goes to that fork only, never through the
template. The server alone holds the write end of the sandbox's life pipe, which
``sandbox_init`` watches: when the server ends, the sandbox ends with it, as when
``sandbox_init`` started the server. With the template off, or a server command other
than the default, ``sandbox_init`` starts the server itself, in a new interpreter.
Either way, :meth:`SandboxSpawner.poll` cleans up after a sandbox that ended on its own.

Identity and limits: bubblewrap runs as root only to set up the namespaces; the server
then runs via ``setpriv`` as a non-root uid of its tenant (allocated once per tenant,
recorded in ``hub/tenant-ids.json``), with no capabilities and no-new-privileges, under
a seccomp filter that refuses new namespaces, mounting, the keyring, BPF, perf and
reaching into other processes (:mod:`.seccomp`). Memory, CPU and process-count limits
come from a cgroup per server (v2, or v1 controllers where that is what the machine
has). The sandbox dies with the hub (``--die-with-parent``), so a hub restart never
leaves an unreachable server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.spawner import Spawner
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Bool, Float, Integer, List, Unicode, default

from ..core import audit
from ..core.settings import MATPLOTLIBRC, REPO_ROOT, Shuyu, parse_size
from ..egress.metering import Meter
from . import seccomp
from .bwrap import mounts, system_dirs
from .disk_quota import DiskQuotaError, TenantDisk
from .gateway import Gateway, Limits
from .http_relay import Relay, serve_http
from .server_log import ServerLog
from .spawner import singleuser_command, tenant_of, work_dir
from .template import ServerTemplate, TemplateError, close_quietly, parent_of, pid_exited

#: Ports inside the sandbox's private loopback (they collide with nothing: the
#: sandbox's network namespace is its own).
INNER_SERVER_PORT = 8888
INNER_HUB_PORT = 8081
INNER_API_PORT = 10101

#: Seconds a stopping sandbox's cgroup may take to empty before it is given up on.
CGROUP_REMOVE_WAIT = 5.0

#: Where Jupyter looks for configuration and data inside the sandbox: root's folders
#: the tenant cannot write. The home never appears in any of these paths.
JUPYTER_CONFIG_DIR = "/etc/jupyter"
JUPYTER_DATA_DIR = "/usr/share/jupyter"

#: /etc files programs inside need, bound read-only when the host has them.
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "alternatives",
    "mime.types",
    "fonts",
    "ssl",
)


class SandboxError(RuntimeError):
    """The sandbox cannot be set up; the message says what to fix."""


class TenantIds:
    """Non-root uids/gids, one per tenant, allocated once and kept in a JSON file."""

    def __init__(self, path: Path, base: int) -> None:
        self.path = path
        self.base = base

    def uid_for(self, tenant: str) -> int:
        """The tenant's uid (also its gid), allocating the next free one if new."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ids: dict[str, int] = json.loads(self.path.read_text()) if self.path.exists() else {}
            if tenant not in ids:
                ids[tenant] = max([self.base, *ids.values()]) + 1
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(ids, indent=2, sort_keys=True))
                os.replace(tmp, self.path)
            return ids[tenant]


class Cgroup:
    """One server's cgroup with memory, CPU and pids limits (cgroup v2 or v1)."""

    ROOT = Path("/sys/fs/cgroup")

    def __init__(self, name: str, *, memory: int, cpus: float, pids: int) -> None:
        self.name = name
        self.memory = memory
        self.cpus = cpus
        self.pids = pids
        self.dirs: list[Path] = []
        #: CPU seconds already on the group's counter when it was created: a group of
        #: the same name that an earlier start could not remove keeps its counter.
        self.cpu_base = 0.0

    @classmethod
    def version(cls) -> int | None:
        """2 for a unified hierarchy, 1 for v1 controllers, None if neither is usable."""
        if (cls.ROOT / "cgroup.controllers").exists():
            return 2
        if (cls.ROOT / "memory").is_dir() and os.access(cls.ROOT / "memory", os.W_OK):
            return 1
        return None

    def create(self) -> None:
        """Create the cgroup(s) and write the limits; raise SandboxError if impossible."""
        try:
            if self.version() == 2:
                self._create_v2()
            elif self.version() == 1:
                self._create_v1()
            else:
                raise SandboxError("no writable cgroup hierarchy under /sys/fs/cgroup")
        except OSError as exc:
            self.remove()
            raise SandboxError(f"cannot set cgroup limits: {exc}") from exc
        self.cpu_base = self._cpu_counter()

    def _create_v2(self) -> None:
        parent = self.ROOT / "shuyu"
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")
        group = parent / self.name
        group.mkdir(exist_ok=True)
        self.dirs = [group]
        (group / "memory.max").write_text(str(self.memory))
        with contextlib.suppress(FileNotFoundError):
            (group / "memory.swap.max").write_text("0")
        (group / "cpu.max").write_text(f"{int(self.cpus * 100_000)} 100000")
        (group / "pids.max").write_text(str(self.pids))

    def _create_v1(self) -> None:
        memory = self.ROOT / "memory" / "shuyu" / self.name
        memory.mkdir(parents=True, exist_ok=True)
        self.dirs.append(memory)
        (memory / "memory.limit_in_bytes").write_text(str(self.memory))
        with contextlib.suppress(OSError):
            (memory / "memory.memsw.limit_in_bytes").write_text(str(self.memory))
        cpu = self.ROOT / "cpu" / "shuyu" / self.name
        if cpu.parent.parent.is_dir():
            cpu.mkdir(parents=True, exist_ok=True)
            self.dirs.append(cpu)
            (cpu / "cpu.cfs_period_us").write_text("100000")
            (cpu / "cpu.cfs_quota_us").write_text(str(int(self.cpus * 100_000)))
        pids = self.ROOT / "pids" / "shuyu" / self.name
        if pids.parent.parent.is_dir():
            pids.mkdir(parents=True, exist_ok=True)
            self.dirs.append(pids)
            (pids / "pids.max").write_text(str(self.pids))
        # CPU accounting for metering, where cpuacct is a hierarchy of its own (where it
        # shares one with cpu, the cpu folder above has cpuacct.usage already).
        cpuacct = self.ROOT / "cpuacct" / "shuyu" / self.name
        if cpuacct.parent.parent.is_dir() and not (cpu / "cpuacct.usage").exists():
            cpuacct.mkdir(parents=True, exist_ok=True)
            self.dirs.append(cpuacct)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this cgroup."""
        for group in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError):
                    for line in (group / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
        return 0

    def _first(self, *names: str) -> str | None:
        for group in self.dirs:
            for name in names:
                with contextlib.suppress(OSError):
                    return (group / name).read_text()
        return None

    def cpu_seconds(self) -> float:
        """CPU time the cgroup's processes used since :meth:`create` (0 where the kernel
        does not say): what this start is metered for, never an earlier start's."""
        return max(0.0, self._cpu_counter() - self.cpu_base)

    def _cpu_counter(self) -> float:
        usage = self._first("cpuacct.usage")  # v1: nanoseconds
        if usage and usage.strip().isdigit():
            return int(usage) / 1e9
        for line in (self._first("cpu.stat") or "").splitlines():  # v2: usage_usec
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return 0.0

    def memory_bytes(self) -> int:
        """Memory the cgroup's processes use now (0 where the kernel does not say)."""
        text = self._first("memory.current", "memory.usage_in_bytes")
        return int(text) if text and text.strip().isdigit() else 0

    def join(self) -> None:
        """Move the calling process into the cgroup (run between fork and exec)."""
        for group in self.dirs:
            (group / "cgroup.procs").write_text("0")

    def remove(self, wait: float = 0.0) -> None:
        """Remove the cgroup(s), waiting up to ``wait`` seconds for processes to leave.

        A sandbox's processes leave its group a moment after its first process has been
        reaped (the kernel tears down its PID namespace); until then ``rmdir`` fails
        with EBUSY, and a group removed without waiting stays behind, counters and all.
        """
        deadline = time.monotonic() + wait
        for group in self.dirs:
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.05)
        self.dirs = []


class SandboxSpawner(Spawner):
    """Run each single-user server in a bubblewrap sandbox (see the module docstring)."""

    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    setpriv = Unicode("setpriv", help="util-linux setpriv, used to drop to the tenant's uid.").tag(
        config=True
    )
    uid_base = Integer(
        40000, help="Tenant uids are allocated above this number (one per tenant)."
    ).tag(config=True)
    pids_limit = Integer(512, help="Most processes and threads one server may run.").tag(
        config=True
    )
    require_limits = Bool(
        True,
        help="""Refuse to spawn when cgroup limits cannot be set. Turn off only on a
        machine without a writable cgroup hierarchy, and never for real tenants.""",
    ).tag(config=True)
    extra_ro_binds = List(
        Unicode(),
        help="More host paths to bind read-only at the same path (e.g. a shared conda).",
    ).tag(config=True)
    limits_check_interval = Float(
        2.0, help="Seconds between checks of the sandbox's cgroup for OOM kills (audited)."
    ).tag(config=True)
    stop_grace = Integer(10, help="Seconds a server has to stop before it is killed.").tag(
        config=True
    )
    log_max_bytes = Integer(
        10 * 1024**2,
        help="""Most bytes of a sandbox's stdout/stderr kept in its log (logs/<server>.log)
        per start; the rest is dropped and counted.""",
    ).tag(config=True)

    @default("mem_limit")
    def _default_mem_limit(self) -> int:
        return 2 * 1024**3

    @default("cpu_limit")
    def _default_cpu_limit(self) -> float:
        return 1.0

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return singleuser_command()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.proc: subprocess.Popen[bytes] | None = None
        self.relays: list[Relay] = []
        self.cgroup: Cgroup | None = None
        self.run_dir: Path | None = None
        self.watcher: asyncio.Future[None] | None = None
        #: Memory use integrated over the server's life, and when it started (metering).
        self.memory_byte_seconds = 0.0
        self.started_monotonic = 0.0
        self.disk: TenantDisk | None = None
        self.output: ServerLog | None = None
        self.gateway: Gateway | None = None
        #: The server's pidfd and host pid when it is a fork of the server template.
        self.server_pidfd: int | None = None
        self.server_pid = 0
        self.template: ServerTemplate | None = None
        #: The cleanup of the current start, once one was asked for (:meth:`stop`).
        self.stopping: asyncio.Future[None] | None = None

    @property
    def settings(self) -> Shuyu:
        """The installation's settings (the hub's ``c.Shuyu``)."""
        return Shuyu(config=self.config)

    # -------------------------------------------------------------- layout
    def _server_id(self) -> str:
        return f"{self.user.name}--{self.name}" if self.name else self.user.name

    def _cgroup_name(self) -> str:
        """``<installation>-<server>``: two hubs on one machine (a test beside a demo)
        may have servers of the same name, and must never share a cgroup."""
        installation = hashlib.sha256(str(Path(self.settings.home).resolve()).encode())
        return f"{installation.hexdigest()[:8]}-{self._server_id()}"

    def _prepare_host(self, tenant: str, uid: int) -> dict[str, Path]:
        settings = self.settings
        home = Path(settings.home)
        # Traversal only: the sandbox uid may pass through, never list or read.
        for path in (home, settings.zone("work"), settings.zone("views"), settings.zone("run")):
            path.mkdir(exist_ok=True)
            os.chmod(path, 0o711)
        work = work_dir(settings, tenant, self.user.name)
        self._mount_disk(tenant)
        work.mkdir(parents=True, exist_ok=True)
        os.chmod(work.parent, 0o711)
        os.chown(work, uid, uid)
        os.chmod(work, 0o700)
        views = settings.zone("views") / tenant
        views.mkdir(exist_ok=True)
        os.chown(views, 0, uid)
        os.chmod(views, 0o750)
        synthetic = settings.zone("synthetic")
        os.chmod(synthetic, 0o755)
        imports = settings.zone("imports") / tenant  # approved imports (ingress.imports)
        imports.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.zone("imports"), 0o711)
        os.chown(imports, 0, uid)
        os.chmod(imports, 0o750)

        run = settings.zone("run") / self._server_id()
        shutil.rmtree(run, ignore_errors=True)
        (run / "sock").mkdir(parents=True)
        (run / "etc").mkdir()
        # Jupyter's configuration folder: empty but for the marker that tells
        # jupyter_core not to "migrate" ~/.ipython into it (it would read the home).
        (run / "jupyter").mkdir()
        (run / "jupyter" / "migrated").write_text("never: configuration is read-only here\n")
        os.chmod(run / "jupyter", 0o755)
        os.chmod(run, 0o711)
        os.chmod(run / "sock", 0o755)  # root's: the tenant may connect, never create
        name = self.user.name
        (run / "etc" / "passwd").write_text(
            f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
            f"{name}:x:{uid}:{uid}:{name}:/home/{name}:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
        (run / "etc" / "group").write_text(f"root:x:0:\ntenant-{tenant}:x:{uid}:\n")
        (run / "etc" / "hosts").write_text(f"127.0.0.1 localhost shuyu-{tenant}\n")
        self.run_dir = run
        return {
            "work": work,
            "views": views,
            "synthetic": synthetic,
            "imports": imports,
            "run": run,
        }

    def _mount_disk(self, tenant: str) -> None:
        """Mount the tenant's filesystem image on ``work/<tenant>`` (see :mod:`.disk_quota`)."""
        if self.disk is not None:
            return
        settings = self.settings
        disk = TenantDisk.of_tenant(settings.zone("work"), tenant, parse_size(settings.disk_quota))
        try:
            disk.acquire()
        except DiskQuotaError as exc:
            raise SandboxError(f"cannot mount the disk of tenant {tenant}: {exc}") from exc
        self.disk = disk

    def bwrap_args(
        self, tenant: str, paths: dict[str, Path], seccomp_fd: int | None = None
    ) -> list[str]:
        """The bubblewrap command line up to (not including) the sandboxed command.

        ``seccomp_fd`` is an open descriptor of :func:`.seccomp.filter_fd` that the
        child inherits; without it the line names none (only for inspecting the mounts).
        """
        args = [
            self.bwrap, "--die-with-parent", "--new-session",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", f"shuyu-{tenant}",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/dev/shm",
            "--perms", "0755", "--dir", "/etc", "--perms", "0755", "--dir", "/var",
            "--perms", "1777", "--tmpfs", "/tmp", "--perms", "1777", "--tmpfs", "/var/tmp",
            "--perms", "0755", "--tmpfs", "/run",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        args += system_dirs()
        for name in ETC_FILES:
            if (Path("/etc") / name).exists():
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        for name in ("passwd", "group", "hosts"):
            args += ["--ro-bind", str(paths["run"] / "etc" / name), f"/etc/{name}"]
        software = {
            Path(sys.base_prefix).resolve(),
            Path(sys.prefix).resolve(),
            REPO_ROOT / "extensions",
            REPO_ROOT / "kernels",
            *(Path(p) for p in self.extra_ro_binds),
        }
        home = f"/home/{self.user.name}"
        binds = [("--ro-bind", path, path) for path in sorted(software)] + [
            ("--ro-bind", paths["views"], Path("/data/views")),
            ("--ro-bind", paths["synthetic"], Path("/data/synthetic")),
            *(
                [("--ro-bind", paths["imports"], Path("/data/imports"))]
                if "imports" in paths
                else []
            ),
            ("--bind", paths["work"], Path(home)),
            ("--ro-bind", paths["run"] / "sock", Path("/run/shuyu")),
            ("--ro-bind", paths["run"] / "jupyter", Path(JUPYTER_CONFIG_DIR)),
        ]
        made = {Path("/"), Path("/usr"), Path("/etc"), Path("/var"), Path("/run"), Path("/tmp")}
        args += mounts(binds, made)
        # The working directory is on no import path (-I) and nobody inside can write it.
        args += ["--chdir", "/"]
        return args

    def inner_command(
        self, uid: int, server_fd: int, ready_fd: int | None = None, life_fd: int | None = None
    ) -> list[str]:
        """Drop to the tenant uid, start the relays, then the single-user server.

        ``server_fd`` is the listening socket of ``/run/shuyu/server.sock``, made by
        the hub and inherited by ``sandbox_init``, which keeps it from the server.
        With ``ready_fd`` (a pipe's write end) and ``life_fd`` (another's read end),
        ``sandbox_init`` starts no server: it writes to the first once its relays
        listen, the server template's fork comes in (:meth:`_fork_server`), and it ends
        the sandbox when the second closes, i.e. when that server ends.
        """
        python = str(Path(sys.prefix) / "bin" / "python")
        relays = [
            self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
            python, "-I", "-m", "shuyu_server.sandbox_init",
            "--forward", f"fd:{server_fd}=tcp:127.0.0.1:{INNER_SERVER_PORT}",
            "--forward", f"tcp:127.0.0.1:{INNER_HUB_PORT}=unix:/run/shuyu/hub.sock",
            "--forward", f"tcp:127.0.0.1:{INNER_API_PORT}=unix:/run/shuyu/api.sock",
        ]  # fmt: skip
        if ready_fd is not None and life_fd is not None:
            return [*relays, "--ready-fd", str(ready_fd), "--life-fd", str(life_fd), "--"]
        return [*relays, "--", *self.cmd, *self.get_args()]

    def sandbox_env(self, tenant: str) -> dict[str, str]:
        """The server's environment, with every URL pointing at an in-sandbox relay."""
        env = self.get_env()
        hub_api = f"http://127.0.0.1:{INNER_HUB_PORT}{urlparse(self.hub.api_url).path}"
        base_url = self.server.base_url if self.server else "/"
        name = self.user.name
        env.update(
            {
                "JUPYTERHUB_API_URL": hub_api,
                "JUPYTERHUB_ACTIVITY_URL": url_path_join(
                    hub_api, "users", self.user.escaped_name, "activity"
                ),
                "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{INNER_SERVER_PORT}{base_url}",
                "JUPYTERHUB_ROOT_DIR": f"/home/{name}",
                "SHUYU_API_URL": f"http://127.0.0.1:{INNER_API_PORT}/services/shuyu/",
                **template_env(),
                "SHUYU_TENANT": tenant,
                "SHUYU_VIEWS": "/data/views",
                "SHUYU_SYNTHETIC": "/data/synthetic",
                "HOME": f"/home/{name}",
                "USER": name,
                "SHELL": "/bin/sh",
            }
        )
        return env

    def get_args(self) -> list[str]:
        """The server's arguments, with nbformat's notary kept in the sandbox's ``/tmp``.

        The notary (which notebooks the user trusts) keeps its secret and database in
        Jupyter's data folder, read-only here: they live in the private ``/tmp`` instead,
        for one start. It decides only whether the user's own browser runs a notebook's
        saved script output.
        """
        return [*super().get_args(), "--NotebookNotary.data_dir=/tmp"]

    # ----------------------------------------------------------- lifecycle
    async def start(self) -> tuple[str, int]:
        """Set up the host side, start the relays, launch the sandbox."""
        if self.stopping is not None:  # the last start's cleanup finishes first
            with contextlib.suppress(Exception):
                await asyncio.shield(self.stopping)
            self.stopping = None
        if self.server_pidfd is not None:  # a start that failed with nobody stopping it
            close_quietly(self.server_pidfd)
        self.server_pidfd, self.server_pid, self.template = None, 0, None
        tenant = tenant_of(self.user)
        if tenant is None:
            raise web.HTTPError(403, "No sandbox: this account belongs to no tenant.")
        if shutil.which(self.bwrap) is None:
            raise SandboxError(f"{self.bwrap} not found: install Debian's bubblewrap")
        uid = TenantIds(self.settings.zone("hub") / "tenant-ids.json", self.uid_base).uid_for(
            tenant
        )
        paths = await asyncio.to_thread(self._prepare_host, tenant, uid)

        self.cgroup = Cgroup(
            self._cgroup_name(),
            memory=int(self.mem_limit),
            cpus=float(self.cpu_limit),
            pids=self.pids_limit,
        )
        try:
            self.cgroup.create()
        except SandboxError:
            if self.require_limits:
                raise
            self.log.warning("Starting %s WITHOUT resource limits", self._server_id())
            self.cgroup = None

        sock = paths["run"] / "sock"
        hub_api = urlparse(self.hub.api_url)
        settings = self.settings
        self.relays = [
            await serve_http(
                sock / "hub.sock", hub_api.hostname or "127.0.0.1", hub_api.port or 80, owner=uid
            ),
            await serve_http(sock / "api.sock", "127.0.0.1", settings.service_port, owner=uid),
        ]
        self.gateway = Gateway(
            socket_path=str(sock / "server.sock"),
            base_url=self.server.base_url if self.server else f"/user/{self.user.name}/",
            username=self.user.name,
            tenant=tenant,
            db_url=settings.db_url,
            meter=Meter.shared(settings.db_url, settings.egress_daily_cap),
            limits=Limits(contents=settings.gateway_notebook_cap),
            allow_terminals=settings.allow_terminals,
        )
        host_port = self.gateway.listen()

        template = await self._template()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        read_end, write_end = os.pipe()
        filter_fd = seccomp.filter_fd()
        # With the template: bubblewrap names the sandbox's first process on info, and
        # the relays say on ready that they listen; the server comes in afterwards.
        info_read = info_write = ready_read = ready_write = life_read = life_write = None
        if template is not None:
            info_read, info_write = os.pipe()
            ready_read, ready_write = os.pipe()
            life_read, life_write = os.pipe()
        try:
            listener.bind(str(sock / "server.sock"))
            os.chmod(sock / "server.sock", 0o600)
            listener.listen(128)
            info = ["--info-fd", str(info_write)] if info_write is not None else []
            cmd = [
                *self.bwrap_args(tenant, paths, filter_fd),
                *info,
                "--",
                *self.inner_command(uid, listener.fileno(), ready_write, life_read),
            ]
            cgroup = self.cgroup
            self.log.info(
                "Sandboxing %s (tenant %s, uid %d%s)",
                self._server_id(),
                tenant,
                uid,
                ", server from the template" if template else "",
            )
            self.proc = subprocess.Popen(
                cmd,
                # The relays alone need nothing of the server's environment.
                env=self.sandbox_env(tenant) if template is None else relay_env(),
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                pass_fds=tuple(
                    fd
                    for fd in (filter_fd, listener.fileno(), info_write, ready_write, life_read)
                    if fd is not None
                ),
                start_new_session=True,
                preexec_fn=cgroup.join if cgroup else None,
            )
        except BaseException:
            close_quietly(read_end, info_read, ready_read, life_write)
            if template is not None:  # else the finally below closes it
                close_quietly(write_end)
            raise
        finally:
            if template is None:
                os.close(write_end)
            os.close(filter_fd)
            listener.close()
            close_quietly(info_write, ready_write, life_read)
        self.output = await ServerLog.attach(
            read_end, settings.zone("logs") / f"{self._server_id()}.log", self.log_max_bytes
        )
        self.pid = self.proc.pid
        if template is not None:
            assert info_read is not None and ready_read is not None and life_write is not None
            try:
                await self._fork_server(
                    template, tenant, uid, (info_read, ready_read, write_end, life_write)
                )
            finally:
                close_quietly(info_read, ready_read, write_end, life_write)
        if self.cgroup is not None:
            self.started_monotonic = time.monotonic()
            self.memory_byte_seconds = 0.0
            self.watcher = asyncio.ensure_future(self._watch_limits(tenant, self.cgroup))
        await self._wait_until_serving(sock / "server.sock")
        return ("127.0.0.1", host_port)

    async def _template(self) -> ServerTemplate | None:
        """The hub's server template, or None to start this server on its own."""
        if not self.settings.server_template or list(self.cmd) != singleuser_command():
            return None
        try:
            return await ServerTemplate.shared(
                template_env(), self.settings.zone("logs") / "server-template.log"
            )
        except TemplateError as exc:
            self.log.warning("%s: starting the server on its own: %s", self._server_id(), exc)
            return None

    async def _fork_server(
        self,
        template: ServerTemplate,
        tenant: str,
        uid: int,
        fds: tuple[int, int, int, int],
    ) -> None:
        """Have the template fork this sandbox's server, once the relays listen.

        ``fds``: bubblewrap's info pipe, the relays' ready pipe (read ends), the log
        pipe and the life pipe (write ends).
        """
        assert self.proc is not None
        info_fd, ready_fd, log_fd, life_fd = fds
        server_id = self._server_id()
        info = await asyncio.to_thread(_read_all, info_fd)
        try:
            first = int(json.loads(info)["child-pid"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SandboxError(f"the sandbox of {server_id} did not start") from exc
        sandbox = env_read = None
        procs: list[int] = []
        try:
            sandbox = os.pidfd_open(first)
            for group in self.cgroup.dirs if self.cgroup else []:
                procs.append(os.open(group / "cgroup.procs", os.O_WRONLY))
            # The pidfd holds the process; its parent shows it is this sandbox's and no
            # process that took a recycled pid.
            if parent_of(first) != self.proc.pid:
                raise SandboxError(f"the sandbox of {server_id} exited at start")
            if await asyncio.to_thread(os.read, ready_fd, 1) != b"1":
                raise SandboxError(f"the sandbox of {server_id} exited before its relays")
            start = {
                "env": self.sandbox_env(tenant),
                "argv": [str(SERVER_MODULE), *self.get_args()],
            }
            env_read = _pipe_holding(json.dumps(start).encode())
            self.server_pid, self.server_pidfd = await template.fork(
                sandbox_pidfd=sandbox,
                log_fd=log_fd,
                env_fd=env_read,
                life_fd=life_fd,
                uid=uid,
                cgroup_procs=procs,
                seccomp_program=seccomp.program(),
            )
        except (TemplateError, OSError) as exc:
            raise SandboxError(f"no server for {server_id}: {exc}") from exc
        finally:
            close_quietly(sandbox, env_read, *procs)
        self.template = template

    async def _wait_until_serving(self, server_sock: Path) -> None:
        """Return once the server answers HTTP inside the sandbox.

        JupyterHub polls a new server with exponential backoff (0.2 s, 0.4 s, 0.8 s,
        1.6 s ...), so a server ready after 1.7 s is seen only after 3 s. Polling the
        server's own socket here, from every 50 ms up to every 250 ms, lets the hub's
        first check succeed without loading a machine on which many servers start.
        Gives up quietly after ``http_timeout`` (the hub then applies its own timeout),
        and raises if the sandbox exits meanwhile.
        """
        request = (f"GET {self.server.base_url}api HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").encode()
        deadline = time.monotonic() + self.http_timeout
        interval = 0.05
        while time.monotonic() < deadline:
            code = await self.poll()
            if self.proc is None or code is not None:
                raise SandboxError(f"the sandbox of {self._server_id()} exited ({code}) at start")
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                reader, writer = await asyncio.open_unix_connection(str(server_sock))
                try:
                    writer.write(request)
                    await writer.drain()
                    status = await asyncio.wait_for(reader.read(12), 2)
                finally:
                    writer.close()
                if status.startswith(b"HTTP/"):
                    return
            await asyncio.sleep(interval)
            interval = min(0.25, interval * 1.25)

    async def _watch_limits(self, tenant: str, cgroup: Cgroup) -> None:
        """Record every OOM kill in the sandbox (a kernel over its memory limit), and
        integrate its memory use over time for metering (:meth:`_record_usage`)."""
        seen = 0
        sampled = time.monotonic()
        while True:
            await asyncio.sleep(self.limits_check_interval)
            now = time.monotonic()
            self.memory_byte_seconds += cgroup.memory_bytes() * (now - sampled)
            sampled = now
            kills = cgroup.oom_kills()
            if kills > seen:
                await asyncio.to_thread(
                    audit.append,
                    self.settings.db_url,
                    actor=self.user.name,
                    action="sandbox.oom_kill",
                    target=self._server_id(),
                    tenant=tenant,
                    outcome="denied",
                    detail={"mem_limit_bytes": cgroup.memory, "oom_kills": kills},
                )
                self.log.warning(
                    "%s: OOM kill in sandbox (limit %s bytes)", self._server_id(), cgroup.memory
                )
                seen = kills

    async def _record_usage(self, cgroup: Cgroup) -> None:
        """Record what the stopped sandbox used, from its cgroup, as ``sandbox.usage``:
        CPU-seconds and memory-GB-hours (the basis of metering and fees)."""
        wall = time.monotonic() - self.started_monotonic if self.started_monotonic else 0.0
        try:
            await asyncio.to_thread(
                audit.append,
                self.settings.db_url,
                actor=self.user.name,
                action="sandbox.usage",
                target=self._server_id(),
                tenant=tenant_of(self.user),
                actor_kind="system",
                detail={
                    "cpu_seconds": round(cgroup.cpu_seconds(), 3),
                    "memory_gb_hours": round(self.memory_byte_seconds / 1e9 / 3600, 6),
                    "wall_seconds": round(wall, 1),
                    "mem_limit_bytes": cgroup.memory,
                },
            )
        except Exception:  # metering must never keep a sandbox from stopping
            self.log.exception("%s: usage not recorded", self._server_id())
        self.memory_byte_seconds = 0.0
        self.started_monotonic = 0.0

    async def poll(self) -> int | None:
        """None while the sandbox and its server run, else an exit status.

        A sandbox found ended is cleaned up here, as :meth:`stop` does (its usage
        recorded, its cgroup, relays, gateway and disk released): JupyterHub calls
        ``stop`` only for a server it still thinks runs, so a server that ended on its
        own (a crash, a kill from its own kernel, a shutdown from inside) would
        otherwise leave all of that behind, unmetered. A fork of the template ends its
        sandbox as it ends (``sandbox_init`` watches the life pipe); the sandbox is
        stopped here as well, should anything in it still hold that pipe open.
        """
        if self.proc is None:
            return 0
        code = self.proc.poll()
        if code is None and self.server_pidfd is not None and pid_exited(self.server_pidfd):
            status = self.template.exits.get(self.server_pid) if self.template else None
            code = 1 if status is None else status
        if code is not None:
            try:
                await self.stop(now=True)
            except Exception:  # a poll must answer: the stop's failure is logged
                self.log.exception("%s: cleaning up after its end failed", self._server_id())
        return code

    async def stop(self, now: bool = False) -> None:
        """SIGTERM the sandbox's process group, SIGKILL after the grace, clean up.

        One cleanup per start, however many ask for it at once (JupyterHub's stop, and
        a :meth:`poll` from each page that finds the server ended): they all await the
        same task, so usage is recorded once and no cleanup outlives its start into the
        next one (:meth:`start` waits for it).
        """
        if self.stopping is None:
            self.stopping = asyncio.ensure_future(self._stop(now))
        await asyncio.shield(self.stopping)

    async def _stop(self, now: bool) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL if now else signal.SIGTERM)
            deadline = time.monotonic() + (0 if now else self.stop_grace)
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait)
        if self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None
        if self.cgroup is not None:
            await self._record_usage(self.cgroup)
        for relay in self.relays:
            relay.close()
        self.relays = []
        if self.gateway is not None:
            await self.gateway.close()
            self.gateway = None
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.remove, CGROUP_REMOVE_WAIT)
            self.cgroup = None
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
        if self.disk is not None:
            disk, self.disk = self.disk, None
            try:
                await asyncio.to_thread(disk.release)
            except DiskQuotaError as exc:
                self.log.warning("%s: %s", self._server_id(), exc)
        if self.server_pidfd is not None:
            close_quietly(self.server_pidfd)
            self.server_pidfd = None
            if self.template is not None:
                self.template.forget(self.server_pid)
            self.template = None
            self.server_pid = 0
        self.output = None
        self.proc = None


#: What a server fork runs as (``sys.argv[0]``, as ``python -m`` would set it).
SERVER_MODULE = REPO_ROOT / "extensions" / "shuyu_server" / "singleuser.py"


def template_env() -> dict[str, str]:
    """The server template's environment: what every server's has in common, nothing of
    any tenant or user (each fork gets its own, :meth:`SandboxSpawner.sandbox_env`)."""
    return {
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        "PYTHONNOUSERSITE": "1",
        # Chinese labels in charts: the platform's matplotlib defaults (CJK font).
        "MATPLOTLIBRC": str(MATPLOTLIBRC),
        # Configuration and data only from root's read-only folders: never
        # ~/.jupyter or ~/.local/share/jupyter (jupyter_core.paths reads these
        # variables first; -I keeps the user site's etc/jupyter off the path).
        "JUPYTER_CONFIG_DIR": JUPYTER_CONFIG_DIR,
        "JUPYTER_CONFIG_PATH": "",
        "JUPYTER_DATA_DIR": JUPYTER_DATA_DIR,
        "JUPYTER_PATH": "",
        "JUPYTER_PREFER_ENV_PATH": "1",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        # JupyterLab keeps user settings and workspaces under the configuration
        # folder unless told: here they are the browser's state for this start,
        # in the sandbox's private /tmp, never configuration of the server.
        "JUPYTERLAB_SETTINGS_DIR": "/tmp/jupyter-lab/user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "/tmp/jupyter-lab/workspaces",
    }


def relay_env() -> dict[str, str]:
    """``sandbox_init``'s environment when it runs the relays only."""
    return {"PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _read_all(fd: int) -> bytes:
    """Everything a pipe gives until its writers close it."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _pipe_holding(data: bytes) -> int:
    """The read end of a pipe that holds ``data``, its write end closed."""
    read_end, write_end = os.pipe()
    try:
        if len(data) > 60_000:  # a pipe holds 64 KiB; the environment is a few KiB
            raise SandboxError(f"the server's environment is too large ({len(data)} bytes)")
        os.write(write_end, data)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return read_end
