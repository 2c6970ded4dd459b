"""Tenant status: active or suspended (R23), each change audited with its reason.

A suspended tenant's sandboxes are stopped and no new one starts until an
administrator resumes it. The state lives in the platform database; the hub reads it
at every spawn.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from . import audit
from .db import stamp
from .models import Tenant


class TenantError(ValueError):
    """A tenant operation that cannot be done, with the reason for a person."""


def status(session: Session, slug: str) -> Tenant | None:
    """The tenant's status row (None: never suspended, so active)."""
    return session.get(Tenant, slug)


def is_suspended(session: Session, slug: str) -> Tenant | None:
    """The status row if the tenant is suspended now, else None."""
    row = session.get(Tenant, slug)
    return row if row is not None and row.status == "suspended" else None


def suspend(session: Session, slug: str, *, reason: str, actor: str) -> Tenant:
    """Mark the tenant suspended (audited in the same transaction)."""
    if not reason.strip():
        raise TenantError("a suspension needs a reason (it is recorded and shown to the tenant)")
    row = session.get(Tenant, slug) or Tenant(slug=slug)
    if row.status == "suspended":
        raise TenantError(f"tenant {slug!r} is already suspended: {row.reason}")
    row.status = "suspended"
    row.reason = reason.strip()
    row.changed_by = actor
    row.changed_at = stamp()
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action="tenant.suspend",
        target=slug,
        tenant=slug,
        detail={"reason": row.reason},
    )
    return row


def resume(session: Session, slug: str, *, actor: str, reason: str = "") -> Tenant:
    """Mark the tenant active again (audited in the same transaction)."""
    row = session.get(Tenant, slug)
    if row is None or row.status != "suspended":
        raise TenantError(f"tenant {slug!r} is not suspended")
    row.status = "active"
    row.reason = reason.strip()
    row.changed_by = actor
    row.changed_at = stamp()
    audit.record(
        session,
        actor=actor,
        action="tenant.resume",
        target=slug,
        tenant=slug,
        detail={"reason": row.reason},
    )
    return row
