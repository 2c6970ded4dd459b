"""Merchants' own data brought into the domain after review (R21, R13, R20).

A merchant files an **import request** (the platform's Imports page or ``POST
api/imports``; a sandbox's token cannot): the file (CSV or Parquet), its lawful source,
the authorisation behind it, the scenario it serves, and what each column is (a personal
identifier, sensitive, or neither). Then:

``submitted``
    the automatic checks ran in the parsing jail (:mod:`.jailed`): the file parsed under
    memory, CPU and time limits, within ``c.Shuyu.import_max_mb`` and
    ``c.Shuyu.import_max_rows``, every column described, and the direct identifiers it
    holds counted (resident ID, mobile, credit code, bank card) with the egress checks'
    detectors. A file that fails is refused (4xx) and nothing is kept. The file waits in
    ``imports/.pending/`` (root's, never mounted) for a reviewer until ``deadline``
    (``c.Shuyu.compliance_review_days`` working days, as applications). Silence is never
    approval here: an import of outside personal data needs a person's decision.
``approved``
    a reviewer (compliance staff) approved it. The jail rewrote it with the declared
    identifier columns replaced by pseudonyms keyed to this import
    (:func:`~shuyu_platform.data.masking.import_key`), so it joins no masked view row by
    row; the result is stored read-only in ``imports/<tenant>/<id>/<name>.parquet`` with
    ``import.json`` (its description), and ``imports/<tenant>/<name>`` links to it. The
    tenant's sandboxes mount ``imports/<tenant>/`` read-only at ``/data/imports``.
``rejected``
    with the reviewer's reasons; the pending file is deleted.
``deleted``
    by the merchant, at any point: every file of it is removed; irreversible.

A sealed job may name the tenant's approved imports as inputs (:func:`for_job` at
submission, :func:`job_input` again when it runs): the runner binds each one's folder
read-only at ``/data/imports/<name>`` in the job, as in the sandbox, and the job's
provenance records its ID and SHA-256. A deleted import cannot be named, and a queued
job naming one that was deleted meanwhile fails with that reason.

Every step is one audit record (``import.submit``, ``import.approve``,
``import.reject``, ``import.delete``, and ``import.refused`` for a refused file).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from ..access.tenant_views import masking_secret
from ..core import audit, roles
from ..core.atomic import (
    create_folder_atomically,
    remove_tree,
    replace_atomically,
    sync_and_hash,
)
from ..core.db import parse_stamp, session_scope, stamp
from ..core.models import Import
from ..core.settings import Shuyu
from ..data.masking import import_key
from ..isolation import jail

__all__ = [
    "IngressError",
    "decide",
    "delete",
    "for_job",
    "get",
    "job_input",
    "listing",
    "mounted_folder",
    "submit",
]

STATUSES: Final = ("submitted", "approved", "rejected", "deleted")
#: What an import's name looks like: its file and its folder under ``/data/imports``.
NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{1,39}$"
#: Most imports one sealed job may name.
MAX_JOB_IMPORTS: Final = 20


class IngressError(ValueError):
    """A refused import step; ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def mounted_folder(settings: Shuyu, tenant: str) -> Path:
    """``imports/<tenant>/``: what the tenant's sandboxes see at ``/data/imports``."""
    return settings.zone("imports") / tenant


def _pending(settings: Shuyu, import_id: str) -> Path:
    return settings.zone("imports") / ".pending" / import_id


def _limits(settings: Shuyu) -> jail.Limits:
    return jail.Limits.from_settings(settings)


