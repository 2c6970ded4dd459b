"""The server template: one process that has imported a single-user server, forked
into each new sandbox instead of starting a server from nothing.

A server's start is almost all Python imports (about 1,300 modules, 0.8 to 1.2 CPU-s
on this project's machines); a host that starts ten servers at once on two cores then
needs five seconds or more before any of them answers. The template imports those
modules once; each sandbox gets a ``fork`` of it that only has to set up its own server
(about 0.15 CPU-s). The sandbox itself is made exactly as before, by bubblewrap: the
template's fork only *enters* it.

    python -I -m shuyu_server.template FD

runs on the host as root, beside the hub, talking to the hub only over the
``SOCK_SEQPACKET`` socket ``FD`` the hub made (nothing else can reach it: it listens
nowhere). Each request carries open file descriptors and two numbers (the tenant's uid
and the seccomp filter):

- a pidfd of the sandbox's first process (bubblewrap's ``--info-fd`` names it): the
  namespaces to enter, held open so no recycled process id can stand in for it;
- the write end of the sandbox's log pipe (the server's stdout and stderr);
- the read end of a pipe holding the server's environment and arguments. The template
  itself never reads it: the user's API token and everything else of one start reach
  only that start's fork, never the memory that later forks are copies of;
- the write end of the sandbox's life pipe, whose read end ``sandbox_init`` watches:
  only the server keeps it (close-on-exec, so no kernel inherits it), and when the
  server ends, for whatever reason, ``sandbox_init`` sees the pipe close and ends the
  sandbox, every process the tenant left in it included;
- the sandbox cgroup's ``cgroup.procs`` file(s), opened by the hub: not even the names
  of users and cgroups pass through the template.

The answer carries a pidfd of the server, opened while the server cannot yet have been
reaped, so the hub never watches a process that took a recycled pid.

For a request the template forks once; that child joins the sandbox's cgroup, enters
its cgroup, IPC, UTS, network, mount and PID namespaces (``setns`` on the pidfd), and
forks the server, which is then inside the sandbox's PID namespace. The server process:

1. starts a session of its own, with the signal handling of a new interpreter;
2. reads its environment and arguments, takes the log pipe as stdout/stderr and
   ``/dev/null`` as stdin, closes every other descriptor, and works from ``/`` of the
   sandbox;
3. drops root as ``setpriv`` does for the classic start: empty capability bounding,
   ambient and inheritable sets, no supplementary groups, the tenant's uid and gid,
   no-new-privileges, then the sandbox's seccomp filter, then not dumpable;
4. checks all of that in ``/proc/self/status`` and exits (status 126) if any of it is
   not so;
5. recomputes what modules worked out from the template's identity when they were
   imported (:func:`rebase_on_this_start`), and runs
   :func:`shuyu_server.singleuser.main` with its environment and arguments.

What the template holds before a fork is imported code and nothing of any tenant: it
starts with a fixed environment that has no secret in it, it reads no tenant file and
configures nothing (every configuration file is read by the fork, in the sandbox), and
a request brings it only descriptors and the numbers above. What every fork shares is
the template's address-space layout (as Android's zygote does): one tenant's server
tells nothing about another's memory that it could reach, since no sandbox can reach
another.

The template is a child subreaper: a server's parent (the first fork) exits at once,
and the template reaps the server when it ends, telling the hub its exit status. It
dies with the hub (``PR_SET_PDEATHSIG``); servers die with their sandbox (the kernel
kills a PID namespace's processes when its first process ends).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback

from .sandbox_init import make_undumpable

#: prctl(2) and setns(2) constants (linux/prctl.h, linux/seccomp.h, linux/sched.h).
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
#: The namespaces a server enters: every one bubblewrap makes for a sandbox.
SANDBOX_NAMESPACES = (
    CLONE_NEWCGROUP | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID
)

#: Descriptors a request carries: the four below, then a ``cgroup.procs`` file per
#: controller hierarchy (four on cgroup v1); one more shows a request with too many.
FIXED_FDS = 4
MAX_FDS = 9
#: Seconds the first fork may take to report the server's pid before it is killed.
FORK_DEADLINE = 20.0

#: Exit status of a fork that could not become a confined server.
NOT_CONFINED = 126

#: The modules a server's start imports, loaded once by the template: imported code,
#: and what little they work out from the environment when imported is worked out again
#: in each fork (:func:`rebase_on_this_start`). ``jupyterhub.singleuser`` and this
#: package's own modules (which read the hub's base URL when imported) are imported by
#: the fork itself; they cost a few milliseconds.
PRELOADED = (
    "jupyterhub.services.auth",
    "jupyterhub.httpclient",
    "jupyterhub.utils",
    "jupyterlab.labapp",
    "jupyterlab.handlers.announcements",
    "jupyterlab.extensions.pypi",
    "jupyterlab_server",
    "jupyterlab_server.app",
    "jupyter_server.serverapp",
    "jupyter_server.services.kernels.kernelmanager",
    "jupyter_server.services.contents.largefilemanager",
    "jupyter_server.gateway.managers",
    "jupyter_server_terminals",
    "jupyter_client.ioloop",
    "jupyter_client.provisioning.local_provisioner",
    "notebook_shim.shim",
    "nbformat",
)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(
        _libc.prctl(
            ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
            ctypes.c_ulong(0), ctypes.c_ulong(0),
        ),
        f"prctl({option})",
    )  # fmt: skip


def preload() -> None:
    """Import what a server's start imports, with the same trims as a classic start."""
    from . import singleuser

    singleuser.skip_hub_only_work()
    singleuser.enforce_extensions()
    for name in PRELOADED:
        with contextlib.suppress(ImportError):  # an optional extension not installed
            __import__(name)


