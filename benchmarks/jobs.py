"""Sealed production runs: submit-to-running latency, and the runner's overhead.

In one run, on a state root of its own with ``health_records`` of ``SHUYU_BENCH_ROWS``
rows (10 million by default, ``--rows``) granted to one tenant:

* **submit to running**: an empty job (``pass``) is submitted through the queue while a
  jobs worker (the one the platform service runs) polls it; the time from the submit's
  commit to the job's ``running`` status, and to its end (sealed sandbox, log, egress
  request with its disclosure checks), median of ``SHUYU_BENCH_JOBS`` jobs. Goal ≤ 2 s.
* **overhead**: one aggregation script (sum, mean and count of the settlement amount by
  district and by sex) run directly with the platform's Python on the production input
  file, and the same script as a job in the sealed runner (bubblewrap, cgroup, limits,
  collecting the outputs into an egress request), alternating, ``SHUYU_BENCH_ROUNDS``
  rounds; the ratio of the medians of wall time, and each one's peak memory. Goal ≤ 1.2×.

The production input is built once before the rounds (its build time is printed apart).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .rawdata import raw_file, workspace

REPO = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("SHUYU_BENCH_ROWS", "10000000"))
ROUNDS = int(os.environ.get("SHUYU_BENCH_ROUNDS", "3"))
JOBS = int(os.environ.get("SHUYU_BENCH_JOBS", "10"))

AGGREGATE = """
import pandas as pd
import shuyu.jobs
df = pd.read_parquet(shuyu.jobs.input_path("health_records"),
                     columns=["district", "sex", "settlement_amount"])
out = []
for key in ("district", "sex"):
    out.append(df.groupby(key, observed=True)["settlement_amount"].agg(["sum", "mean", "count"]))
pd.concat(out).to_csv("summary.csv")
# VmHWM, not ru_maxrss: a child spawned with vfork inherits its parent's maxrss
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("PEAK_KIB", hwm.split()[1])
"""


def _status(settings, job_id: str) -> str:
    from shuyu_platform.core.db import session_scope
    from shuyu_platform.core.models import Job

    with session_scope(settings.db_url) as session:
        return session.get(Job, job_id).status


def _submit(settings, code: str, outputs: list[str]) -> tuple[str, float]:
    import base64

    from shuyu_platform.core.db import session_scope
    from shuyu_platform.jobs import queue

    body = {
        "entry": "job.py",
        "files": {"job.py": base64.b64encode(code.encode()).decode()},
        "outputs": outputs,
    }
    with session_scope(settings.db_url) as session:
        row = queue.submit(
            session,
            settings.zone("jobs"),
            tenant="bench",
            username="bench",
            purpose="benchmark",
            submission=queue.parse_submission(body),
        )
        job_id = row.id
    return job_id, time.perf_counter()


def _wait(settings, job_id: str, wanted: set[str], step: float = 0.01) -> float:
    while _status(settings, job_id) not in wanted:
        time.sleep(step)
    return time.perf_counter()


def _direct(settings, script: Path, inputs: Path) -> tuple[float, float]:
    """Wall seconds and peak MiB of the script run directly by the platform's Python."""
    env = {
        **os.environ,
        "SHUYU_JOB": "1",
        "SHUYU_JOB_INPUTS": str(inputs),
        "PYTHONPATH": str(REPO / "kernels"),
        "OMP_NUM_THREADS": "1",
    }
    with tempfile.TemporaryDirectory() as cwd:
        started = time.perf_counter()
        out = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        wall = time.perf_counter() - started
    return wall, _peak(out)


def _peak(log: str) -> float:
    """The script's own peak resident memory (MiB), as it printed it."""
    line = next(line for line in log.splitlines() if line.startswith("PEAK_KIB"))
    return int(line.split()[1]) / 1024