def submit(
    settings: Shuyu,
    *,
    tenant: str,
    username: str,
    name: str,
    filename: str,
    content_base64: str,
    lawful_source: str,
    authorisation: str,
    scenario: str,
    fields: dict[str, dict[str, bool]],
) -> dict[str, Any]:
    """Check an import in the jail and record it for review; :class:`IngressError` if refused."""
    if not roles.TENANT_SLUG.match(tenant):
        raise IngressError(f"{tenant!r} is not a tenant", 403)
    try:
        data = base64.b64decode(content_base64, validate=True)
    except (binascii.Error, ValueError):
        raise IngressError("content_base64 is not base64") from None
    limit = settings.import_max_mb * 1024 * 1024
    if len(data) > limit:
        raise IngressError(f"the file is larger than {settings.import_max_mb} MiB", 413)
    if not filename.lower().endswith((".csv", ".parquet")):
        raise IngressError("an import is a .csv or .parquet file", 415)
    with session_scope(settings.db_url) as session:
        taken = session.scalar(
            select(Import.id).where(
                Import.tenant == tenant,
                Import.name == name,
                Import.status.in_(("submitted", "approved")),
            )
        )
    if taken:
        raise IngressError(f"{tenant} has an import named {name!r} already ({taken})", 409)
    payload = {
        "filename": filename,
        "content_base64": content_base64,
        "fields": fields,
        "max_rows": settings.import_max_rows,
    }
    try:
        report = jail.run("ingress.checks", payload, _limits(settings))
    except jail.JailRefusal as err:
        audit.append(
            settings.db_url,
            actor=username,
            action="import.refused",
            target=f"tenant:{tenant}",
            tenant=tenant,
            outcome="denied",
            detail={"reason": err.message, "jail": err.reason, "file": filename[:200]},
        )
        raise IngressError(f"the file was refused: {err.message}", 422) from None
    import_id = uuid.uuid4().hex
    pending = _pending(settings, import_id)
    pending.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _, digest = replace_atomically(pending, lambda tmp: tmp.write_bytes(data), mode=0o400)
    now = datetime.now(UTC)
    try:
        with session_scope(settings.db_url) as session:
            row = Import(
                id=import_id,
                tenant=tenant,
                name=name,
                filename=filename[:200],
                requested_by=username,
                lawful_source=lawful_source,
                authorisation=authorisation,
                scenario=scenario,
                fields=json.dumps(fields, ensure_ascii=False, sort_keys=True),
                sha256=digest,
                rows=int(report["rows"]),
                bytes=len(data),
                checks=json.dumps(report, ensure_ascii=False, sort_keys=True),
                status="submitted",
                deadline=stamp(settings.calendar.deadline(now, settings.compliance_review_days)),
                created_at=stamp(now),
            )
            session.add(row)
            audit.record(
                session,
                actor=username,
                action="import.submit",
                target=f"import:{import_id}",
                tenant=tenant,
                detail={
                    "name": name,
                    "sha256": digest,
                    "rows": row.rows,
                    "identifiers": report["identifiers"],
                    "verdict": report["verdict"],
                },
            )
            body = as_dict(row)
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    return body


def _row(session: Any, import_id: str) -> Import:
    row = session.get(Import, import_id)
    if row is None:
        raise IngressError(f"no import {import_id}", 404)
    return row


def decide(
    settings: Shuyu, import_id: str, *, reviewer: str, action: str, reason: str
) -> dict[str, Any]:
    """Approve (store pseudonymised and mount) or reject (with reasons) a submitted import."""
    if action not in ("approve", "reject"):
        raise IngressError("action is approve or reject")
    if action == "reject" and not reason.strip():
        raise IngressError("a rejection needs reasons")
    with session_scope(settings.db_url) as session:
        row = _row(session, import_id)
        if row.status != "submitted":
            raise IngressError(f"import {import_id} is {row.status}, not awaiting review", 409)
        tenant, name, filename = row.tenant, row.name, row.filename
        fields = json.loads(row.fields)
        description = as_dict(row)
    pending = _pending(settings, import_id)
    stored_sha = ""
    if action == "approve":
        payload = {
            "filename": filename,
            "content_base64": base64.b64encode(pending.read_bytes()).decode(),
            "fields": fields,
            "max_rows": settings.import_max_rows,
            "import_id": import_id,
            "key_hex": import_key(masking_secret(settings), import_id).hex(),
        }
        try:
            result = jail.run("ingress.pseudonymise", payload, _limits(settings))
        except jail.JailRefusal as err:
            raise IngressError(f"the file could not be rewritten: {err.message}", 422) from None
        stored_sha = result["sha256"]
        parquet = base64.b64decode(result["parquet_base64"])
        _store(settings, tenant, import_id, name, parquet, description)
    with session_scope(settings.db_url) as session:
        row = _row(session, import_id)
        if row.status != "submitted":  # decided meanwhile by another reviewer
            if action == "approve":
                remove_tree(mounted_folder(settings, tenant) / import_id)
            raise IngressError(f"import {import_id} is {row.status} already", 409)
        row.status = "approved" if action == "approve" else "rejected"
        row.decided_by, row.decided_at, row.reason = reviewer, stamp(), reason.strip()[:4000]
        row.stored_sha256 = stored_sha
        audit.record(
            session,
            actor=reviewer,
            action=f"import.{action}",
            target=f"import:{import_id}",
            tenant=tenant,
            detail={"name": name, "reason": row.reason, "stored_sha256": stored_sha},
        )
        body = as_dict(row)
    pending.unlink(missing_ok=True)
    return body