# ------------------------------------------------------------------ in the fork
def _join_cgroups(procs: list[int]) -> None:
    """Move this process into the sandbox's cgroup(s): ``procs`` are their
    ``cgroup.procs`` files, opened for writing by the hub."""
    for fd in procs:
        os.write(fd, b"0")
        os.close(fd)


def _enter(pidfd: int) -> None:
    """Enter every namespace of the process ``pidfd`` refers to (Linux 5.8 or later)."""
    _check(_libc.setns(ctypes.c_int(pidfd), ctypes.c_int(SANDBOX_NAMESPACES)), "setns")


def _drop_root(uid: int, program: bytes) -> None:
    """Become ``uid`` with no capability at all, no-new-privileges and ``program``
    (a seccomp filter, as ``bwrap --seccomp`` reads it) loaded; not dumpable."""
    with open("/proc/sys/kernel/cap_last_cap") as file:
        last_cap = int(file.read())
    for cap in range(last_cap + 1):
        _prctl(PR_CAPBSET_DROP, cap)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears the permitted and effective sets
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    _check(_libc.capset(header, bytes(24)), "capset")  # and the inheritable set
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    filters = ctypes.create_string_buffer(program, len(program))
    fprog = ctypes.create_string_buffer(
        struct.pack("HxxxxxxQ", len(program) // 8, ctypes.addressof(filters))
    )
    _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
    make_undumpable()


def confinement_problems(uid: int) -> list[str]:
    """What is not as a sandboxed server must be, read from ``/proc/self/status``."""
    status = {}
    with open("/proc/self/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            status[key] = value.split()
    problems = []
    for key in ("Uid", "Gid"):
        if status.get(key) != [str(uid)] * 4:
            problems.append(f"{key} is {status.get(key)}, not {uid}")
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(status.get(key, ["1"])[0], 16) != 0:
            problems.append(f"{key} is {status.get(key)}")
    if status.get("Groups", []) != []:
        problems.append(f"supplementary groups {status['Groups']}")
    if status.get("NoNewPrivs") != ["1"]:
        problems.append("no-new-privileges is not set")
    if status.get("Seccomp") != ["2"]:
        problems.append("no seccomp filter")
    if os.getppid() != 0:
        problems.append("the parent is inside the sandbox's PID namespace")
    return problems


def _become_server(request: dict, log_fd: int, env_fd: int, life_fd: int) -> int:
    """In the server process: confine it (see the module docstring), then run it."""
    with os.fdopen(env_fd, "rb") as file:
        start = json.loads(file.read())
    os.setsid()
    # As a new interpreter has them: the template's own SIGCHLD handler goes, Python's
    # start-up choices stay (SIGPIPE and SIGXFSZ ignored, so a write to a closed socket
    # is an error, not the server's death; SIGINT raises KeyboardInterrupt).
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    if life_fd != 3:
        os.dup2(life_fd, 3)
    os.set_inheritable(3, False)  # the server's alone: no kernel keeps the sandbox alive
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))
    os.chdir("/")
    uid = int(request["uid"])
    _drop_root(uid, bytes.fromhex(request["seccomp"]))
    problems = confinement_problems(uid)
    if problems:
        print("server template: not confined: " + "; ".join(problems), file=sys.stderr)
        return NOT_CONFINED
    os.environ.clear()
    os.environ.update(start["env"])
    sys.argv = list(start["argv"])
    rebase_on_this_start()
    from . import singleuser

    try:
        code = singleuser.main()
    except SystemExit as exc:
        code = exc.code
    return code if isinstance(code, int) else (0 if code is None else 1)


