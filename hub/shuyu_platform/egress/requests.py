"""Egress requests: frozen snapshots in ``outbox/`` and their audited review (R10–R12).

A merchant asks to take out chosen cell outputs of a notebook, or one file of its work
folder, with a purpose statement. The content arrives from the kernel client, is
checked for shape and size, and is frozen at once: ``outbox/<id>.json`` is written
atomically, read-only, and its SHA-256 goes into the request's row, so a snapshot
changed afterwards is detected (:func:`verify_snapshot`) before anything is released.

Status changes follow :data:`TRANSITIONS` (who may make each is in :data:`ACTORS`); each
is an :class:`~shuyu_platform.core.models.EgressDecision` row (with the reviewer's comment)
and an ``egress.<action>`` audit event in the same transaction::

    draft → submitted → (changes_requested ↔ resubmitted) → approved | rejected
    approved → released
    released → unpublished   (dashboards only: taken off the dashboards service)

With ``approvals_required = 2`` (policy: two-reviewer rule) the first approval is
recorded and the status stays; the second, by another reviewer, approves. A reviewer
never decides a request of their own, nor of their own tenant.
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

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import messages
from ..core import audit
from ..core.atomic import replace_atomically, sync_and_hash
from ..core.db import stamp
from ..core.models import EgressDecision, EgressRequest
from ..workflow import transitions as workflow
from ..workflow.transitions import WorkflowError
from . import disclosure

#: status -> {action: next status}.
TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "draft": {"submit": "submitted"},
    "submitted": {
        "request_changes": "changes_requested",
        "approve": "approved",
        "reject": "rejected",
    },
    "changes_requested": {"resubmit": "resubmitted"},
    "resubmitted": {
        "request_changes": "changes_requested",
        "approve": "approved",
        "reject": "rejected",
    },
    "approved": {"release": "released"},
    "rejected": {},
    "released": {"unpublish": "unpublished"},
    "unpublished": {},
}
#: Who may take each action: the requesting merchant, a reviewer, or the platform.
ACTORS: Final[dict[str, str]] = {
    "submit": "requester",
    "resubmit": "requester",
    "request_changes": "reviewer",
    "approve": "reviewer",
    "reject": "reviewer",
    "release": "platform",
    "unpublish": "requester",  # or an administrator (see transition)
}
#: Actions whose comment may not be empty (the merchant must learn why).
NEEDS_COMMENT: Final[frozenset[str]] = frozenset({"request_changes", "reject"})
#: Largest snapshot accepted (JSON, with files base64-encoded).
MAX_SNAPSHOT_BYTES: Final[int] = 25 * 1024 * 1024
#: Most cells one request may take out.
MAX_CELLS: Final[int] = 50


class EgressError(WorkflowError):
    """A request or transition that cannot be made; ``status`` is the HTTP status."""


def text_field(body: Mapping[str, Any], key: str, *, limit: int, required: bool = True) -> str:
    """A text field of a request body (see :func:`..workflow.transitions.text_field`)."""
    return workflow.text_field(body, key, limit=limit, required=required, error=EgressError)


def parse_content(body: Mapping[str, Any]) -> dict[str, Any]:
    """The snapshot content of a request body, checked for shape (not yet for disclosure).

    ``{"kind": "cells", "notebook": "a.ipynb", "cells": [{"index": 3, "source": "...",
    "outputs": [nbformat outputs]}]}`` or ``{"kind": "file", "path": "r.csv",
    "data_b64": "..."}``.
    """
    kind = body.get("kind")
    if kind == "cells":
        notebook = text_field(body, "notebook", limit=1024)
        cells = body.get("cells")
        if not isinstance(cells, list) or not cells:
            raise EgressError("cells must be a non-empty list of {index, source, outputs}")
        if len(cells) > MAX_CELLS:
            raise EgressError(f"at most {MAX_CELLS} cells per request, not {len(cells)}")
        clean = []
        for position, cell in enumerate(cells):
            if (
                not isinstance(cell, dict)
                or not isinstance(cell.get("index"), int)
                or not isinstance(cell.get("outputs"), list)
                or not isinstance(cell.get("source", ""), str)
            ):
                raise EgressError(f"cells[{position}] needs an index, its source and outputs")
            if not cell["outputs"]:
                raise EgressError(f"cell {cell['index']} has no outputs to take out")
            kept = {
                "index": cell["index"],
                "source": cell.get("source", ""),
                "outputs": cell["outputs"],
            }
            if isinstance(cell.get("execution_count"), int):
                kept["execution_count"] = cell["execution_count"]
            clean.append(kept)
        return {"kind": "cells", "notebook": notebook, "cells": clean}
    if kind == "dashboard":
        return _dashboard(body)
    if kind == "file":
        path = text_field(body, "path", limit=1024)
        data = body.get("data_b64")
        if not isinstance(data, str):
            raise EgressError("data_b64 must hold the file's bytes in base64")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise EgressError("data_b64 is not valid base64") from None
        return {"kind": "file", "path": path, "bytes": len(raw), "data_b64": data}
    raise EgressError("kind must be 'cells', 'file' or 'dashboard'")


#: Most released artefacts one dashboard may read.
MAX_DASHBOARD_RELEASES: Final[int] = 20
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def _dashboard(body: Mapping[str, Any]) -> dict[str, Any]:
    """A dashboard to publish: the whole notebook and the releases it reads."""
    notebook = text_field(body, "notebook", limit=1024)
    document = body.get("document")
    if not isinstance(document, dict) or document.get("nbformat") != 4:
        raise EgressError("document must be the notebook itself, in nbformat 4")
    # Validated against the nbformat schema with the disclosure checks, in the parsing
    # jail (:mod:`.jailed`): the service itself never parses a merchant's notebook.
    releases = body.get("releases", [])
    if (
        not isinstance(releases, list)
        or len(releases) > MAX_DASHBOARD_RELEASES
        or not all(isinstance(r, str) and _REQUEST_ID.match(r) for r in releases)
    ):
        raise EgressError(
            f"releases must list at most {MAX_DASHBOARD_RELEASES} IDs of released requests"
        )
    return {
        "kind": "dashboard",
        "notebook": notebook,
        "document": document,
        "releases": sorted(set(releases)),
    }


def released_inputs(session: Session, tenant: str, ids: Sequence[str]) -> list[EgressRequest]:
    """The released requests a dashboard reads: its own tenant's, released, not dashboards."""
    rows = []
    for request_id in ids:
        row = session.get(EgressRequest, request_id)
        if row is None or row.tenant != tenant:
            raise EgressError(f"{request_id} is not a request of tenant {tenant}", 404)
        if row.status != "released" or row.kind == "dashboard":
            raise EgressError(
                f"a dashboard reads released files only; request {request_id} is "
                f"a {row.kind} request, {row.status}",
                409,
            )
        rows.append(row)
    return rows


