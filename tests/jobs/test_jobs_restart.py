"""The jobs queue across a SIGKILL of the platform service, through the real hub.

alice has one job running and one queued (her tenant runs one at a time) when the
platform service is killed; the hub starts it again, the new worker requeues the run
whose runner is gone, and both jobs end exactly once, each with one export request.
The shared session platform is reused: the test waits until its service is back.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from harness import Platform
from shuyu.jobs import submission
from shuyu_platform.core.db import session_scope
from shuyu_platform.core.models import EgressRequest

pytestmark = [pytest.mark.hub, pytest.mark.slow, pytest.mark.timeout(600)]

SLOW = "import time\nprint('attempt started', flush=True)\ntime.sleep(6)\nprint('done')\n"


def _submit(platform: Platform, name: str) -> str:
    body = submission(name, purpose="重启测试 a restart test", read=lambda _: SLOW.encode())
    answer = platform.service_post("alice", "api/jobs", body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _status(platform: Platform, job_id: str) -> str:
    try:
        answer = platform.service_get("alice", f"api/jobs/{job_id}", timeout=10)
    except requests.RequestException:
        return "unreachable"
    return str(answer.json()["status"]) if answer.status_code == 200 else "unreachable"


def _service_pid(platform: Platform) -> int:
    return int((Path(platform.home) / "hub" / "shuyu_platform-service.pid").read_text())


def test_a_running_and_a_queued_job_survive_a_sigkill_and_end_exactly_once(
    platform: Platform,
) -> None:
    names = {f"restart_{uuid.uuid4().hex[:8]}_{n}.py": "" for n in ("first", "second")}
    running, waiting = (_submit(platform, name) for name in names)
    names = dict(zip(names, (running, waiting), strict=True))
    deadline = time.monotonic() + 120
    while _status(platform, running) != "running":
        assert time.monotonic() < deadline, "the first job never started"
        time.sleep(0.2)
    assert _status(platform, waiting) == "queued"  # one run at a time per tenant

    old = _service_pid(platform)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 240
    ended = {"succeeded", "failed", "timed_out", "cancelled"}
    while not {_status(platform, running), _status(platform, waiting)} <= ended:
        assert time.monotonic() < deadline, platform.log()[-4000:]
        time.sleep(1)
    assert _service_pid(platform) != old

    for name, job_id in names.items():
        job = platform.service_get("alice", f"api/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["exit_code"] == 0, job
        events = [
            e["action"] for e in platform.audit_events("job.") if e["target"] == f"job:{job_id}"
        ]
        ends = [a for a in events if a in ("job.succeed", "job.fail", "job.time_out")]
        assert ends == ["job.succeed"], events  # ended exactly once
        with session_scope(platform.db_url) as session:
            requests_of_job = session.scalar(
                select(func.count())
                .select_from(EgressRequest)
                .where(EgressRequest.kind == "job", EgressRequest.source == name)
            )
        assert requests_of_job == 1
    first = [e for e in platform.audit_events("job.") if e["target"] == f"job:{running}"]
    actions = [e["action"] for e in first]
    assert actions == ["job.submit", "job.start", "job.requeue", "job.start", "job.succeed"]
    assert first[3]["detail"]["attempt"] == 2
