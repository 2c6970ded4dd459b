"""Signed-in users hammering the platform service, on SQLite and on PostgreSQL in one run.

For each database a real platform is started (hub, proxy, platform service, demo data
of ``--rows`` rows); PostgreSQL is a temporary cluster of Debian's server, as in the
tests. Then ``--users`` merchant accounts (30 by default, all in tenant ``kangning``)
sign in through the hub's login form and the service's OAuth, like browsers, and each
loops for ``--seconds`` (60 by default) over four calls in turn: the catalogue, their DP
budget, their egress requests, and a small DP query (a count at ε 0.0001). Every answer
that is not 2xx, and every failed connection, counts as an error. Before each run one
user makes each call once, not counted (the first DP query loads the engine).

Two user models run one after the other on the same platform:

* **closed loop**: each user sends the next request as soon as the last is answered (no
  pause). This measures capacity: latency is then mostly queueing, since 30 users
  always have 30 requests in flight.
* **paced**: each user waits a think time of ``--think`` seconds ± ``--jitter`` (uniform;
  1 s ± 0.5 s by default) between an answer and the next request, and starts after a
  random part of one think time, like people clicking. The p95 goal is read on this one.

Reported per database and model: requests, requests/s, error rate, p50/p95/p99 latency,
overall and per call. Goal: no errors and p95 ≤ 200 ms (paced). ``--seconds 10 --users
5`` is a smoke run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from .memory import load_average, tree_mib

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import Platform, running_platform
from postgres import TemporaryCluster
from shuyu_platform.core.accounts import AccountStore

GOAL_P95_MS = 200.0
SERVICE = "/services/shuyu"
#: ε 0.0001: thousands of queries a minute stay inside a grant of ε 0.5 and the
#: dataset's global budget, so a refusal for an exhausted budget never counts as an error.
QUERY = {"dataset": "health_records", "epsilon": 0.0001, "statistics": {"n": {"fn": "count"}}}

Call = Callable[[requests.Session, dict[str, str], str], requests.Response]

CALLS: dict[str, Call] = {
    "catalogue": lambda s, h, url: s.get(f"{url}{SERVICE}/api/catalogue", timeout=30),
    "dp budget": lambda s, h, url: s.get(f"{url}{SERVICE}/api/dp/budget", timeout=30),
    "egress list": lambda s, h, url: s.get(f"{url}{SERVICE}/api/egress/requests", timeout=30),
    "dp query": lambda s, h, url: s.post(
        f"{url}{SERVICE}/api/dp/query", json=QUERY, headers=h, timeout=30
    ),
}


def _percentile(sorted_ms: list[float], p: float) -> float:
    if not sorted_ms:
        return float("nan")
    index = min(len(sorted_ms) - 1, max(0, round(p / 100 * len(sorted_ms)) - 1))
    return sorted_ms[index]


def summary(samples: list[tuple[str, float, bool]], seconds: float) -> dict[str, Any]:
    """Requests, rate, error rate and latency percentiles of ``(call, ms, ok)`` samples."""

    def figures(rows: list[tuple[str, float, bool]]) -> dict[str, Any]:
        ms = sorted(r[1] for r in rows)
        errors = sum(1 for r in rows if not r[2])
        return {
            "requests": len(rows),
            "per_second": round(len(rows) / seconds, 1),
            "errors": errors,
            "error_rate": round(errors / len(rows), 4) if rows else 0.0,
            "p50_ms": round(_percentile(ms, 50), 1),
            "p95_ms": round(_percentile(ms, 95), 1),
            "p99_ms": round(_percentile(ms, 99), 1),
            "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
        }

    result = figures(samples)
    result["calls"] = {name: figures([r for r in samples if r[0] == name]) for name in CALLS}
    return result


def add_users(platform: Platform, count: int) -> list[str]:
    """``count`` merchant accounts of tenant kangning (which holds the demo grants)."""
    store = AccountStore(platform.home / "hub" / "accounts.json")
    names = [f"load{i:02d}" for i in range(count)]
    for name in names:
        store.add(
            name,
            real_name="压测用户",
            role="merchant",
            password=f"{name}-demo-2026",
            tenant="kangning",
            replace=True,
        )
    return names


@dataclass(frozen=True)
class Model:
    """How a user paces requests: ``think`` seconds ± ``jitter`` between them (0: none)."""

    name: str
    think: float = 0.0
    jitter: float = 0.0

    def describe(self) -> str:
        """The model in words, for the report."""
        if not self.think:
            return "closed loop, no pause between requests"
        return f"paced, think time {self.think:g} s ± {self.jitter:g} s (uniform) between requests"

    def pause(self, rng: random.Random) -> float:
        """One think time."""
        return max(0.0, rng.uniform(self.think - self.jitter, self.think + self.jitter))


def sign_in(platform: Platform, users: int) -> list[tuple[requests.Session, dict[str, str]]]:
    """``users`` merchants signed in to the service, like browsers."""
    return [platform.service_session(name) for name in add_users(platform, users)]


def drive(
    platform: Platform,
    signed_in: list[tuple[requests.Session, dict[str, str]]],
    seconds: float,
    model: Model = Model("closed loop"),
) -> dict[str, Any]:
    """Let each signed-in user loop over :data:`CALLS` for ``seconds``, paced by ``model``."""
    users = len(signed_in)
    for call in CALLS.values():  # warm-up, not counted: the first query loads the DP engine
        call(*signed_in[0], platform.url)
    samples: list[tuple[str, float, bool]] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(users + 1)
    stop_at: list[float] = []

    def user(index: int) -> None:
        session, headers = signed_in[index]
        order = list(CALLS)
        turn = index % len(order)  # users start on different calls
        mine: list[tuple[str, float, bool]] = []
        why: list[str] = []
        rng = random.Random(index)
        start.wait()
        if model.think:  # arrivals spread over one think time, not all at once
            time.sleep(rng.uniform(0, model.think))
        while time.monotonic() < stop_at[0]:
            name = order[turn % len(order)]
            turn += 1
            began = time.perf_counter()
            try:
                answer = CALLS[name](session, headers, platform.url)
                ok = 200 <= answer.status_code < 300
                if not ok:
                    why.append(f"{name}: {answer.status_code} {answer.text[:200]}")
            except requests.RequestException as err:
                ok = False
                why.append(f"{name}: {err}")
            mine.append((name, (time.perf_counter() - began) * 1000, ok))
            if model.think:
                time.sleep(min(model.pause(rng), max(0.0, stop_at[0] - time.monotonic())))
        with lock:
            samples.extend(mine)
            failures.extend(why)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for thread in threads:
        thread.start()
    stop_at.append(time.monotonic() + seconds)
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    result = summary(samples, time.monotonic() - began)
    result["failures"] = failures[:20]  # the first few, to tell what went wrong
    result["model"] = model.describe()
    return result


def run(
    database: str, users: int, seconds: float, rows: int, models: list[Model]
) -> dict[str, dict[str, Any]]:
    """Start a platform on ``database`` (sqlite or postgresql) and drive it with each model."""
    with tempfile.TemporaryDirectory(prefix=f"shuyu-load-{database}-") as tmp:
        extra: dict[str, str] = {}
        cluster = None
        if database == "postgresql":
            cluster = TemporaryCluster().start()
            extra["SHUYU_DB_URL"] = cluster.create_database("shuyu")
        try:
            with running_platform(Path(tmp) / "home", rows=rows, **extra) as platform:
                results = {}
                signed_in = sign_in(platform, users)
                for model in models:
                    figures = drive(platform, signed_in, seconds, model)
                    figures["memory_mib"] = tree_mib(platform.proc.pid)
                    figures["load"] = load_average()
                    results[model.name] = figures
                return results
        finally:
            if cluster is not None:
                cluster.stop()


def report(database: str, figures: dict[str, Any]) -> None:
    """Print one database's figures under one user model as a small table."""
    met = not figures["errors"] and figures["p95_ms"] <= GOAL_P95_MS
    print(
        f"\n{database}, {figures['model']}:\n  {figures['requests']} requests, "
        f"{figures['per_second']}/s, "
        f"errors {figures['errors']} ({figures['error_rate']:.2%}), p50 {figures['p50_ms']} ms, "
        f"p95 {figures['p95_ms']} ms, p99 {figures['p99_ms']} ms "
        f"[goal 0 errors, p95 <= {GOAL_P95_MS:.0f} ms: {'met' if met else 'NOT met'}]"
    )
    memory = figures["memory_mib"]
    print(
        f"  platform processes ({memory['processes']:.0f}): peak RSS {memory['peak']:.0f} MiB "
        f"(sum of peaks), RSS {memory['rss']:.0f} MiB, PSS {memory['pss']:.0f} MiB at the end; "
        f"{figures['load']}"
    )
    for failure in figures.get("failures", [])[:5]:
        print(f"  error: {failure}")
    for name, row in figures["calls"].items():
        print(
            f"  {name:<12} {row['requests']:>6} req {row['per_second']:>7}/s "
            f"err {row['errors']:>4}  p50 {row['p50_ms']:>7} p95 {row['p95_ms']:>7} "
            f"p99 {row['p99_ms']:>7} ms"
        )


def main(argv: list[str] | tuple[str, ...] = ()) -> None:
    """``python -m benchmarks load [--users N] [--seconds S] [--rows R] [--databases ...]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks load", description=__doc__)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rows", type=int, default=2000, help="rows of demo data per dataset")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--think", type=float, default=1.0, help="paced model: seconds between requests"
    )
    parser.add_argument(
        "--jitter", type=float, default=0.5, help="paced model: ± seconds around --think"
    )
    parser.add_argument(
        "--models", default="closed,paced", help="which user models to run, in this order"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(list(argv))
    known = {"closed": Model("closed"), "paced": Model("paced", args.think, args.jitter)}
    models = [known[name] for name in args.models.split(",")]
    print(
        f"{args.users} users, {args.seconds:g} s per model, goal (paced): 0 errors, "
        f"p95 <= {GOAL_P95_MS:.0f} ms"
    )
    results: dict[str, Any] = {}
    for database in args.databases.split(","):
        began = time.monotonic()
        results[database] = run(database, args.users, args.seconds, args.rows, models)
        for figures in results[database].values():
            report(database, figures)
        results[database]["wall_seconds"] = round(time.monotonic() - began, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