def _store(
    settings: Shuyu,
    tenant: str,
    import_id: str,
    name: str,
    parquet: bytes,
    description: dict[str, Any],
) -> None:
    """Write the approved import read-only under the tenant and link its name to it."""
    folder = mounted_folder(settings, tenant)
    _tenant_folder(settings, folder)

    def fill(tmp: Path) -> None:
        (tmp / f"{name}.parquet").write_bytes(parquet)
        public = {k: description[k] for k in ("id", "name", "scenario", "fields", "rows")}
        (tmp / "import.json").write_text(json.dumps(public, ensure_ascii=False, indent=2))

    create_folder_atomically(folder / import_id, fill)
    os.chmod(folder / import_id, 0o555)
    link = folder / name
    tmp = folder / f".{name}.link-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(import_id, tmp)
    os.replace(tmp, link)


def _tenant_folder(settings: Shuyu, folder: Path) -> None:
    """``imports/<tenant>/``: root's; the sandbox spawner gives its group to the tenant uid."""
    zone = settings.zone("imports")
    zone.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(zone, 0o711)
    if not folder.exists():
        folder.mkdir(mode=0o750)


def delete(settings: Shuyu, import_id: str, *, username: str, tenant: str) -> dict[str, Any]:
    """The merchant deletes its import: every file removed, audited, irreversible."""
    with session_scope(settings.db_url) as session:
        row = _row(session, import_id)
        if row.tenant != tenant:
            raise IngressError(f"no import {import_id}", 404)
        if row.status == "deleted":
            raise IngressError(f"import {import_id} is deleted already", 409)
        folder = mounted_folder(settings, tenant)
        link = folder / row.name
        if link.is_symlink() and os.readlink(link) == import_id:
            link.unlink()
        remove_tree(folder / import_id)
        _pending(settings, import_id).unlink(missing_ok=True)
        before = row.status
        row.status, row.deleted_by, row.deleted_at = "deleted", username, stamp()
        audit.record(
            session,
            actor=username,
            action="import.delete",
            target=f"import:{import_id}",
            tenant=tenant,
            detail={"name": row.name, "was": before, "sha256": row.sha256},
        )
        return as_dict(row)


def join_members(
    settings: Shuyu, tenant: str, import_id: str, column: str
) -> tuple[bytes, frozenset[str]]:
    """The key and pseudonyms of an approved import's identifier ``column``, for a DP
    query of ``tenant`` that joins it to a raw dataset (:class:`..dp.engine.Members`)."""
    import pyarrow.parquet as pq

    with session_scope(settings.db_url) as session:
        row = session.get(Import, import_id)
        if row is None or row.tenant != tenant or row.status != "approved":
            raise IngressError(f"{tenant} has no approved import {import_id}", 404)
        fields = json.loads(row.fields)
        name = row.name
    if not fields.get(column, {}).get("identifier"):
        declared = ", ".join(c for c, f in fields.items() if f.get("identifier")) or "none"
        raise IngressError(
            f"join.import_column must be a declared identifier of the import ({declared})"
        )
    path = mounted_folder(settings, tenant) / import_id / f"{name}.parquet"
    tokens = pq.read_table(path, columns=[column]).column(column).drop_null().to_pylist()
    return import_key(masking_secret(settings), import_id), frozenset(tokens)


