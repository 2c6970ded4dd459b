"""A server's cgroup: removed once its processes have left, metered from its creation.

Real cgroups of this machine (v2, or v1's controllers), so these tests need root. The
sandbox spawner meters a stopped server from its group's CPU counter
(``sandbox.usage``, the basis of fees): a group that was not removed and is created
again under the same name must not bill the earlier start's CPU a second time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from shuyu_platform.isolation.sandbox import Cgroup

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or Cgroup.version() is None, reason="needs root and writable cgroups"
)

#: Burns about a quarter of a CPU-second, then exits.
BURN = "import time\nend = time.process_time() + 0.25\nwhile time.process_time() < end: pass\n"


def _group() -> Cgroup:
    group = Cgroup(f"test-{uuid.uuid4().hex[:8]}", memory=256 << 20, cpus=1.0, pids=64)
    group.create()
    return group


def _run_in(group: Cgroup, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*argv], preexec_fn=group.join)


def test_remove_waits_for_processes_to_leave() -> None:
    """A group still holding a process is removed as soon as the process has gone."""
    group = _group()
    dirs = list(group.dirs)
    proc = _run_in(group, "sleep", "0.6")
    threading.Thread(target=proc.wait, daemon=True).start()  # reaped as a spawner would
    started = time.monotonic()
    group.remove(wait=10)
    waited = time.monotonic() - started
    assert not [d for d in dirs if d.exists()], "the cgroup was left behind"
    assert 0.4 <= waited < 9, f"removed after {waited:.2f} s, not once the process left"


def test_remove_without_wait_leaves_a_busy_group() -> None:
    """The failure the wait prevents: rmdir of a group with a process in it fails."""
    group = _group()
    dirs = list(group.dirs)
    proc = _run_in(group, "sleep", "30")
    try:
        group.remove()
        assert any(d.exists() for d in dirs)
    finally:
        proc.kill()
        proc.wait()
        leftover = Cgroup(group.name, memory=0, cpus=1.0, pids=1)
        leftover.dirs = dirs
        leftover.remove(wait=10)
    assert not [d for d in dirs if d.exists()]


def test_a_group_created_again_meters_from_zero() -> None:
    """A left-behind group of the same name does not bill its earlier CPU again."""
    first = _group()
    _run_in(first, sys.executable, "-c", BURN).wait()
    assert first.cpu_seconds() >= 0.2
    again = Cgroup(first.name, memory=256 << 20, cpus=1.0, pids=64)
    again.create()  # the earlier group is still there, its counter with it
    try:
        assert again.cpu_seconds() < 0.05
        _run_in(again, sys.executable, "-c", BURN).wait()
        assert 0.2 <= again.cpu_seconds() < 0.5
    finally:
        again.remove(wait=10)