def run_checks(content: Mapping[str, Any], context: disclosure.Context) -> disclosure.Report:
    """The automatic disclosure checks of a snapshot's content (:mod:`.disclosure`)."""
    if content["kind"] == "file":
        data = base64.b64decode(content["data_b64"])
        artefacts = disclosure.artefacts_from_file(str(content["path"]), data)
    elif content["kind"] == "job":
        artefacts = [
            artefact
            for item in content["files"]
            for artefact in disclosure.artefacts_from_file(
                str(item["path"]), base64.b64decode(item["data_b64"])
            )
        ]
    elif content["kind"] == "dashboard":
        artefacts = [
            artefact
            for index, cell in enumerate(content["document"].get("cells", []))
            if cell.get("cell_type") == "code"
            for artefact in disclosure.artefacts_from_outputs(
                index, cell.get("outputs", []), cell.get("execution_count")
            )
        ]
    else:
        artefacts = [
            artefact
            for cell in content["cells"]
            for artefact in disclosure.artefacts_from_outputs(
                cell["index"], cell["outputs"], cell.get("execution_count")
            )
        ]
    return disclosure.run_checks(artefacts, context)


def record_checks(session: Session, row: EgressRequest, report: disclosure.Report) -> None:
    """Store a check report on the request and audit its verdict."""
    row.checks = audit.canonical_json(report.as_dict())
    row.verdict = report.verdict
    audit.record(
        session,
        actor="system",
        actor_kind="system",
        action="egress.checked",
        target=f"egress:{row.id}",
        tenant=row.tenant,
        detail={"verdict": report.verdict, "findings": report.counts()},
    )


def source_of(content: Mapping[str, Any]) -> str:
    """The notebook or file a snapshot comes from (a job's: its entry)."""
    key = {"file": "path", "job": "entry"}.get(content["kind"], "notebook")
    return str(content[key])


def default_title(content: Mapping[str, Any]) -> str:
    """A request's title when its requester gave none: a dashboard's first heading, else
    the notebook's or file's name without folder and extension (never a bare file name
    in the product register)."""
    if content["kind"] == "dashboard":
        for cell in content["document"].get("cells", []):
            if cell.get("cell_type") != "markdown":
                continue
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else str(source)
            for line in text.splitlines():
                if line.startswith("#"):
                    heading = line.lstrip("#").strip()
                    if heading:
                        return heading[:200]
    return PurePosixPath(source_of(content)).stem or source_of(content)


