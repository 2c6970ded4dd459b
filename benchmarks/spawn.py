"""Single-user server start-to-ready: sandbox spawner vs the unisolated local spawner.

Both platforms are real (hub, proxy, service) and measured in one run, alternating
rounds so machine noise hits both alike. "Ready" is the hub reporting the server
ready after ``POST /hub/api/users/<name>/server``, which includes JupyterHub's own
readiness polling. Then as many sandboxes as asked are started at once, and the
total memory they use is read from their cgroups.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import Platform, running_platform, shuyu

from .memory import MIB, load_average, pss_mib, rss_mib

ROUNDS = int(os.environ.get("BENCH_SPAWN_ROUNDS", "7"))
CONCURRENT = int(os.environ.get("BENCH_SPAWN_CONCURRENT", "50"))
LATE = 10  # sandboxes started together while the others are up
IDLE_SECONDS = 10  # settle time before the idle memory is read
GOALS = {"p95_s": 3.0, "each_mib": 100.0}


def _time_start(platform: Platform, session, name: str) -> float:
    elapsed = _ready(platform, session, name)
    assert elapsed is not None, f"the server of {name} did not start"
    platform.stop_server(session, name)
    return elapsed


def _cgroup_dirs() -> list[Path]:
    """Every server cgroup of this machine (v2, or v1's memory controller)."""
    return [
        group
        for root in (Path("/sys/fs/cgroup/shuyu"), Path("/sys/fs/cgroup/memory/shuyu"))
        for group in sorted(root.glob("*"))
        if group.is_dir()
    ]


def _cgroup_memory_bytes(group: Path) -> int:
    for name in ("memory.current", "memory.usage_in_bytes"):
        if (group / name).exists():
            return int((group / name).read_text())
    return 0


def _role(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    if Path(argv[0].decode()).name in ("bwrap", "setpriv"):  # their argv holds the rest
        return "other"
    command = b" ".join(argv).decode()
    if "sandbox_init" in command:
        return "relays"
    if "singleuser" in command or "shuyu_server.template" in command:  # or a fork of it
        return "server"
    if "kernel" in command:
        return "kernel"
    return "other"


def idle_cost(names: list[str]) -> dict[str, Any]:
    """Per sandbox of ``names``: RSS and PSS by process role, and the cgroup's figure."""
    per_sandbox: list[dict[str, float]] = []
    for group in _cgroup_dirs():
        if not any(group.name.endswith(f"-{name}") for name in names):
            continue
        figures: dict[str, float] = {"cgroup": _cgroup_memory_bytes(group) / MIB}
        for pid in map(int, (group / "cgroup.procs").read_text().split()):
            role = _role(pid)
            figures[f"{role}_rss"] = figures.get(f"{role}_rss", 0.0) + rss_mib(pid)
            figures[f"{role}_pss"] = figures.get(f"{role}_pss", 0.0) + pss_mib(pid)
            figures[f"{role}_n"] = figures.get(f"{role}_n", 0.0) + 1
        figures["rss"] = sum(v for k, v in figures.items() if k.endswith("_rss"))
        figures["pss"] = sum(v for k, v in figures.items() if k.endswith("_pss"))
        per_sandbox.append(figures)
    keys = sorted({k for figures in per_sandbox for k in figures})
    return {
        "sandboxes": len(per_sandbox),
        "median": {k: statistics.median(f.get(k, 0.0) for f in per_sandbox) for k in keys},
    }


def _accounts(platform: Platform, names: list[str]) -> list[Any]:
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
    return [platform.login(name, f"{name}-password") for name in names]


def _start_all(platform: Platform, sessions: list[Any], names: list[str]) -> list[float | None]:
    """Start every server at once; each one's start-to-ready seconds (None: failed)."""
    with ThreadPoolExecutor(max_workers=max(len(names), 1)) as pool:
        return list(
            pool.map(lambda pair: _ready(platform, *pair), zip(sessions, names, strict=True))
        )


def concurrency(platform: Platform, count: int) -> dict[str, Any]:
    """``count - LATE`` sandboxes at once, then ``LATE`` more beside them; their figures."""
    names = [f"bench{i:02d}" for i in range(count)]
    sessions = _accounts(platform, names)
    late = min(LATE, count)
    early = count - late
    started = time.perf_counter()
    first = _start_all(platform, sessions[:early], names[:early])
    first_s = time.perf_counter() - started
    first_load = os.getloadavg()[0]
    second = _start_all(platform, sessions[early:], names[early:])
    second_load = os.getloadavg()[0]
    time.sleep(IDLE_SECONDS)
    cost = idle_cost(names)
    cost_load = load_average()
    ok = [t is not None for t in first + second]
    for session, name, up in zip(sessions, names, ok, strict=True):
        if up:
            platform.stop_server(session, name)
    late_times = sorted(t for t in second if t is not None)
    return {
        "ready": sum(ok),
        "early": (sum(t is not None for t in first), early, first_s, first_load),
        "late_times": late_times,
        "late_load": second_load,
        "cost": cost,
        "cost_load": cost_load,
    }


def _ready(platform: Platform, session, name: str) -> float | None:
    """Seconds from asking for ``name``'s server to the hub saying it is ready (None: failed).

    Waits on the hub's progress event stream, as the browser's spawn page does, rather
    than polling the user model: fifty threads polling every 0.3 s were a load on the
    hub of their own, part of what was measured.
    """
    started = time.perf_counter()
    response = platform.hub_api(session, "POST", f"users/{name}/server")
    if response.status_code == 201:  # started and ready within the request
        return time.perf_counter() - started
    if response.status_code != 202:
        return None
    with platform.hub_api(session, "GET", f"users/{name}/server/progress", stream=True) as events:
        for line in events.iter_lines():
            if not line.startswith(b"data:"):
                continue  # keep-alive comments
            event = json.loads(line[len(b"data:") :])
            if event.get("ready"):
                return time.perf_counter() - started
            if event.get("failed"):
                return None
    return None


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    return sorted(values)[min(len(values) - 1, round(0.95 * (len(values) - 1)))]


def report_concurrency(count: int, figures: dict[str, Any]) -> None:
    """Print the many-sandboxes figures against the goals."""
    ready_early, early, seconds, load = figures["early"]
    print(
        f"concurrent sandboxes: {figures['ready']}/{count} ready at once; the first "
        f"{ready_early}/{early} in {seconds:.1f} s (load {load:.1f})"
    )
    late = figures["late_times"]
    if late:
        p95 = _p95(late)
        verdict = "within" if p95 <= GOALS["p95_s"] else "OVER"
        print(
            f"  {len(late)} more started beside them: median {statistics.median(late):.2f} s, "
            f"p95 {p95:.2f} s ({verdict} the {GOALS['p95_s']:g} s goal; load "
            f"{figures['late_load']:.1f})"
        )
    cost = figures["cost"]["median"]
    if cost:
        each = cost.get("pss", 0.0)
        verdict = "within" if each <= GOALS["each_mib"] else "OVER"
        print(
            f"  idle cost per sandbox (median of {figures['cost']['sandboxes']}): "
            f"PSS {each:.0f} MiB ({verdict} {GOALS['each_mib']:g} MiB), RSS "
            f"{cost.get('rss', 0.0):.0f} MiB, cgroup {cost.get('cgroup', 0.0):.0f} MiB; "
            f"{figures['cost_load']}"
        )
        for role in ("server", "relays", "kernel", "other"):
            if f"{role}_n" in cost:
                print(
                    f"    {role:<7} {cost[f'{role}_n']:.0f} process(es): RSS "
                    f"{cost[f'{role}_rss']:.0f} MiB, PSS {cost[f'{role}_pss']:.0f} MiB"
                )


def compare(sandbox: Platform, stack: ExitStack) -> None:
    """Start-to-ready of one server, sandbox vs local spawner, alternating rounds."""
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


def main() -> None:
    """Print medians, their ratio, and the concurrency result."""
    print(
        f"spawn: start-to-ready, {ROUNDS} rounds each, alternating (median, min-max); "
        f"{load_average()}"
    )
    with ExitStack() as stack:
        sandbox = stack.enter_context(running_platform(Path(tempfile.mkdtemp()), rows=1000))
        if ROUNDS > 0:  # BENCH_SPAWN_ROUNDS=0: only the many-sandboxes part
            compare(sandbox, stack)
        report_concurrency(CONCURRENT, concurrency(sandbox, CONCURRENT))
