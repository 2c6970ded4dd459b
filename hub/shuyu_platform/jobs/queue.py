"""The jobs queue: submitted code frozen in the jobs zone, and its audited lifecycle.

A merchant submits a notebook or a script of its work folder (with the other files it
needs), parameters and the list of outputs it expects. The code is frozen at once:
``jobs/<id>/code.json`` is written atomically, read-only, and its SHA-256 goes into the
job's row; the runner reads the code from there (checking the digest), never from the
sandbox again.

Status changes follow :data:`TRANSITIONS` (who takes each is in :data:`ACTORS`), each an
``job.<action>`` audit event in the same transaction::

    queued → running → succeeded | failed | timed_out
    queued | running → cancelled
    running → queued   (requeue: a run cut short by a platform restart, once)

A run is claimed with one conditional ``UPDATE … WHERE status = 'queued'``, so two
workers (or a worker and a restart) can never both start it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..core import audit
from ..core.atomic import replace_atomically, sync_and_hash
from ..core.db import stamp
from ..core.models import Job
from ..ingress import imports as ingress
from ..workflow import transitions as workflow
from ..workflow.transitions import WorkflowError

#: status -> {action: next status}.
TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "queued": {"start": "running", "cancel": "cancelled"},
    "running": {
        "succeed": "succeeded",
        "fail": "failed",
        "time_out": "timed_out",
        "cancel": "cancelled",
        "requeue": "queued",
    },
    "succeeded": {},
    "failed": {},
    "timed_out": {},
    "cancelled": {},
}
#: Who takes each action: the submitting merchant (or an operator), or the platform.
ACTORS: Final[dict[str, str]] = {
    "start": "platform",
    "succeed": "platform",
    "fail": "platform",
    "time_out": "platform",
    "requeue": "platform",
    "cancel": "requester",  # or an operator (shuyu jobs cancel)
}
#: Statuses a job ends in.
FINAL: Final[frozenset[str]] = frozenset(s for s, edges in TRANSITIONS.items() if not edges)
#: Largest frozen code (JSON, files base64-encoded).
MAX_CODE_BYTES: Final[int] = 8 * 1024 * 1024
#: Most files one job's code may hold.
MAX_FILES: Final[int] = 50
#: Most output patterns one job may declare.
MAX_OUTPUTS: Final[int] = 20
#: How many times a run cut short by a restart is started again.
MAX_ATTEMPTS: Final[int] = 2
_PATH = re.compile(r"^[A-Za-z0-9_\-.\u4e00-\u9fff][A-Za-z0-9_\-./\u4e00-\u9fff]*$")
_PATTERN = re.compile(r"^[A-Za-z0-9_\-.*?\[\]\u4e00-\u9fff][A-Za-z0-9_\-./*?\[\]\u4e00-\u9fff]*$")
_PARAMETER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_IMPORT = re.compile(ingress.NAME_PATTERN)


class JobError(WorkflowError):
    """A job or transition that cannot be made; ``status`` is the HTTP status."""


def relative_path(text: str, what: str, *, glob: bool = False) -> str:
    """``text`` as a plain relative path inside a folder (no ``..``, no absolute path);
    with ``glob``, a pattern of such paths (``*``, ``?``, ``[...]``)."""
    path = PurePosixPath(text)
    if (
        not text
        or len(text) > 256
        or not (_PATTERN if glob else _PATH).match(text)
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in text.split("/"))
    ):
        raise JobError(f"{what} {text!r} is not a plain relative path inside the work folder")
    return str(path)


def parse_submission(body: Mapping[str, Any]) -> dict[str, Any]:
    """The frozen part of a submission, checked: entry, kind, files, parameters, outputs.

    ``{"entry": "analysis.ipynb", "files": {"analysis.ipynb": "<base64>", ...},
    "parameters": {"year": 2025}, "outputs": ["out/*.csv"], "imports": ["customers"]}``.
    The entry must be one of the files; a ``.ipynb`` entry runs with papermill, a ``.py``
    one with Python. ``imports`` names the tenant's approved imports the job reads;
    :func:`submit` resolves them to their IDs.
    """
    entry = relative_path(str(body.get("entry", "")), "entry")
    kind = {".ipynb": "notebook", ".py": "script"}.get(PurePosixPath(entry).suffix)
    if kind is None:
        raise JobError("the entry must be a notebook (.ipynb) or a Python script (.py)")
    files = body.get("files")
    if not isinstance(files, dict) or not files or len(files) > MAX_FILES:
        raise JobError(f"files must map 1 to {MAX_FILES} relative paths to base64 content")
    clean: dict[str, str] = {}
    for name, data in files.items():
        name = relative_path(str(name), "file")
        try:
            base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise JobError(f"the content of {name} is not valid base64") from None
        clean[name] = str(data)
    if entry not in clean:
        raise JobError(f"the entry {entry} is not among the submitted files")
    if kind == "notebook":
        try:
            document = json.loads(base64.b64decode(clean[entry]))
        except ValueError:
            document = None
        if not isinstance(document, dict) or document.get("nbformat") != 4:
            raise JobError(f"{entry} is not a notebook in nbformat 4")
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict) or not all(_PARAMETER.match(k) for k in parameters):
        raise JobError("parameters must map Python identifiers to JSON values")
    outputs = body.get("outputs", [])
    if not isinstance(outputs, list) or len(outputs) > MAX_OUTPUTS:
        raise JobError(f"outputs must list at most {MAX_OUTPUTS} relative glob patterns")
    patterns = [relative_path(str(p), "output pattern", glob=True) for p in outputs]
    named = body.get("imports", [])
    if (
        not isinstance(named, list)
        or len(named) > ingress.MAX_JOB_IMPORTS
        or not all(isinstance(n, str) and _IMPORT.match(n) for n in named)
    ):
        raise JobError(f"imports must list at most {ingress.MAX_JOB_IMPORTS} import names")
    return {
        "entry": entry,
        "kind": kind,
        "files": dict(sorted(clean.items())),
        "parameters": parameters,
        "outputs": patterns,
        # only when named: the code of a job without imports freezes as it always did
        **({"imports": sorted(set(named))} if named else {}),
    }


def code_path(jobs_zone: Path, job_id: str) -> Path:
    """Where a job's frozen code lives."""
    return jobs_zone / job_id / "code.json"