def snapshot_path(outbox: Path, request_id: str) -> Path:
    """Where a request's frozen content lives."""
    return outbox / f"{request_id}.json"


def freeze(outbox: Path, request_id: str, content: Mapping[str, Any]) -> tuple[str, int]:
    """Write the snapshot atomically and read-only; return its SHA-256 and size."""
    data = audit.canonical_json(dict(content)).encode()
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise EgressError(
            f"the request holds {len(data):,} bytes, more than {MAX_SNAPSHOT_BYTES:,}", 413
        )
    path = snapshot_path(outbox, request_id)
    _, digest = replace_atomically(path, lambda tmp: tmp.write_bytes(data), mode=0o400)
    return digest, len(data)


def read_snapshot(outbox: Path, row: EgressRequest) -> dict[str, Any]:
    """The frozen content, after checking it is the one that was submitted."""
    verify_snapshot(outbox, row)
    return dict(json.loads(snapshot_path(outbox, row.id).read_bytes()))


def verify_snapshot(outbox: Path, row: EgressRequest) -> None:
    """Raise :class:`EgressError` (409) if the snapshot is missing or was changed."""
    path = snapshot_path(outbox, row.id)
    if not path.is_file():
        raise EgressError(f"the snapshot of request {row.id} is missing from the outbox", 409)
    if sync_and_hash(path) != row.snapshot_sha256:
        raise EgressError(
            f"the snapshot of request {row.id} changed after submission "
            "(SHA-256 mismatch); it cannot be reviewed or released",
            409,
        )


