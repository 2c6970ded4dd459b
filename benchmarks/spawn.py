"""Single-user server start-to-ready: sandbox spawner vs the unisolated local spawner.

Both platforms are real (hub, proxy, service) and measured in one run, alternating
rounds so machine noise hits both alike. "Ready" is the hub reporting the server
ready after ``POST /hub/api/users/<name>/server``, which includes JupyterHub's own
readiness polling. Then as many sandboxes as asked are started at once, and the
total memory they use is read from their cgroups.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import Platform, running_platform, shuyu

ROUNDS = int(os.environ.get("BENCH_SPAWN_ROUNDS", "7"))
CONCURRENT = int(os.environ.get("BENCH_SPAWN_CONCURRENT", "12"))


def _time_start(platform: Platform, session, name: str) -> float:
    started = time.perf_counter()
    platform.start_server(session, name)
    elapsed = time.perf_counter() - started
    platform.stop_server(session, name)
    return elapsed


def _cgroup_memory_bytes() -> int:
    total = 0
    for root in (Path("/sys/fs/cgroup/shuyu"), Path("/sys/fs/cgroup/memory/shuyu")):
        for name in ("memory.current", "memory.usage_in_bytes"):
            for path in root.glob(f"*/{name}"):
                total += int(path.read_text())
    return total


def concurrency(platform: Platform, count: int) -> tuple[int, float, int]:
    """Start ``count`` sandboxes at once; return (ready, seconds, bytes in use)."""
    names = [f"bench{i:02d}" for i in range(count)]
    for i, name in enumerate(names):
        shuyu(
            "accounts",
            "add",
            name,
            "--role",
            "merchant",
            "--tenant",
            f"bench-t{i % 4}",
            "--real-name",
            "压测",
            "--password-stdin",
            "--replace",
            env=platform.env,
            input=f"{name}-password\n",
        )
    sessions = [platform.login(name, f"{name}-password") for name in names]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(
            pool.map(lambda pair: _ready(platform, *pair), zip(sessions, names, strict=True))
        )
    elapsed = time.perf_counter() - started
    memory = _cgroup_memory_bytes()
    for session, name, ok in zip(sessions, names, results, strict=True):
        if ok:
            platform.stop_server(session, name)
    return sum(results), elapsed, memory


def _ready(platform: Platform, session, name: str) -> bool:
    try:
        platform.start_server(session, name)
        return True
    except AssertionError:
        return False


def main() -> None:
    """Print medians, their ratio, and the concurrency result."""
    print(f"spawn: start-to-ready, {ROUNDS} rounds each, alternating (median, min-max)")
    with ExitStack() as stack:
        sandbox = stack.enter_context(running_platform(Path(tempfile.mkdtemp()), rows=1000))
        local = stack.enter_context(
            running_platform(Path(tempfile.mkdtemp()), rows=1000, SHUYU_SPAWNER="local")
        )
        s_sandbox, s_local = sandbox.login("alice"), local.login("alice")
        _time_start(sandbox, s_sandbox, "alice")  # warm both (imports, page cache)
        _time_start(local, s_local, "alice")
        times: dict[str, list[float]] = {"sandbox": [], "local": []}
        for _ in range(ROUNDS):
            times["sandbox"].append(_time_start(sandbox, s_sandbox, "alice"))
            times["local"].append(_time_start(local, s_local, "alice"))
        for kind, values in times.items():
            print(
                f"  {kind:<8} median {statistics.median(values):6.2f} s"
                f"  ({min(values):.2f}-{max(values):.2f})"
            )
        ratio = statistics.median(times["sandbox"]) / statistics.median(times["local"])
        print(f"  ratio sandbox/local: {ratio:.2f}x")
        local.stop()
        ready, seconds, memory = concurrency(sandbox, CONCURRENT)
        print(
            f"concurrent sandboxes: {ready}/{CONCURRENT} ready in {seconds:.1f} s, "
            f"{memory / 2**20:.0f} MiB in their cgroups "
            f"({memory / max(ready, 1) / 2**20:.0f} MiB each)"
        )