def freeze(jobs_zone: Path, job_id: str, code: Mapping[str, Any]) -> tuple[str, int]:
    """Write the code atomically and read-only; return its SHA-256 and size."""
    data = audit.canonical_json(dict(code)).encode()
    if len(data) > MAX_CODE_BYTES:
        raise JobError(f"the code holds {len(data):,} bytes, more than {MAX_CODE_BYTES:,}", 413)
    path = code_path(jobs_zone, job_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _, digest = replace_atomically(path, lambda tmp: tmp.write_bytes(data), mode=0o400)
    return digest, len(data)


def read_code(jobs_zone: Path, row: Job) -> dict[str, Any]:
    """The frozen code, after checking it is the one that was submitted (409 if not)."""
    path = code_path(jobs_zone, row.id)
    if not path.is_file() or sync_and_hash(path) != row.code_sha256:
        raise JobError(
            f"the frozen code of job {row.id} is missing or changed since submission "
            "(SHA-256 mismatch); it is not run",
            409,
        )
    return dict(json.loads(path.read_bytes()))


def submit(
    session: Session,
    jobs_zone: Path,
    *,
    tenant: str,
    username: str,
    purpose: str,
    submission: Mapping[str, Any],
) -> Job:
    """Freeze the code and queue the job (audited).

    The imports it names are resolved to the tenant's approved imports' IDs, frozen with
    the code (:class:`JobError` 404/409/410 for one the tenant has not, or no longer).
    """
    named: dict[str, str] = {}
    if submission.get("imports"):
        try:
            named = ingress.for_job(session, tenant, list(submission["imports"]))
        except ingress.IngressError as err:
            raise JobError(err.message, err.status) from None
        submission = {**submission, "imports": named}
    job_id = uuid.uuid4().hex
    digest, size = freeze(jobs_zone, job_id, submission)
    now = stamp()
    row = Job(
        id=job_id,
        tenant=tenant,
        username=username,
        kind=submission["kind"],
        entry=submission["entry"],
        purpose=purpose,
        parameters=audit.canonical_json(submission["parameters"]),
        outputs=json.dumps(submission["outputs"]),
        code_sha256=digest,
        code_bytes=size,
        status="queued",
        attempts=0,
        runner="",
        reason="",
        usage="{}",
        inputs="{}",
        request_id="",
        created_at=now,
        started_at="",
        ended_at="",
        updated_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=username,
        action="job.submit",
        target=f"job:{job_id}",
        tenant=tenant,
        detail={
            "entry": row.entry,
            "kind": row.kind,
            "code_sha256": digest,
            "bytes": size,
            "files": sorted(submission["files"]),
            "outputs": submission["outputs"],
            "imports": named,
        },
    )
    return row


def transition(
    session: Session,
    row: Job,
    action: str,
    *,
    actor: str,
    operator: bool = False,
    detail: Mapping[str, Any] | None = None,
) -> Job:
    """Apply ``action`` to ``row`` if the table allows it and the actor may (audited)."""
    after = workflow.next_status(TRANSITIONS, row.status, action, f"job {row.id}", JobError)
    who = ACTORS[action]
    if who == "requester" and not operator and actor != row.username:
        raise JobError(f"only {row.username}, who submitted job {row.id}, may {action} it", 403)
    before = row.status
    row.status = after
    row.updated_at = stamp()
    if after in FINAL:
        row.ended_at = row.updated_at
    audit.record(
        session,
        actor=actor,
        actor_kind="system" if who == "platform" else "user",
        action=f"job.{action}",
        target=f"job:{row.id}",
        tenant=row.tenant,
        outcome="ok" if after not in ("failed", "timed_out") else "error",
        detail={"from": before, "to": after, **(detail or {})},
    )
    return row


def claim(session: Session, job_id: str, runner: str) -> bool:
    """Take a queued job for ``runner`` in one conditional update; False if another did."""
    now = stamp()
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued")
        .values(
            status="running",
            runner=runner,
            started_at=now,
            updated_at=now,
            attempts=Job.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:
        return False
    row = session.get(Job, job_id)
    session.refresh(row)
    audit.record(
        session,
        actor="platform",
        actor_kind="system",
        action="job.start",
        target=f"job:{job_id}",
        tenant=row.tenant,
        detail={"from": "queued", "to": "running", "runner": runner, "attempt": row.attempts},
    )
    return True


def next_queued(session: Session, per_tenant: int) -> list[str]:
    """Queued jobs, oldest first, of tenants below their concurrency limit."""
    running = session.execute(
        select(Job.tenant, func.count()).where(Job.status == "running").group_by(Job.tenant)
    ).all()
    out = []
    counted = {str(t): int(n) for t, n in running}
    for row in session.scalars(
        select(Job).where(Job.status == "queued").order_by(Job.created_at).limit(200)
    ):
        if counted.get(row.tenant, 0) < per_tenant:
            out.append(row.id)
            counted[row.tenant] = counted.get(row.tenant, 0) + 1
    return out


def interrupted(session: Session, runner_prefix: str = "") -> list[Job]:
    """Jobs left ``running`` (by a process that is gone): they are requeued or failed."""
    rows = session.scalars(select(Job).where(Job.status == "running"))
    return [r for r in rows if r.runner.startswith(runner_prefix)]


def as_dict(row: Job) -> dict[str, Any]:
    """A job as the merchant sees it: status, exit code, duration and resource use.

    Never its log or outputs: those leave only through the job's egress request.
    """
    return {
        "id": row.id,
        "tenant": row.tenant,
        "username": row.username,
        "kind": row.kind,
        "entry": row.entry,
        "purpose": row.purpose,
        "parameters": json.loads(row.parameters or "{}"),
        "outputs": json.loads(row.outputs or "[]"),
        "code_sha256": row.code_sha256,
        "status": row.status,
        "attempts": row.attempts,
        "exit_code": row.exit_code,
        "reason": row.reason,
        "usage": json.loads(row.usage or "{}"),
        "inputs": json.loads(row.inputs or "{}"),
        "request_id": row.request_id or None,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
    }


def visible(session: Session, job_id: str, tenant: str | None, operator: bool) -> Job:
    """The job if the caller may see it (its tenant, or an operator); else a 404."""
    row = session.get(Job, job_id)
    if row is None or not (operator or row.tenant == tenant):
        raise JobError(f"no job {job_id} that you may see", 404)
    return row


def listed(session: Session, tenant: str | None, statuses: Sequence[str] = ()) -> list[Job]:
    """Jobs of ``tenant`` (every tenant's for None), newest first."""
    query = select(Job).order_by(Job.created_at.desc()).limit(500)
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
    if statuses:
        query = query.where(Job.status.in_(list(statuses)))
    return list(session.scalars(query))
