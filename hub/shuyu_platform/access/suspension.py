"""Suspension of a tenant or a dataset (R23), each change audited with its reason.

On a security problem the authority may close a tenant's platform access or stop the
supply of a dataset until it is rectified:

- a suspended **tenant**'s sandboxes are stopped and no new one starts (the hub reads
  the state at every spawn; ``shuyu tenant suspend``);
- a suspended **dataset**'s masked views are deleted from every tenant's view folder
  and not rebuilt, and DP queries of it are refused, until it is resumed, when the
  views of the tenants still granted it are rebuilt (``shuyu dataset suspend``).

The state lives in the platform database, one row per subject that was ever
suspended (no row: active). Grants and budgets are untouched: a suspension pauses
them, and a grant's expiry still runs.
"""

from __future__ import annotations

from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core import audit
from ..core.db import stamp
from ..core.models import DatasetState, Tenant

Kind = Literal["tenant", "dataset"]
#: The table of each kind of subject.
MODELS: Final[dict[str, type[Tenant] | type[DatasetState]]] = {
    "tenant": Tenant,
    "dataset": DatasetState,
}
#: What a suspension does, for the message a person reads.
EFFECTS: Final[dict[str, str]] = {
    "tenant": "its sandboxes are stopped and new ones refused",
    "dataset": "its views are hidden and DP queries of it refused",
}


class SuspensionError(ValueError):
    """A suspension or resumption that cannot be made, with the reason for a person."""


Row = Tenant | DatasetState


def is_suspended(session: Session, slug: str, kind: Kind = "tenant") -> Row | None:
    """The status row if the subject is suspended now, else None."""
    row = session.get(MODELS[kind], slug)
    return row if row is not None and row.status == "suspended" else None


def suspended(session: Session, kind: Kind) -> dict[str, str]:
    """Every suspended subject of ``kind`` with the reason."""
    model = MODELS[kind]
    return {
        row.slug: row.reason
        for row in session.scalars(select(model).where(model.status == "suspended"))
    }


def suspend(session: Session, slug: str, *, reason: str, actor: str, kind: Kind = "tenant") -> Row:
    """Mark the subject suspended (audited in the same transaction)."""
    if not reason.strip():
        raise SuspensionError(
            f"suspending a {kind} needs a reason (it is recorded and shown to those affected)"
        )
    model = MODELS[kind]
    row = session.get(model, slug) or model(slug=slug)
    if row.status == "suspended":
        raise SuspensionError(f"{kind} {slug!r} is already suspended: {row.reason}")
    return _change(session, row, kind, "suspended", reason, actor)


def resume(
    session: Session, slug: str, *, actor: str, reason: str = "", kind: Kind = "tenant"
) -> Row:
    """Mark the subject active again (audited in the same transaction)."""
    row = session.get(MODELS[kind], slug)
    if row is None or row.status != "suspended":
        raise SuspensionError(f"{kind} {slug!r} is not suspended")
    return _change(session, row, kind, "active", reason, actor)


def _change(
    session: Session,
    row: Row,
    kind: Kind,
    status: str,
    reason: str,
    actor: str,
) -> Row:
    row.status = status
    row.reason = reason.strip()
    row.changed_by = actor
    row.changed_at = stamp()
    session.add(row)
    audit.record(
        session,
        actor=actor,
        action=f"{kind}.{'suspend' if status == 'suspended' else 'resume'}",
        target=slug_target(kind, row.slug),
        tenant=row.slug if kind == "tenant" else None,
        detail={"reason": row.reason},
    )
    return row


def slug_target(kind: Kind, slug: str) -> str:
    """The audit target of a subject (tenants by slug, as before; datasets prefixed)."""
    return slug if kind == "tenant" else f"dataset:{slug}"
