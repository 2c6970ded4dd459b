"""The queue survives a killed runner: no job lost, none run twice; limits per tenant."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from harness import REPO
from sealed_jobs import state_root, submit
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import EgressRequest, Job
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.jobs import queue, worker


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


def _start(settings: Shuyu, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shuyu_platform.jobs.worker"],
        env={
            **os.environ,
            "SHUYU_HOME": settings.home,
            "SHUYU_DB_URL": settings.db_url,
            "SHUYU_POLICIES_DIR": settings.policies_dir,
            "SHUYU_JOB_WALL_SECONDS": "60",
            **env,
        },
        start_new_session=True,
    )


def _statuses(settings: Shuyu, ids: list[str]) -> dict[str, str]:
    with db.session_scope(settings.db_url) as session:
        return {j: session.get(Job, j).status for j in ids}


def _wait(settings: Shuyu, ids: list[str], done: set[str], seconds: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = _statuses(settings, ids)
        if set(now.values()) <= done:
            return now
        time.sleep(0.2)
    raise AssertionError(f"jobs did not reach {done}: {_statuses(settings, ids)}")


@pytest.mark.slow
def test_a_killed_runner_loses_no_job_and_runs_none_twice(
    tmp_path: Path, policies: dict[str, DatasetPolicy]
) -> None:
    settings = state_root(tmp_path / "home", policies)
    slow = "import time\nopen('started', 'a').write('x')\ntime.sleep(4)\nprint('finished')"
    ids = [
        submit(settings, {"slow.py": slow}, outputs=["started"]),
        submit(settings, {"quick.py": "print('quick')"}, tenant="other-co", username="olga"),
        submit(settings, {"quick.py": "print('second of kangning')"}),
    ]
    first = _start(settings)
    try:
        _wait(settings, ids[:1], {"running"})
        time.sleep(1)  # the slow job's sandbox is up
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # like a platform killed mid-run
        first.wait()
    assert _statuses(settings, ids)[ids[0]] == "running"  # as the dead runner left it
    second = _start(settings)
    try:
        final = _wait(settings, ids, queue.FINAL)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait()
    assert set(final.values()) == {"succeeded"}, final
    with db.session_scope(settings.db_url) as session:
        for job_id in ids:
            requests = session.scalars(
                select(EgressRequest).where(EgressRequest.title.startswith(f"job {job_id[:8]}"))
            ).all()
            assert len(requests) == 1, job_id  # one run ended, one request
        row = session.get(Job, ids[0])
        assert row.attempts == 2
        events = [
            e["action"]
            for e in audit.query(session, action="job.", limit=1000)
            if e["target"] == f"job:{ids[0]}"
        ]
    assert events == ["job.submit", "job.start", "job.requeue", "job.start", "job.succeed"]
    # The killed run's cgroups were removed when it was requeued.
    assert not list(Path("/sys/fs/cgroup").glob(f"*/shuyu/job-{ids[0]}"))


def test_a_tenant_waits_for_its_own_running_job_and_drain_holds_the_queue(
    tmp_path: Path, policies: dict[str, DatasetPolicy]
) -> None:
    settings = state_root(tmp_path / "home", policies, job_concurrency=3)
    mine = [submit(settings, {"a.py": "pass"}) for _ in range(2)]
    theirs = submit(settings, {"a.py": "pass"}, tenant="other-co", username="olga")
    work = worker.Worker(settings, policies, lambda tenant: None)
    started = work.start_due()
    assert started == [mine[0], theirs]  # one per tenant; kangning's second waits
    assert work.start_due() == []
    worker.drain_marker(settings).write_text("x")
    with db.session_scope(settings.db_url) as session:
        row = session.get(Job, mine[0])
        queue.transition(session, row, "cancel", actor="alice")
    assert work.start_due() == []  # draining: kangning's second still waits
    worker.drain_marker(settings).unlink()
    assert work.start_due() == [mine[1]]
