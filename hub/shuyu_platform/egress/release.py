"""Release of approved export requests into ``released/`` and their audited download (R12).

When a request is approved, the platform (actor ``platform``) reads its frozen snapshot
(refusing one whose SHA-256 changed), watermarks the content (:mod:`.watermark`, in the
parsing jail: :mod:`.jailed`), and writes ``released/<id>/``: the released file(s) and
``provenance.json`` (request, purpose, reviewers and their decisions, check verdict, the
tenant's granted datasets and the DP answers whose numbers appear in the content). The
folder is built beside its final place and renamed into it in one step; files are read-
only (0444) and the folder too (0555). The manifest (every file's name, size and
SHA-256) goes into the request's row in the same transaction as the ``approved →
released`` transition, so a released file changed on disk is refused at download
(:func:`open_released`).

A release that fails (a full disk, say) leaves the request approved and is retried by
:func:`release_pending`, which the service runs after each approval and on its sweep.

A dashboard request is not downloaded: its release publishes it instead
(:mod:`~shuyu_platform.dashboards.publish`), with copies of the released files it
reads, and :func:`unpublish` takes it off again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..access import grants
from ..core import audit
from ..core.atomic import create_folder_atomically, sync_and_hash
from ..core.db import session_scope, stamp
from ..core.models import DpRelease, EgressDecision, EgressRequest
from ..core.settings import Shuyu
from ..dashboards import publish as dashboards
from ..data.supply import current_version as supply_version
from ..dp import budget
from ..isolation.jail import JailRefusal, Limits
from . import disclosure, jailed
from . import requests as egress
from .watermark import Mark, Marked

log = logging.getLogger(__name__)

#: The provenance record inside every release folder.
PROVENANCE: Final[str] = "provenance.json"


class ReleaseError(egress.EgressError):
    """A release that cannot be made or a released file that cannot be served."""


def folder(released: Path, request_id: str) -> Path:
    """Where a request's release lives."""
    return released / request_id


def manifest_of(row: EgressRequest) -> dict[str, Any]:
    """The stored manifest of a released request (empty before release)."""
    return dict(json.loads(row.release_manifest or "{}"))


def _approved_at(decisions: Iterable[Any]) -> str:
    return next((d.created_at for d in decisions if d.to_status == "approved"), "")


def _matched_keys(checks: dict[str, Any]) -> set[str]:
    keys: set[str] = set()
    for finding in checks.get("findings", []):
        if finding.get("check") == "dp_provenance":
            keys.update(finding.get("where", {}).get("dp_keys", []))
    return keys


def scenarios_of(session: Session, tenant: str) -> list[str]:
    """The scenarios the tenant holds active grants under (for the product register)."""
    return sorted({g.scenario for g in grants.active(session, tenant=tenant) if g.scenario})