def as_dict(
    row: EgressRequest, decisions: list[EgressDecision] | None = None, *, reviewer: bool = False
) -> dict[str, Any]:
    """A request as JSON (without its content).

    Only a ``reviewer`` gets the full check report; anyone else (the merchant) gets its
    public view (:func:`.disclosure.public_view`): findings from matching the raw data
    are left out, and the verdict and counts are those of what remains, so nothing the
    merchant sees tells what the raw data holds.
    """
    stored = json.loads(row.checks or "{}")
    checks = stored if reviewer else disclosure.public_view(stored)
    verdict = row.verdict if reviewer or not checks else checks["verdict"]
    body: dict[str, Any] = {
        "id": row.id,
        "tenant": row.tenant,
        "username": row.username,
        "kind": row.kind,
        "title": row.title,
        "purpose": row.purpose,
        "source": row.source,
        "status": row.status,
        "snapshot_sha256": row.snapshot_sha256,
        "snapshot_bytes": row.snapshot_bytes,
        "verdict": verdict,
        "checks": checks,
        "release": json.loads(row.release_manifest or "{}"),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    findings = checks.get("findings", []) if isinstance(checks, dict) else []
    body["labels"] = messages.labels(
        row.status,
        verdict,
        row.kind,
        *(f.get("check") for f in findings),
        *(f.get("severity") for f in findings),
        *(d.action for d in decisions or []),
    )
    if decisions is not None:
        body["decisions"] = [
            {
                "actor": d.actor,
                "action": d.action,
                "from": d.from_status,
                "to": d.to_status,
                "comment": d.comment,
                "at": d.created_at,
            }
            for d in decisions
        ]
    return body


def decisions_of(session: Session, request_id: str) -> list[EgressDecision]:
    """A request's transitions, oldest first."""
    return list(
        session.scalars(
            select(EgressDecision)
            .where(EgressDecision.request_id == request_id)
            .order_by(EgressDecision.id)
        )
    )


def create(
    session: Session,
    outbox: Path,
    *,
    tenant: str,
    username: str,
    title: str,
    purpose: str,
    content: Mapping[str, Any],
) -> EgressRequest:
    """Freeze ``content`` and record the request as a draft (audited)."""
    request_id = uuid.uuid4().hex
    digest, size = freeze(outbox, request_id, content)
    try:
        return _record_new(
            session, request_id, digest, size, tenant, username, title, purpose, content
        )
    except BaseException:  # nothing recorded: no snapshot left behind without its row
        snapshot_path(outbox, request_id).unlink(missing_ok=True)
        raise


def _record_new(
    session: Session,
    request_id: str,
    digest: str,
    size: int,
    tenant: str,
    username: str,
    title: str,
    purpose: str,
    content: Mapping[str, Any],
) -> EgressRequest:
    """The row and audit record of a request whose snapshot was just frozen."""
    now = stamp()
    row = EgressRequest(
        id=request_id,
        tenant=tenant,
        username=username,
        kind=content["kind"],
        title=title,
        purpose=purpose,
        source=source_of(content),
        status="draft",
        snapshot_sha256=digest,
        snapshot_bytes=size,
        checks="{}",
        verdict="",
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=username,
        action="egress.create",
        target=f"egress:{request_id}",
        tenant=tenant,
        detail={"kind": row.kind, "source": row.source, "sha256": digest, "bytes": size},
    )
    return row


#: The actions a reviewer takes.
DECISIONS: Final[tuple[str, ...]] = tuple(a for a, who in ACTORS.items() if who == "reviewer")


def _own(row: EgressRequest, actor: str, actor_tenant: str | None) -> bool:
    """Whether the request is the actor's own or their tenant's (no reviewer decides those)."""
    return actor == row.username or actor_tenant == row.tenant


def can_decide(row: EgressRequest, actor: str, actor_tenant: str | None) -> bool:
    """Whether ``actor`` may take a reviewer's decision on ``row`` now."""
    return any(a in DECISIONS for a in TRANSITIONS[row.status]) and not _own(
        row, actor, actor_tenant
    )


def decide(
    session: Session,
    outbox: Path,
    row: EgressRequest,
    action: str,
    *,
    actor: str,
    actor_tenant: str | None,
    comment: str,
    approvals_required: int,
    seen_sha256: str,
) -> EgressRequest:
    """A reviewer's decision on the snapshot they saw (``seen_sha256``): refused (409) if
    the request's snapshot is another one now, or was changed on disk; else
    :func:`transition`."""
    if action not in DECISIONS:
        raise EgressError(f"a decision is one of {', '.join(DECISIONS)}, not {action!r}")
    if seen_sha256 != row.snapshot_sha256:
        raise EgressError(
            f"request {row.id} changed since you saw it: its snapshot is now "
            f"{row.snapshot_sha256}, not {seen_sha256}; review it again",
            409,
        )
    verify_snapshot(outbox, row)
    return transition(
        session,
        row,
        action,
        actor=actor,
        actor_tenant=actor_tenant,
        comment=comment,
        approvals_required=approvals_required,
    )


def transition(
    session: Session,
    row: EgressRequest,
    action: str,
    *,
    actor: str,
    actor_tenant: str | None = None,
    comment: str = "",
    approvals_required: int = 1,
    administrator: bool = False,
) -> EgressRequest:
    """Apply ``action`` to ``row`` if the table and the rules allow it (audited).

    ``administrator`` lets an operator administrator unpublish any dashboard.
    """
    after = workflow.next_status(TRANSITIONS, row.status, action, f"request {row.id}", EgressError)
    who = ACTORS[action]
    if action == "unpublish" and row.kind != "dashboard":
        raise EgressError(f"request {row.id} is a {row.kind} release; only dashboards unpublish")
    if action == "unpublish" and administrator:
        who = "administrator"
    if who == "requester" and actor != row.username:
        raise EgressError(f"only {row.username}, who filed request {row.id}, may {action} it", 403)
    if who == "reviewer" and _own(row, actor, actor_tenant):
        raise EgressError("a reviewer never decides a request of their own or their tenant's", 403)
    comment = comment.strip()
    if action in NEEDS_COMMENT and not comment:
        raise EgressError(f"'{action}' needs a comment telling the merchant why")
    before = row.status
    if action == "approve" and approvals_required > 1:
        approvers = {
            d.actor
            for d in decisions_of(session, row.id)
            if d.action == "approve" and d.from_status == row.status
        }
        if actor in approvers:
            raise EgressError(f"{actor} has already approved request {row.id}", 409)
        if len(approvers) + 1 < approvals_required:
            after = before  # recorded; another reviewer must approve too
    row.status = after
    row.updated_at = stamp()
    session.add(
        EgressDecision(
            request_id=row.id,
            actor=actor,
            action=action,
            from_status=before,
            to_status=after,
            comment=comment,
            created_at=row.updated_at,
        )
    )
    audit.record(
        session,
        actor=actor,
        actor_kind="system" if who == "platform" else "user",
        action=f"egress.{action}",
        target=f"egress:{row.id}",
        tenant=row.tenant,
        detail={"from": before, "to": after, "comment": comment},
    )
    return row


def resubmit(
    session: Session, outbox: Path, row: EgressRequest, content: Mapping[str, Any], *, actor: str
) -> EgressRequest:
    """Replace the snapshot of a request sent back for changes, then resubmit it."""
    if row.status != "changes_requested":
        raise EgressError(
            f"request {row.id} is {row.status}; only a request sent back for changes "
            "can be resubmitted",
            409,
        )
    if actor != row.username:
        raise EgressError(f"only {row.username}, who filed request {row.id}, may resubmit it", 403)
    row.snapshot_sha256, row.snapshot_bytes = freeze(outbox, row.id, content)
    row.kind = content["kind"]
    row.source = source_of(content)
    return transition(session, row, "resubmit", actor=actor)
