"""Sealed production runs over HTTP: submit, follow, cancel; logs only once released.

``POST api/jobs``
    A merchant submits code of its work folder (an entry notebook or script and the
    files it needs), parameters, the expected outputs and a purpose. The code is frozen
    in the jobs zone (:mod:`..jobs.queue`) and the job queued.
``GET api/jobs`` and ``GET api/jobs/<id>``
    The tenant's jobs (an operator or a reviewer: every tenant's): status, exit code,
    duration, resource use and the export request the run became; never log or outputs.
``POST api/jobs/<id>/cancel``
    The submitter (or an operator) cancels a queued or running job; nothing is kept.
``GET api/jobs/<id>/logs``
    The log of a job whose export request was released: the log as the reviewers saw
    and released it, read from the frozen snapshot (audited).
``GET jobs``
    The merchant's page of its tenant's jobs.
"""

from __future__ import annotations

import base64
from typing import Any

from tornado import web

from ..core.db import session_scope
from ..core.models import EgressRequest
from ..core.roles import EGRESS_REQUEST, EGRESS_REVIEW, TENANTS_MANAGE
from ..egress import requests as egress
from ..jobs import queue
from ..jobs.runner import LOG
from .base import ApiHandler, BaseHandler
from .request_models import EMPTY, JOB_SUBMISSION


class JobsHandler(ApiHandler):
    """What the job routes share: who may see every tenant's jobs, errors as JSON."""

    @property
    def overseer(self) -> bool:
        """An operator (``tenants:manage``) or a reviewer sees every tenant's jobs."""
        return self.has_scope(TENANTS_MANAGE) or self.has_scope(EGRESS_REVIEW)

    def viewer(self) -> None:
        """Refuse (403) anyone who is neither a merchant nor an overseer."""
        if not self.overseer:
            self.require_scope(EGRESS_REQUEST, "Jobs", "merchant")


class JobsApi(JobsHandler):
    """``GET``/``POST api/jobs``: list, or submit a new job."""

    def get(self) -> None:
        self.viewer()
        with session_scope(self.shuyu.db_url) as session:
            tenant = None if self.overseer else self.tenant
            rows = [queue.as_dict(r) for r in queue.listed(session, tenant)]
        self.write_json({"jobs": rows})

    def post(self) -> None:
        self.require_scope(EGRESS_REQUEST, "Submitting a job", "merchant")
        if self.tenant is None:
            raise web.HTTPError(403, f"{self.user['name']} belongs to no tenant.")
        body = self.body(JOB_SUBMISSION).model_dump()
        try:
            submission = queue.parse_submission(body)
            with session_scope(self.shuyu.db_url) as session:
                row = queue.submit(
                    session,
                    self.shuyu.zone("jobs"),
                    tenant=self.tenant,
                    username=self.user["name"],
                    purpose=body["purpose"].strip(),
                    submission=submission,
                )
                answer = queue.as_dict(row)
        except queue.JobError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None
        self.write_json(answer, 201)


class JobApi(JobsHandler):
    """``GET api/jobs/<id>``: one job as its tenant sees it."""

    def get(self, job_id: str) -> None:
        self.viewer()
        try:
            with session_scope(self.shuyu.db_url) as session:
                answer = queue.as_dict(queue.visible(session, job_id, self.tenant, self.overseer))
        except queue.JobError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None
        self.write_json(answer)


class CancelApi(JobsHandler):
    """``POST api/jobs/<id>/cancel``: the submitter or an operator cancels a job."""

    def post(self, job_id: str) -> None:
        operator = self.has_scope(TENANTS_MANAGE)
        if not operator:
            self.require_scope(EGRESS_REQUEST, "Cancelling a job", "merchant")
        self.body(EMPTY)
        try:
            with session_scope(self.shuyu.db_url) as session:
                row = queue.visible(session, job_id, self.tenant, operator)
                queue.transition(session, row, "cancel", actor=self.user["name"], operator=operator)
                answer = queue.as_dict(row)
        except queue.JobError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None
        self.write_json(answer)


def released_log(settings: Any, request: EgressRequest) -> str:
    """The log a released job request holds, from its verified snapshot."""
    if request.status != "released":
        raise queue.JobError(
            f"the log of this job is shown once its export request {request.id} is "
            f"released; it is {request.status}",
            409,
        )
    content = egress.read_snapshot(settings.zone("outbox"), request)
    for item in content.get("files", []):
        if item.get("path") == LOG:
            return base64.b64decode(item["data_b64"]).decode("utf-8", errors="replace")
    return ""


class LogsApi(JobsHandler):
    """``GET api/jobs/<id>/logs``: the log, once the job's export request is released."""

    def get(self, job_id: str) -> None:
        self.viewer()
        try:
            with session_scope(self.shuyu.db_url) as session:
                row = queue.visible(session, job_id, self.tenant, self.overseer)
                request = session.get(EgressRequest, row.request_id) if row.request_id else None
                if request is None:
                    raise queue.JobError(f"job {job_id} has no export request yet", 409)
                text = released_log(self.shuyu, request)
        except queue.JobError as err:
            self.audit("job.logs", f"job:{job_id}", outcome="denied", detail={"why": err.message})
            raise web.HTTPError(err.status, "%s", err.message) from None
        except egress.EgressError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None
        self.audit("job.logs", f"job:{job_id}", detail={"request": request.id})
        self.write_json({"job": job_id, "request": request.id, "log": text})


class JobsPage(BaseHandler):
    """``/jobs``: the merchant's view of its tenant's jobs (no logs, no outputs)."""

    @web.authenticated
    def get(self) -> None:
        self.require_scope(EGRESS_REQUEST, "Jobs", "merchant")
        with session_scope(self.shuyu.db_url) as session:
            rows = [queue.as_dict(r) for r in queue.listed(session, self.tenant)]
        self.render_page("jobs.html", jobs=rows)


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"api/jobs/?", JobsApi),
        (r"api/jobs/([0-9a-f]{32})/?", JobApi),
        (r"api/jobs/([0-9a-f]{32})/cancel/?", CancelApi),
        (r"api/jobs/([0-9a-f]{32})/logs/?", LogsApi),
        (r"jobs/?", JobsPage),
    ]