def rebase_on_this_start() -> None:
    """Recompute what preloaded modules worked out, when imported, from the template's
    environment, uid, home or host name: each fork must have its own start's values.

    ``tests/security/test_server_template.py`` finds every such value by comparing the
    state of every loaded module after this with a fresh import inside a sandbox.
    """
    import importlib
    import platform
    import site
    import tempfile

    platform._uname_cache = None  # type: ignore[attr-defined]  # the host's name
    # What site.py found on the host (a .pth's folder the sandbox has not), as a new
    # interpreter in the sandbox would not have it.
    sys.path[:] = [p for p in sys.path if os.path.exists(p) or p.endswith(".zip")]
    tempfile.tempdir = None
    site.USER_BASE = site.USER_SITE = None
    site.getusersitepackages()  # from the start's HOME (the user site stays off: -I)
    if "send2trash.plat_other" in sys.modules:  # the trash folder, from HOME and the uid
        importlib.reload(sys.modules["send2trash.plat_other"])
    if "multiprocessing.process" in sys.modules:  # made once per interpreter, secret
        sys.modules["multiprocessing.process"].current_process().authkey = os.urandom(32)
    for cls, name, value in _environment_defaults():
        _set_class_default(cls, name, value)


def _environment_defaults() -> list[tuple[type, str, object]]:
    """Trait defaults that their classes read from the environment when defined."""
    from jupyter_client.session import Session
    from jupyterhub.services.auth import HubAuth
    from jupyterlab.commands import get_user_settings_dir, get_workspaces_dir
    from jupyterlab.labapp import LabApp

    return [
        (Session, "username", os.environ.get("USER", "username")),
        (HubAuth, "base_url", os.getenv("JUPYTERHUB_SERVICE_PREFIX") or "/"),
        (HubAuth, "api_url", os.getenv("JUPYTERHUB_API_URL") or "http://127.0.0.1:8081/hub/api"),
        (HubAuth, "keyfile", os.getenv("JUPYTERHUB_SSL_KEYFILE", "")),
        (HubAuth, "certfile", os.getenv("JUPYTERHUB_SSL_CERTFILE", "")),
        (HubAuth, "client_ca", os.getenv("JUPYTERHUB_SSL_CLIENT_CA", "")),
        (LabApp, "user_settings_dir", get_user_settings_dir()),
        (LabApp, "workspaces_dir", get_workspaces_dir()),
    ]


def _set_class_default(cls: type, name: str, value: object) -> None:
    """Give the trait ``name`` of ``cls`` (and of its subclasses) a new default.

    traitlets copies a static default into each class's
    ``_static_immutable_initial_values`` when the class is made; those copies change too.
    """
    trait = getattr(cls, name)
    trait.default_value = value
    classes, seen = [cls], set()
    while classes:
        klass = classes.pop()
        if klass in seen:
            continue
        seen.add(klass)
        classes += klass.__subclasses__()
        initial = klass.__dict__.get("_static_immutable_initial_values")
        if initial is not None and name in initial and getattr(klass, name, None) is trait:
            initial[name] = value


def _fork_server(request: dict, fds: list[int], report: int) -> None:
    """The first fork: join the cgroup, enter the namespaces, fork the server (whose
    host pid goes to ``report``), exit. Never returns."""
    code = 1
    try:
        pidfd, log_fd, env_fd, life_fd, *procs = fds
        try:
            _join_cgroups(procs)
            _enter(pidfd)
        except Exception as exc:
            os.write(log_fd, f"server template: cannot enter the sandbox: {exc}\n".encode())
            os.write(report, f"error {exc}".encode())
            os._exit(1)
        os.close(pidfd)
        pid = os.fork()
        if pid:
            os.write(report, str(pid).encode())
            os._exit(0)
        os.close(report)
        try:
            code = _become_server(request, log_fd, env_fd, life_fd)
        except BaseException:
            with contextlib.suppress(Exception):
                traceback.print_exc()
            code = NOT_CONFINED
        with contextlib.suppress(Exception):
            import atexit

            atexit._run_exitfuncs()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        os._exit(code)


