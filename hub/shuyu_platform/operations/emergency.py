"""The emergency plan (R24): stop what an incident touches, pin the evidence, record it.

:func:`start` is what ``shuyu emergency start`` runs:

1. in one transaction, suspend what the scope covers (a tenant, a dataset, or every
   tenant and dataset; :mod:`shuyu_platform.access.suspension`) and record
   ``emergency.start`` in the audit chain;
2. stop the suspended tenants' running servers through the hub and delete the
   suspended datasets' views (a suspended tenant's DP queries are refused by the DP
   API from the moment the transaction commits);
3. sign a checkpoint of the audit chain's head (:mod:`shuyu_platform.core.checkpoints`),
   so the records up to the start are anchored outside the database;
4. keep the **incident record** (:class:`~shuyu_platform.core.models.Incident`): what was
   suspended and stopped, the signed head, and how long it all took.

:func:`drill` runs the same start on a scratch copy of the platform database (its own
signing key and checkpoint file, no hub), checks the copy refuses what it should, and
records the drill in the real chain and incident table; the annual report counts both.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import make_url

from ..access import grants, suspension
from ..access.tenant_views import sweep
from ..core import audit, checkpoints
from ..core.accounts import AccountStore
from ..core.db import engine_for, session_scope, stamp
from ..core.hubapi import HubClient, HubUnavailable
from ..core.models import Incident, Tenant
from ..core.roles import TENANT_SLUG
from ..core.settings import Shuyu
from ..data.policy import load_policies

Scope = Literal["tenant", "dataset", "all"]
SCOPES: tuple[str, ...] = ("tenant", "dataset", "all")


class EmergencyError(ValueError):
    """An emergency start or drill that cannot be made, with the reason for a person."""


@dataclass
class Outcome:
    """What a start did: the incident record's fields, and what went wrong on the way."""

    incident: dict[str, Any]
    problems: list[str] = field(default_factory=list)


def known_tenants(settings: Shuyu) -> set[str]:
    """Every tenant the platform knows: of an account, a grant or a status row."""
    found = {a.tenant for a in AccountStore(settings.accounts_file).load().values() if a.tenant}
    with session_scope(settings.db_url) as session:
        found |= {g.tenant for g in grants.active(session)}
        found |= set(session.scalars(select(Tenant.slug)))
    return found


def _subjects(settings: Shuyu, scope: str, subject: str) -> list[tuple[suspension.Kind, str]]:
    """(kind, slug) of everything the scope covers; refuse unknown subjects."""
    datasets = sorted(load_policies(Path(settings.policies_dir)))
    if scope == "tenant":
        if not TENANT_SLUG.match(subject) or subject not in known_tenants(settings):
            raise EmergencyError(f"no tenant {subject!r} on this platform")
        return [("tenant", subject)]
    if scope == "dataset":
        if subject not in datasets:
            raise EmergencyError(f"no dataset policy defines {subject!r}")
        return [("dataset", subject)]
    if scope == "all":
        if subject not in ("", "*"):
            raise EmergencyError("scope 'all' takes no subject: it covers every tenant and dataset")
        tenants = sorted(known_tenants(settings))
        return [("tenant", t) for t in tenants] + [("dataset", d) for d in datasets]
    raise EmergencyError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")


def start(
    settings: Shuyu,
    scope: str,
    subject: str,
    *,
    reason: str,
    actor: str,
    kind: Literal["incident", "drill"] = "incident",
    stop_servers: bool = True,
) -> Outcome:
    """Start the emergency plan for ``scope`` (see the module docstring)."""
    if not reason.strip():
        raise EmergencyError("an emergency start needs a reason (it is recorded)")
    began = time.monotonic()
    covered = _subjects(settings, scope, subject)
    incident_id = secrets.token_hex(16)
    suspended: list[dict[str, str]] = []
    already: list[dict[str, str]] = []
    with session_scope(settings.db_url) as session:
        for what, slug in covered:
            if suspension.is_suspended(session, slug, what):
                already.append({"kind": what, "slug": slug})
                continue
            suspension.suspend(
                session, slug, reason=f"emergency {incident_id[:8]}: {reason}", actor=actor,
                kind=what,
            )  # fmt: skip
            suspended.append({"kind": what, "slug": slug})
        audit.record(
            session,
            actor=actor,
            action="emergency.start" if kind == "incident" else "emergency.drill_start",
            target=f"{scope}:{subject or '*'}",
            tenant=subject if scope == "tenant" else None,
            detail={
                "incident": incident_id,
                "reason": reason,
                "suspended": suspended,
                "already_suspended": already,
            },
        )
    problems: list[str] = []
    stopped: list[str] = []
    tenants = [s["slug"] for s in suspended if s["kind"] == "tenant"]
    if stop_servers and tenants:
        try:
            client = HubClient(settings)
            for slug in tenants:
                stopped += client.stop_tenant_servers(slug)
        except HubUnavailable as err:
            problems.append(f"servers not stopped through the hub: {err}")
    if any(s["kind"] == "dataset" for s in suspended):
        sweep(settings)
    with session_scope(settings.db_url) as session:
        try:
            signed = checkpoints.write(
                session,
                Path(settings.audit_signing_key_file),
                Path(settings.audit_checkpoints_file),
            )
        except checkpoints.CheckpointError as err:
            signed = None
            problems.append(f"audit head NOT signed: {err}")
        seq, head_hash = audit.head(session)
        record: dict[str, Any] = {
            "id": incident_id,
            "kind": kind,
            "scope": scope,
            "subject": subject or "*",
            "reason": reason,
            "started_by": actor,
            "started_at": stamp(),
            "suspended": suspended,
            "stopped_servers": stopped,
            "audit_head": {
                "seq": signed.seq if signed else seq,
                "hash": signed.hash if signed else head_hash,
            },
            "checkpoint": json.loads(signed.line()) if signed else None,
            "seconds": round(time.monotonic() - began, 3),
        }
        session.add(incident_row(record))
    record["problems"] = problems
    return Outcome(record, problems)