def provenance(
    session: Session,
    row: EgressRequest,
    decisions: list[EgressDecision],
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    """What the release records about where its content came from and who let it out."""
    checks = json.loads(row.checks or "{}")
    public = disclosure.public_view(checks)
    sources = budget.answers_by_number(session, row.tenant)
    queries: dict[str, DpRelease] = {}
    for key in _matched_keys(checks):
        for release in sources.get(key, []):
            queries[release.id] = release
    held = grants.active(session, tenant=row.tenant)
    datasets = {g.dataset for g in held} | {q.dataset for q in queries.values()}
    return {
        "request": {
            "id": row.id,
            "tenant": row.tenant,
            "requester": row.username,
            "title": row.title,
            "purpose": row.purpose,
            "kind": row.kind,
            "source": row.source,
            "snapshot_sha256": row.snapshot_sha256,
            "submitted_at": row.created_at,
        },
        "reviewers": [
            {"reviewer": d.actor, "action": d.action, "at": d.created_at, "comment": d.comment}
            for d in decisions
            if d.action in egress.DECISIONS
        ],
        "approved_at": _approved_at(decisions),
        # The manifest goes to the merchant: the checks' public view (no raw-data matches).
        "checks": {
            "verdict": public.get("verdict", row.verdict),
            "counts": public.get("counts", {}),
        },
        "datasets": sorted(datasets),
        # The raw version each dataset's views were built from when the content left.
        "raw_versions": {name: supply_version(session, name) for name in sorted(datasets)},
        "scenarios": scenarios_of(session, row.tenant),
        "dp_queries": [
            {
                "id": q.id,
                "dataset": q.dataset,
                "kind": q.kind,
                "epsilon": q.epsilon_micro / 1_000_000,
                "answer_sha256": q.answer_sha256,
                "raw_version": q.raw_version,
                "released_at": q.released_at,
            }
            for q in sorted(queries.values(), key=lambda q: q.released_at)
        ],
        "files": files,
    }


def render(content: dict[str, Any], row: EgressRequest, mark: Mark, limits: Limits) -> list[Marked]:
    """The watermarked files of a request's content (made in the parsing jail)."""
    return jailed.watermarked_files(content, row.title, mark, limits)


def _write_folder(target: Path, files: list[Marked], record: dict[str, Any]) -> None:
    """Build the release beside ``target`` and rename it into place, read-only."""

    def fill(tmp: Path) -> None:
        for item in files:
            (tmp / item.name).write_bytes(item.data)
        (tmp / PROVENANCE).write_text(
            json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8"
        )

    create_folder_atomically(target, fill)  # never over an existing release


def release(settings: Shuyu, session: Session, row: EgressRequest) -> dict[str, Any]:
    """Release one approved request; returns its manifest (see the module docstring)."""
    if row.status != "approved":
        raise ReleaseError(
            f"request {row.id} is {row.status}; only approved requests are released", 409
        )
    content = egress.read_snapshot(settings.zone("outbox"), row)  # refuses a changed snapshot
    if row.kind == "dashboard":
        return _publish(settings, session, row, content)
    target = folder(settings.zone("released"), row.id)
    if target.exists():  # an earlier attempt renamed its folder in, then failed to commit
        record = _adopt(target, row)
    else:
        decisions = egress.decisions_of(session, row.id)
        mark = Mark(row.id, row.tenant, _approved_at(decisions) or stamp())
        files = render(content, row, mark, Limits.from_settings(settings))
        listed = [
            {
                "name": f.name,
                "bytes": len(f.data),
                "sha256": hashlib.sha256(f.data).hexdigest(),
                "watermark": f.watermark,
            }
            for f in files
        ]
        record = provenance(session, row, decisions, listed)
        if row.kind == "job":  # enough to run it again: code, parameters, inputs, runner
            record["job"] = content.get("provenance", {})
            record["job"]["discarded"] = content.get("discarded", [])
        record["released_at"] = stamp()
        _write_folder(target, files, record)
    stored = {
        "files": record["files"],
        "provenance_sha256": sync_and_hash(target / PROVENANCE),
        "released_at": record["released_at"],
        "scenarios": record.get("scenarios", []),
    }
    row.release_manifest = audit.canonical_json(stored)
    egress.transition(session, row, "release", actor="platform")
    audit.record(
        session,
        actor="platform",
        actor_kind="system",
        action="egress.released",
        target=f"egress:{row.id}",
        tenant=row.tenant,
        detail={
            "files": stored["files"],
            "datasets": record["datasets"],
            "dp_queries": [q["id"] for q in record["dp_queries"]],
        },
    )
    return stored


def _publish(
    settings: Shuyu, session: Session, row: EgressRequest, content: dict[str, Any]
) -> dict[str, Any]:
    """Release of a dashboard: publish it with copies of the released files it reads."""
    inputs = []
    for source in egress.released_inputs(session, row.tenant, content.get("releases", [])):
        for item in manifest_of(source).get("files", []):
            path, _ = open_released(settings, source, item["name"])  # checks its SHA-256
            inputs.append((item["name"], path, item["sha256"]))
    try:
        notebook = jailed.dashboard_notebook(
            content["document"], row.title, Limits.from_settings(settings)
        )
    except JailRefusal as refusal:
        why = f"dashboard {row.id} cannot be published: {refusal.message}"
        raise ReleaseError(why, 422) from None
    dashboards.unpublish(settings, row.id)  # left by an attempt that failed to commit
    stored = dashboards.publish(settings, session, row, content, inputs, notebook)
    stored["scenarios"] = scenarios_of(session, row.tenant)
    row.release_manifest = audit.canonical_json(stored)
    egress.transition(session, row, "release", actor="platform")
    return stored


def unpublish(
    settings: Shuyu, session: Session, row: EgressRequest, *, actor: str, administrator: bool
) -> None:
    """Take a published dashboard off the dashboards service at once (audited)."""
    egress.transition(
        session, row, "unpublish", actor=actor, administrator=administrator, comment=""
    )
    dashboards.unpublish(settings, row.id)  # before the commit: a failure undoes the change
    audit.record(
        session,
        actor=actor,
        action="dashboard.unpublish",
        target=f"egress:{row.id}",
        tenant=row.tenant,
        detail={"url": dashboards.url_of(settings, row.id)},
    )


def _adopt(target: Path, row: EgressRequest) -> dict[str, Any]:
    """The provenance of a release folder already in place, checked against the request."""
    record = json.loads((target / PROVENANCE).read_text(encoding="utf-8"))
    if record.get("request", {}).get("snapshot_sha256") != row.snapshot_sha256:
        raise ReleaseError(
            f"released/{row.id} exists but holds another snapshot; it is left for an operator",
            409,
        )
    for item in record.get("files", []):
        if sync_and_hash(target / item["name"]) != item["sha256"]:
            raise ReleaseError(f"released file {item['name']} does not match its provenance", 409)
    return dict(record)


def release_pending(settings: Shuyu, request_ids: Iterable[str] | None = None) -> list[str]:
    """Release approved requests (those given, or all); failures are logged and audited."""
    with session_scope(settings.db_url) as session:
        query = select(EgressRequest.id).where(EgressRequest.status == "approved")
        if request_ids is not None:
            query = query.where(EgressRequest.id.in_(list(request_ids)))
        pending = list(session.scalars(query))
    done = []
    for request_id in pending:
        try:
            with session_scope(settings.db_url) as session:
                row = session.get(EgressRequest, request_id)
                if row is None or row.status != "approved":
                    continue
                release(settings, session, row)
            done.append(request_id)
        except (egress.EgressError, OSError) as err:
            log.error("release of egress request %s failed: %s", request_id, err)
            with session_scope(settings.db_url) as session:
                audit.record(
                    session,
                    actor="platform",
                    actor_kind="system",
                    action="egress.release_failed",
                    target=f"egress:{request_id}",
                    outcome="error",
                    detail={"error": str(err)},
                )
    return done


def open_released(settings: Shuyu, row: EgressRequest, name: str) -> tuple[Path, dict[str, Any]]:
    """The path of one released file after checking it against the stored manifest."""
    if row.status != "released":
        raise ReleaseError(f"request {row.id} is {row.status}, not released", 409)
    if row.kind == "dashboard":
        raise ReleaseError(
            f"request {row.id} is a dashboard: it is viewed at "
            f"{dashboards.url_of(settings, row.id)}, not downloaded",
            409,
        )
    files = {f["name"]: f for f in manifest_of(row).get("files", [])}
    allowed = {**files, PROVENANCE: {"name": PROVENANCE}}
    if name not in allowed:
        raise ReleaseError(f"release {row.id} has no file {name!r}", 404)
    path = folder(settings.zone("released"), row.id) / name
    expected = (
        manifest_of(row).get("provenance_sha256") if name == PROVENANCE else files[name]["sha256"]
    )
    if not path.is_file() or sync_and_hash(path) != expected:
        raise ReleaseError(
            f"released file {name} of request {row.id} is missing or changed on disk "
            "(SHA-256 mismatch); it is not served",
            409,
        )
    return path, allowed[name]
