"""Run jobs through the real queue and the real sealed runner, without a hub.

:func:`state_root` makes a state root with demo raw data and grants (kangning holds
health_records, other-co social_insurance) and small job limits, so the attack tests
hit the limits in seconds.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from harness import local_settings
from shuyu_platform.access import grants
from shuyu_platform.core import db
from shuyu_platform.core.models import EgressRequest, Job
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data import demodata
from shuyu_platform.data.policy import DatasetPolicy
from shuyu_platform.egress import disclosure
from shuyu_platform.egress import requests as egress
from shuyu_platform.jobs import queue, runner


def grant(settings: Shuyu, policy: DatasetPolicy, tenant: str, **kwargs: Any) -> int:
    """An active grant of ``policy``'s dataset to ``tenant``."""
    with db.session_scope(settings.db_url) as session:
        return grants.issue(session, policy, tenant=tenant, actor="op", fields=None, **kwargs).id


def state_root(home: Path, policies: dict[str, DatasetPolicy], **limits: Any) -> Shuyu:
    """Settings of a fresh state root with demo data, two tenants' grants, small limits."""
    traits = {
        "job_wall_seconds": 20,
        "job_cpu_seconds": 6,
        "job_memory_mb": 384,
        "job_disk_mb": 16,
        "job_pids": 64,
        **limits,
    }
    settings = local_settings(home, **traits)
    demodata.generate(
        settings.zone("raw"), rows=2000, datasets=["health_records", "social_insurance"]
    )
    grant(settings, policies["health_records"], "kangning")
    grant(settings, policies["social_insurance"], "other-co")
    return settings


def limited(settings: Shuyu, **limits: Any) -> Shuyu:
    """The same state root with other job limits."""
    return Shuyu(
        home=settings.home, db_url=settings.db_url, policies_dir=settings.policies_dir, **limits
    )


def submit(
    settings: Shuyu,
    files: dict[str, str | bytes],
    *,
    entry: str | None = None,
    outputs: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
    tenant: str = "kangning",
    username: str = "alice",
    imports: list[str] | None = None,
) -> str:
    """Queue a job of ``files`` (text or bytes), reading ``imports``; returns its id."""
    encoded = {
        name: base64.b64encode(data.encode() if isinstance(data, str) else data).decode()
        for name, data in files.items()
    }
    body = {
        "entry": entry or next(iter(files)),
        "files": encoded,
        "parameters": parameters or {},
        "outputs": outputs or [],
        "imports": imports or [],
    }
    with db.session_scope(settings.db_url) as session:
        row = queue.submit(
            session,
            settings.zone("jobs"),
            tenant=tenant,
            username=username,
            purpose="测试 a test",
            submission=queue.parse_submission(body),
        )
        return row.id


def run(settings: Shuyu, policies: dict[str, DatasetPolicy], job_id: str) -> dict[str, Any]:
    """Claim and run one job to its end; its row as a dict, with its request's content."""
    with db.session_scope(settings.db_url) as session:
        assert queue.claim(session, job_id, "test-runner")
    runner.run(settings, policies, job_id, check_context=lambda tenant: disclosure.Context())
    return result(settings, job_id)


def result(settings: Shuyu, job_id: str) -> dict[str, Any]:
    """The job as a dict, with ``request`` (its egress request) and ``content``."""
    with db.session_scope(settings.db_url) as session:
        row = session.get(Job, job_id)
        answer = queue.as_dict(row)
        request = session.get(EgressRequest, row.request_id) if row.request_id else None
        answer["request"] = egress.as_dict(request, reviewer=True) if request else None
        answer["content"] = (
            egress.read_snapshot(settings.zone("outbox"), request) if request else None
        )
    return answer


def files_of(job: dict[str, Any]) -> dict[str, bytes]:
    """The files of a job's request, by path."""
    return {f["path"]: base64.b64decode(f["data_b64"]) for f in job["content"]["files"]}


def log_of(job: dict[str, Any]) -> str:
    """The job's log, as its request holds it."""
    return files_of(job)[runner.LOG].decode(errors="replace")


def notebook(*cells: str, parameters: str = "") -> str:
    """A notebook of code cells; ``parameters`` is its papermill parameters cell."""
    made = []
    if parameters:
        made.append(
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": parameters,
             "outputs": [], "execution_count": None}
        )  # fmt: skip
    made += [
        {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None}
        for c in cells
    ]
    document = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": made,
    }
    return json.dumps(document)


def released(settings: Shuyu, job: dict[str, Any]) -> bool:
    """Whether anything of the job's request reached the released zone."""
    request = job["request"]
    return bool(request) and (settings.zone("released") / request["id"]).exists()