def arguments(argv: Sequence[str]) -> argparse.Namespace:
    """``--rows``, ``--rounds`` and ``--jobs``, defaulting to the environment's settings."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks jobs")
    parser.add_argument("--rows", type=int, default=ROWS, help="rows of health_records")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="direct/sealed rounds")
    parser.add_argument("--jobs", type=int, default=JOBS, help="empty jobs timed")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] = ()) -> None:
    """Print the medians, the ratio and the peak memory (see the module docstring)."""
    options = arguments(argv)
    rows, rounds, jobs = options.rows, options.rounds, options.jobs
    from shuyu_platform.access import grants
    from shuyu_platform.core import db
    from shuyu_platform.core.db import session_scope
    from shuyu_platform.core.models import EgressRequest, Job
    from shuyu_platform.core.settings import Shuyu
    from shuyu_platform.data.policy import load_policies
    from shuyu_platform.egress import disclosure
    from shuyu_platform.egress import requests as egress
    from shuyu_platform.jobs import inputs, worker

    print(f"jobs: {rows:,} rows of health_records, {rounds} rounds, {jobs} empty jobs")
    with workspace("jobs") as folder:
        settings = Shuyu(
            home=str(folder / "home"),
            db_url=f"sqlite:///{folder / 'home' / 'db' / 'shuyu.sqlite'}",
            policies_dir=str(REPO / "policies"),
            job_wall_seconds=3600,
            job_cpu_seconds=3600,
            job_memory_mb=8192,
            job_disk_mb=1024,
            job_concurrency=1,
            job_cpus=float(os.cpu_count() or 1),  # as many cores as the direct run has
        )
        settings.ensure_zones()
        db.upgrade(settings.db_url)
        raw = raw_file(folder, rows)
        target = settings.zone("raw") / raw.name
        if not target.exists():
            os.link(raw, target)
        policies = load_policies(REPO / "policies")
        with db.session_scope(settings.db_url) as session:
            if not grants.active(session, tenant="bench", dataset="health_records"):
                grants.issue(session, policies["health_records"], tenant="bench", fields=None,
                             actor="bench")  # fmt: skip
        started = time.perf_counter()
        built = inputs.build(settings, "bench", policies)
        print(f"  production input built in {time.perf_counter() - started:.1f} s "
              f"({built['health_records'].rows:,} rows)")  # fmt: skip

        work = worker.Worker(settings, policies, lambda tenant: disclosure.Context())
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        serving = asyncio.run_coroutine_threadsafe(work.serve(), loop)

        to_running, to_end = [], []
        for _ in range(jobs):
            job_id, submitted = _submit(settings, "pass", [])
            running = _wait(settings, job_id, {"running", "succeeded", "failed"}, 0.005)
            ended = _wait(settings, job_id, {"succeeded", "failed"})
            to_running.append(running - submitted)
            to_end.append(ended - submitted)
        print(
            f"  submit → running: median {statistics.median(to_running):.3f} s "
            f"(min {min(to_running):.3f}, max {max(to_running):.3f}); goal ≤ 2 s"
        )
        print(f"  submit → ended (empty job, request filed): median "
              f"{statistics.median(to_end):.3f} s")  # fmt: skip

        script = folder / "aggregate.py"
        script.write_text(AGGREGATE)
        direct, sealed, direct_mem, sealed_mem = [], [], [], []
        for _ in range(rounds):
            wall, peak = _direct(settings, script, built["health_records"].path.parent)
            direct.append(wall)
            direct_mem.append(peak)
            job_id, _ = _submit(settings, AGGREGATE, ["summary.csv"])
            _wait(settings, job_id, {"succeeded", "failed"}, 0.05)
            with session_scope(settings.db_url) as session:
                row = session.get(Job, job_id)
                usage, status, reason = json.loads(row.usage), row.status, row.reason
                request = session.get(EgressRequest, row.request_id)
                content = egress.read_snapshot(settings.zone("outbox"), request)
            if status != "succeeded":
                sys.exit(f"the aggregation job {job_id} {status}: {reason}")
            log = next(f for f in content["files"] if f["path"] == "job.log")
            sealed.append(usage["wall_seconds"])
            sealed_mem.append(_peak(base64.b64decode(log["data_b64"]).decode()))
        loop.call_soon_threadsafe(serving.cancel)
        time.sleep(0.5)
        loop.call_soon_threadsafe(loop.stop)
        d, s = statistics.median(direct), statistics.median(sealed)
        print(
            f"  aggregation of {rows:,} rows: direct median {d:.2f} s, "
            f"sealed job median {s:.2f} s, ratio {s / d:.2f}x (goal ≤ 1.2x)"
        )
        print(
            f"  peak memory of the script: direct {max(direct_mem):.0f} MiB, sealed job "
            f"{max(sealed_mem):.0f} MiB; this process "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )
        print(f"  load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
