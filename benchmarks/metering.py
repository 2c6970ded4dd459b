"""What the operations metering costs the platform service: per request, and per scrape.

Two copies of the service's application serve the same state root on loopback, one with
the request metrics (``PlatformMetrics.observe`` as tornado's ``log_function``) and one
with tornado's plain access log; requests to a cheap route alternate between them, so
machine noise hits both alike. Then the ``metrics`` endpoint is scraped repeatedly over
a database holding ``--events`` audit records (server starts and stops, sandbox usage)
and ``--releases`` DP releases. Reported: median request latency of each copy and the
difference, median scrape time, peak memory. Goal: at most 1 ms added per request.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import REPO, local_settings
from served import serving
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import AuditEvent
from shuyu_platform.data.policy import load_policies
from shuyu_platform.dp import budget
from shuyu_platform.operations.metrics import metrics_token

GOAL_MS = 1.0


def _populate(settings, events: int, releases: int) -> None:
    policy = load_policies(REPO / "policies")["health_records"]
    with db.session_scope(settings.db_url) as session:
        grant = grants.issue(
            session, policy, tenant="kangning", fields=None, actor="op", budget_epsilon=1e6
        )
        for i in range(events):
            action = ("server.start", "server.stop", "sandbox.usage")[i % 3]
            audit.record(session, actor=f"u{i % 50}", action=action, tenant="kangning",
                         detail={"cpu_seconds": 1.0, "memory_gb_hours": 0.01})  # fmt: skip
    for _ in range(releases):
        release = budget.debit(
            settings.db_url, grant, policy=policy, username="alice", kind="query",
            cost_micro=1000, request={},
        )  # fmt: skip
        budget.release(settings.db_url, release, {"n": 1}, username="alice")


def main(argv: Sequence[str] = ()) -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks metering")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--releases", type=int, default=500)
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args(list(argv))
    logging.disable(logging.WARNING)  # the 401s of the cheap route are expected
    with tempfile.TemporaryDirectory(prefix="shuyu-bench-metering-") as tmp:
        settings = local_settings(Path(tmp) / "home")
        _populate(settings, args.events, args.releases)
        with db.session_scope(settings.db_url) as session:
            stored = session.query(AuditEvent).count()
        with serving(settings) as counted, serving(settings, metrics=False) as plain:
            timings: dict[str, list[float]] = {"with metrics": [], "without": []}
            with requests.Session() as http:
                for _ in range(args.requests):
                    for name, base in (("with metrics", counted), ("without", plain)):
                        began = time.perf_counter()
                        http.get(f"{base}api/catalogue", timeout=30)
                        timings[name].append((time.perf_counter() - began) * 1000)
                token = {"Authorization": f"Bearer {metrics_token(settings)}"}
                scrapes = []
                for _ in range(args.scrapes):
                    began = time.perf_counter()
                    answer = http.get(f"{counted}metrics", headers=token, timeout=60)
                    scrapes.append((time.perf_counter() - began) * 1000)
                    answer.raise_for_status()
    with_ms = statistics.median(timings["with metrics"])
    without_ms = statistics.median(timings["without"])
    print(f"metering: {args.requests} alternating requests per copy, {stored} audit records, "
          f"{args.releases} DP releases")  # fmt: skip
    print(f"  request median with metrics   {with_ms:8.2f} ms")
    print(f"  request median without       {without_ms:8.2f} ms")
    print(f"  added per request             {with_ms - without_ms:8.2f} ms (goal ≤ {GOAL_MS} ms)")
    print(f"  scrape median ({args.scrapes} scrapes)    {statistics.median(scrapes):8.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory (this process)    {peak:8.0f} MiB")
