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
nowhere). Each request carries three open file descriptors and a few numbers:

- a pidfd of the sandbox's first process (bubblewrap's ``--info-fd`` names it): the
  namespaces to enter, held open so no recycled process id can stand in for it;
- the write end of the sandbox's log pipe (the server's stdout and stderr);
- the read end of a pipe holding the server's environment and arguments. The template
  itself never reads it: the user's API token and everything else of one start reach
  only that start's fork, never the memory that later forks are copies of.

For a request the template forks once; that child joins the sandbox's cgroup, enters
its cgroup, IPC, UTS, network, mount and PID namespaces (``setns`` on the pidfd), and
forks the server, which is then inside the sandbox's PID namespace. The server process:

1. starts a session of its own and resets every signal;
2. reads its environment and arguments, takes the log pipe as stdout/stderr and
   ``/dev/null`` as stdin, closes every other descriptor, and works from ``/`` of the
   sandbox;
3. drops root as ``setpriv`` does for the classic start: empty capability bounding,
   ambient and inheritable sets, no supplementary groups, the tenant's uid and gid,
   no-new-privileges, then the sandbox's seccomp filter, then not dumpable;
4. checks all of that in ``/proc/self/status`` and exits (status 126) if any of it is
   not so;
5. runs :func:`shuyu_server.singleuser.main` with them.

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

#: prctl(2) and setns(2) constants (linux/prctl.h, linux/seccomp.h, linux/sched.h).
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
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

#: Exit status of a fork that could not become a confined server.
NOT_CONFINED = 126

#: The modules a server's start imports, loaded once by the template. Every one is
#: imported code only: none reads configuration or the environment of a start when
#: imported (``jupyterhub.singleuser`` does, so the fork imports it).
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
    "shuyu_server",
    "shuyu_server.egress",
    "shuyu_server.lab_api",
    "shuyu_server.export",
    "shuyu_server.jobs",
    "shuyu_server.pages",
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
def _join_cgroups(procs: list[str]) -> None:
    """Move this process into the sandbox's cgroup(s) (``cgroup.procs`` files)."""
    for path in procs:
        if not (path.startswith("/sys/fs/cgroup/") and path.endswith("/cgroup.procs")):
            raise ValueError(f"not a cgroup.procs file: {path}")
        with open(path, "w") as file:
            file.write("0")


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
    _prctl(PR_SET_DUMPABLE, 0)


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


def _become_server(request: dict, log_fd: int, env_fd: int) -> int:
    """In the server process: confine it (see the module docstring), then run it."""
    with os.fdopen(env_fd, "rb") as file:
        start = json.loads(file.read())
    os.setsid()
    for sig in signal.Signals:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
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
    _forget_the_host()
    from . import singleuser

    try:
        code = singleuser.main()
    except SystemExit as exc:
        code = exc.code
    return code if isinstance(code, int) else (0 if code is None else 1)


def _forget_the_host() -> None:
    """Drop what a module may have cached about the host while the template loaded."""
    import platform
    import tempfile

    platform._uname_cache = None  # type: ignore[attr-defined]
    tempfile.tempdir = None


def _fork_server(request: dict, fds: list[int], report: int) -> None:
    """The first fork: join the cgroup, enter the namespaces, fork the server (whose
    host pid goes to ``report``), exit. Never returns."""
    code = 1
    try:
        pidfd, log_fd, env_fd = fds
        try:
            _join_cgroups(list(request["cgroup_procs"]))
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
            code = _become_server(request, log_fd, env_fd)
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
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 8)
            if not data:
                return
            request: dict = {}
            try:
                request = json.loads(data)
                self.send({"id": request["id"], **self.fork(request, fds)})
            except Exception as exc:
                self.send({"id": request.get("id"), "error": str(exc)})
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def fork(self, request: dict, fds: list[int]) -> dict:
        """Fork one server into the sandbox of ``fds[0]``; its host pid."""
        if len(fds) != 3:
            raise ValueError(f"a request carries 3 descriptors, not {len(fds)}")
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
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read().decode()
        _, status = os.waitpid(first, 0)
        if answer.isdigit():
            return {"pid": int(answer)}
        raise RuntimeError(answer.removeprefix("error ") or f"fork failed ({status})")

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
    _prctl(PR_SET_DUMPABLE, 0)
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