def for_job(session: Any, tenant: str, names: list[str]) -> dict[str, str]:
    """Name -> ID of the tenant's approved imports a sealed job names, at submission.

    :class:`IngressError` for a name the tenant has no approved import of: 410 if it was
    deleted, 409 if it still awaits review (or was rejected), 404 otherwise (another
    tenant's imports are not named here, and not told apart from nothing).
    """
    resolved: dict[str, str] = {}
    for name in names:
        newest = session.scalars(
            select(Import)
            .where(Import.tenant == tenant, Import.name == name)
            .order_by(Import.created_at.desc())
        ).first()
        if newest is not None and newest.status == "approved":
            resolved[name] = newest.id
        elif newest is not None and newest.status == "deleted":
            raise IngressError(
                f"the import {name!r} ({newest.id}) was deleted at {newest.deleted_at}; "
                "a job cannot use it",
                410,
            )
        elif newest is not None:
            raise IngressError(
                f"the import {name!r} ({newest.id}) is {newest.status}, not approved; "
                "a job can use only approved imports",
                409,
            )
        else:
            approved = session.scalars(
                select(Import.name).where(Import.tenant == tenant, Import.status == "approved")
            ).all()
            have = ", ".join(sorted(approved)) or "none"
            raise IngressError(
                f"{tenant} has no import named {name!r}; approved imports: {have}", 404
            )
    return resolved


def job_input(
    settings: Shuyu, session: Any, tenant: str, name: str, import_id: str
) -> tuple[Path, str]:
    """The stored folder and SHA-256 of an import a job named, checked when it runs.

    :class:`IngressError` if the import is not the tenant's (403), was deleted since the
    job was submitted (410), or its stored file is missing or changed (409).
    """
    row = session.get(Import, import_id)
    if row is None or row.tenant != tenant or row.name != name:
        raise IngressError(f"the import {name!r} ({import_id}) is not one of {tenant}'s", 403)
    if row.status != "approved":
        raise IngressError(
            f"the import {name!r} ({import_id}) was {row.status} at "
            f"{row.deleted_at or row.decided_at} after the job was submitted; "
            "the job does not run",
            410,
        )
    folder = mounted_folder(settings, tenant) / import_id
    path = folder / f"{name}.parquet"
    if not path.is_file() or sync_and_hash(path) != row.stored_sha256:
        raise IngressError(
            f"the stored file of import {name!r} ({import_id}) is missing or changed "
            "since approval (SHA-256 mismatch); the job does not run",
            409,
        )
    return folder, row.stored_sha256


def as_dict(row: Import) -> dict[str, Any]:
    """One import as the merchant and the reviewers see it (never the data)."""
    overdue = row.status == "submitted" and parse_stamp(row.deadline) < datetime.now(UTC)
    return {
        "id": row.id,
        "tenant": row.tenant,
        "name": row.name,
        "filename": row.filename,
        "requested_by": row.requested_by,
        "lawful_source": row.lawful_source,
        "authorisation": row.authorisation,
        "scenario": row.scenario,
        "fields": json.loads(row.fields),
        "sha256": row.sha256,
        "rows": row.rows,
        "bytes": row.bytes,
        "checks": json.loads(row.checks),
        "status": row.status,
        "deadline": row.deadline,
        "overdue": overdue,
        "decided_by": row.decided_by,
        "decided_at": row.decided_at,
        "reason": row.reason,
        "stored_sha256": row.stored_sha256,
        "path": f"/data/imports/{row.name}/{row.name}.parquet" if row.status == "approved" else "",
        "created_at": row.created_at,
        "deleted_at": row.deleted_at,
    }


def listing(settings: Shuyu, *, tenant: str | None = None) -> list[dict[str, Any]]:
    """Imports of one tenant (or all), newest first."""
    with session_scope(settings.db_url) as session:
        query = select(Import).order_by(Import.created_at.desc())
        if tenant is not None:
            query = query.where(Import.tenant == tenant)
        return [as_dict(row) for row in session.scalars(query).all()]


def get(settings: Shuyu, import_id: str) -> dict[str, Any]:
    """One import; :class:`IngressError` 404 if there is none."""
    with session_scope(settings.db_url) as session:
        return as_dict(_row(session, import_id))
