"""Managed services live and die with the hub that started them.

JupyterHub starts each managed service (the platform service, the dashboards service,
the idle culler) in a session of its own and stops it only on a clean shutdown. A hub
killed with SIGKILL leaves them running: the restarted hub then cannot bind the service
port, and the orphan keeps the old OAuth client secret, so every sign-in to the service
fails with ``invalid_client``. Two measures, both applied by a launcher the hub runs in
front of each service (``python -m shuyu_platform.core.lifetime PIDFILE MODULE ARGS…``):

* :func:`die_with_parent` asks the kernel to send SIGTERM to the service when the hub
  exits, however it exits (Linux ``PR_SET_PDEATHSIG``, kept across the ``exec``);
* :func:`reclaim` stops an orphan still named in the service's pid file (only if that
  process still runs the same module as the same user) before the new one starts, for
  whatever the first measure missed, such as a hub that died before its child set it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

#: ``prctl`` option that sets the signal a process gets when its parent exits.
PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None, sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits.

    Returns False where the kernel does not offer it (not Linux). If the parent is no
    longer ``expected_parent`` (it died before this call), exits at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if expected_parent is not None and os.getppid() != expected_parent:
        sys.exit(f"shuyu: the hub (pid {expected_parent}) is gone; not starting")
    return True


def _command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name: the state first, then
    the parent pid, …, the start time (in clock ticks after boot) at index 19. Empty if
    there is no such process. (The command name, in parentheses, may hold anything.)"""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _alive(pid: int) -> bool:
    fields = stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def _owned_by_us(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}").stat().st_uid == os.geteuid()
    except OSError:
        return False


def reclaim(pidfile: Path, module: str, grace: float = 10.0) -> int | None:
    """Stop the orphan named in ``pidfile`` if it still runs ``module``; return its pid.

    A pid that was reused by another program, another user's process or this process is
    left alone. The orphan's whole session gets SIGTERM, then SIGKILL after ``grace``.
    """
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid() or not _alive(pid) or not _owned_by_us(pid):
        return None
    argv = _command_line(pid)
    if module not in argv:
        return None
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    kill = os.killpg if group == pid else os.kill  # its session, when it leads one
    with contextlib.suppress(ProcessLookupError):
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return pid


def write_pidfile(pidfile: Path) -> None:
    """Record this process's pid (atomically; the file is private)."""
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = pidfile.with_name(f".{pidfile.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, pidfile)


def launcher_command(pidfile: Path, module: str, *args: str) -> list[str]:
    """The command the hub runs for a managed service: this launcher, then the module."""
    return [sys.executable, "-m", __name__, str(pidfile), module, *args]


#: Environment variable with the hub's pid, so a service can tell its parent is gone.
HUB_PID_ENV = "SHUYU_HUB_PID"


def main(argv: list[str] | None = None) -> None:
    """Launcher: die with the hub, reclaim an orphan, record the pid, become the service."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        sys.exit("usage: python -m shuyu_platform.core.lifetime PIDFILE MODULE [ARGS...]")
    pidfile, module, rest = Path(args[0]), args[1], args[2:]
    hub = os.environ.get(HUB_PID_ENV, "")
    die_with_parent(int(hub) if hub.isdigit() else None)
    orphan = reclaim(pidfile, module)
    if orphan is not None:
        sys.stderr.write(f"shuyu: stopped {module} left running by a previous hub (pid {orphan})\n")
    write_pidfile(pidfile)
    os.execv(sys.executable, [sys.executable, "-m", module, *rest])


if __name__ == "__main__":
    main()