# ------------------------------------------------------------------ the template
class Template:
    """The template's loop: fork servers on request, reap them, report their ends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # SIGCHLD wakes the loop (a byte on this pipe), so an ended server is reported
        # at once.
        self.wakeup_read, self.wakeup_write = os.pipe()
        os.set_blocking(self.wakeup_read, False)
        os.set_blocking(self.wakeup_write, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wakeup_write)

    def send(self, message: dict) -> None:
        """One message to the hub (a SOCK_SEQPACKET record)."""
        self.sock.send(json.dumps(message).encode())

    def serve(self) -> None:
        """Answer requests until the hub closes its end."""
        self.send({"ready": os.getpid()})
        while True:
            readable, _, _ = select.select([self.sock, self.wakeup_read], [], [], 5.0)
            with contextlib.suppress(BlockingIOError):
                os.read(self.wakeup_read, 512)
            self.reap()
            if self.sock not in readable:
                continue
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, MAX_FDS)
            if not data:
                return
            request: dict = {}
            try:
                request = json.loads(data)
                pid, pidfd = self.fork(request, fds)
                try:
                    socket.send_fds(
                        self.sock, [json.dumps({"id": request["id"], "pid": pid}).encode()], [pidfd]
                    )
                finally:
                    os.close(pidfd)
            except Exception as exc:
                self.send({"id": request.get("id"), "error": str(exc)})
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def fork(self, request: dict, fds: list[int]) -> tuple[int, int]:
        """Fork one server into the sandbox of ``fds[0]``; its host pid and a pidfd."""
        if not FIXED_FDS <= len(fds) < MAX_FDS:
            raise ValueError(f"a request carries {FIXED_FDS} to {MAX_FDS - 1} descriptors")
        if int(request["uid"]) <= 0:
            raise ValueError("a server never runs as root")
        read_end, write_end = os.pipe()
        first = os.fork()
        if first == 0:
            signal.set_wakeup_fd(-1)
            for fd in (read_end, self.wakeup_read, self.wakeup_write):
                os.close(fd)
            with contextlib.suppress(OSError):
                self.sock.close()
            _fork_server(request, fds, write_end)
        os.close(write_end)
        answer = b""
        deadline = time.monotonic() + FORK_DEADLINE
        try:
            while (left := deadline - time.monotonic()) > 0:
                if select.select([read_end], [], [], left)[0]:
                    # It has answered, and exits right after: the rest comes at once.
                    while chunk := os.read(read_end, 512):
                        answer += chunk
                    break
            else:
                os.kill(first, signal.SIGKILL)
                answer = b"error the first fork did not report in time"
        finally:
            os.close(read_end)
        text = answer.decode()
        # Opened before the first fork is reaped: until then the server, its child or
        # this process's, cannot have been reaped, so its pid is still its own.
        pidfd = os.pidfd_open(int(text)) if text.isdigit() else -1
        _, status = os.waitpid(first, 0)
        if pidfd < 0:
            raise RuntimeError(text.removeprefix("error ") or f"fork failed ({status})")
        return int(text), pidfd

    def reap(self) -> None:
        """Collect every ended server and tell the hub its exit status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def main(argv: list[str] | None = None) -> None:
    """Preload the server, then serve the hub on the descriptor given."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        raise SystemExit("usage: python -I -m shuyu_server.template FD")
    started = time.process_time()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    make_undumpable()
    if os.getppid() == 1:  # the hub is already gone
        raise SystemExit("server template: the hub has gone")
    sock = socket.socket(fileno=int(args[0]))
    preload()
    import gc

    gc.collect()
    gc.freeze()  # keep the shared pages shared: the collector never touches them
    print(
        f"server template: {len(sys.modules)} modules in {time.process_time() - started:.2f} CPU-s",
        file=sys.stderr,
        flush=True,
    )
    Template(sock).serve()


if __name__ == "__main__":
    main()