def incident_dict(row: Incident) -> dict[str, Any]:
    """JSON form of an incident record."""
    return {
        "id": row.id,
        "kind": row.kind,
        "scope": row.scope,
        "subject": row.subject,
        "reason": row.reason,
        "started_by": row.started_by,
        "started_at": row.started_at,
        "suspended": json.loads(row.suspended),
        "stopped_servers": json.loads(row.stopped_servers),
        "audit_head": {"seq": row.audit_seq, "hash": row.audit_hash},
        "checkpoint": json.loads(row.checkpoint) if row.checkpoint else None,
        "seconds": row.seconds,
    }


def incident_row(record: dict[str, Any]) -> Incident:
    """The table row of an incident record (the inverse of :func:`incident_dict`)."""
    return Incident(
        id=record["id"],
        kind=record["kind"],
        scope=record["scope"],
        subject=record["subject"],
        reason=record["reason"],
        started_by=record["started_by"],
        started_at=record["started_at"],
        suspended=json.dumps(record["suspended"], ensure_ascii=False),
        stopped_servers=json.dumps(record["stopped_servers"]),
        audit_seq=record["audit_head"]["seq"],
        audit_hash=record["audit_head"]["hash"],
        checkpoint=json.dumps(record["checkpoint"]) if record["checkpoint"] else "",
        seconds=record["seconds"],
    )


def incidents(settings: Shuyu) -> list[dict[str, Any]]:
    """Every incident and drill, newest first."""
    with session_scope(settings.db_url) as session:
        rows = session.scalars(select(Incident).order_by(Incident.started_at.desc()))
        return [incident_dict(r) for r in rows]


def _scratch_copy(settings: Shuyu, into: Path) -> Shuyu:
    """Settings of a scratch platform in ``into``: a copy of the database, the accounts,
    the checkpoints; a signing key of its own (a drill never signs with the real key)."""
    url = make_url(settings.db_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise EmergencyError(
            "a drill copies the platform database; on PostgreSQL run it against a restored "
            "backup with --home pointing at that copy's state root"
        )
    (into / "db").mkdir(parents=True)
    (into / "hub").mkdir()
    target = into / "db" / "shuyu.sqlite"
    with sqlite3.connect(url.database) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    if settings.accounts_file.exists():
        shutil.copy2(settings.accounts_file, into / "hub" / "accounts.json")
    if Path(settings.audit_checkpoints_file).exists():
        shutil.copy2(settings.audit_checkpoints_file, into / "hub" / "real-checkpoints.jsonl")
    return Shuyu(
        home=str(into),
        db_url=f"sqlite:///{target}",
        policies_dir=settings.policies_dir,
        audit_signing_key_file=str(into / "hub" / "drill-signing-key.pem"),
        audit_checkpoints_file=str(into / "hub" / "drill-checkpoints.jsonl"),
    )


def drill(settings: Shuyu, scope: str, subject: str, *, actor: str) -> dict[str, Any]:
    """Run :func:`start` on a scratch copy, check its effect there, record the drill here.

    Returns the drill's incident record with ``checks``: for each subject, whether the
    copy holds it suspended afterwards, and whether the copy's audit chain verifies.
    """
    with tempfile.TemporaryDirectory(prefix="shuyu-drill-") as scratch:
        copy = _scratch_copy(settings, Path(scratch))
        copy.ensure_zones()
        outcome = start(
            copy, scope, subject, reason="emergency drill", actor=actor, kind="drill",
            stop_servers=False,
        )  # fmt: skip
        checks: dict[str, Any] = {}
        with session_scope(copy.db_url) as session:
            for item in outcome.incident["suspended"]:
                held = suspension.is_suspended(session, item["slug"], item["kind"])
                checks[f"{item['kind']}:{item['slug']}"] = held is not None
            verified = audit.verify(session)
        engine_for(copy.db_url).dispose()
    passed = all(checks.values()) and verified.ok and not outcome.problems
    result = {
        **outcome.incident,
        "checks": checks,
        "chain_ok": verified.ok,
        "passed": passed,
    }
    with session_scope(settings.db_url) as session:
        audit.record(
            session,
            actor=actor,
            action="emergency.drill",
            target=f"{scope}:{subject or '*'}",
            outcome="ok" if passed else "error",
            detail={
                "drill": outcome.incident["id"],
                "seconds": outcome.incident["seconds"],
                "suspended": len(outcome.incident["suspended"]),
                "checks": checks,
                "chain_ok": verified.ok,
                "problems": outcome.problems,
            },
        )
        session.add(
            incident_row(
                {
                    **outcome.incident,
                    "reason": "emergency drill on a scratch copy",
                    "stopped_servers": [],
                }
            )
        )
    return result
