"""Managed services die with the hub, and a new launcher reclaims an orphan, nothing else.

Real processes: the launcher runs Python's ``http.server`` module as the "service".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shuyu_platform.core import lifetime

SERVICE = "http.server"


def _gone(pid: int, within: float = 15) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not lifetime._alive(pid):
            return True
        time.sleep(0.1)
    return False


def _pid_in(pidfile: Path, within: float = 30) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text:
            return int(text)
        time.sleep(0.1)
    raise AssertionError(f"no pid in {pidfile}")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, killed at its end whatever happened."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _launch(pidfile: Path, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        lifetime.launcher_command(pidfile, SERVICE, "0", "--bind", "127.0.0.1"),
        start_new_session=True,  # as JupyterHub starts its services
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(proc)
    return proc


def test_a_new_launcher_stops_the_orphan_named_in_its_pid_file(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    pidfile = tmp_path / "svc.pid"
    first = _launch(pidfile, started)
    assert _pid_in(pidfile) == first.pid
    second = _launch(pidfile, started)
    first.wait(30)  # it was stopped ...
    deadline = time.monotonic() + 30
    while _pid_in(pidfile) != second.pid and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pid_in(pidfile) == second.pid  # ... and the new one recorded itself
    assert second.poll() is None
    assert stat_mode(pidfile) == 0o600


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_reused_pid_of_another_program_is_left_alone(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    started.append(bystander)
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{bystander.pid}\n")
    assert lifetime.reclaim(pidfile, SERVICE) is None
    assert bystander.poll() is None


def test_the_service_dies_when_the_hub_is_killed(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """A stand-in hub starts the launcher, then gets SIGKILL: its service follows."""
    pidfile = tmp_path / "svc.pid"
    command = lifetime.launcher_command(pidfile, SERVICE, "0", "--bind", "127.0.0.1")
    hub = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            f"os.environ[{lifetime.HUB_PID_ENV!r}] = str(os.getpid())\n"
            f"subprocess.Popen({command!r}, start_new_session=True)\n"
            "time.sleep(300)\n",
        ]
    )
    started.append(hub)
    service = _pid_in(pidfile)
    time.sleep(0.5)
    assert lifetime._alive(service)
    os.kill(hub.pid, signal.SIGKILL)
    hub.wait(10)
    assert _gone(service), f"service {service} outlived its hub"


def test_stat_fields_read_past_a_command_name_made_to_mislead(tmp_path: Path) -> None:
    """The one reader of ``/proc/<pid>/stat`` (liveness, parent pid, start time): a
    process may name itself ``) Z 1 …`` to look dead or adopted; the fields are read
    after the last parenthesis."""
    fake = tmp_path / ") Z 1 2 3"
    fake.write_bytes(Path(sys.executable).read_bytes())
    fake.chmod(0o755)
    child = subprocess.Popen([str(fake), "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        fields = lifetime.stat_fields(child.pid)
        assert fields[0] in "RSD" and int(fields[1]) == os.getpid()
        assert lifetime._alive(child.pid)
        assert int(fields[19]) > 0  # the start time the job worker keys runners by
    finally:
        child.stdin.close()
        child.wait(30)
    assert lifetime.stat_fields(child.pid) == [] and not lifetime._alive(child.pid)
