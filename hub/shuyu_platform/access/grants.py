"""Grants: what one tenant may use of one dataset (R7, R9), and their audited lifecycle.

A grant names the dataset, the fields the tenant's masked view holds (never a field the
policy drops), an optional row filter (e.g. only some districts), the DP budget of the
grant and its expiry. At most one grant per (tenant, dataset) is active; issuing a new
one replaces it. Status changes follow :data:`TRANSITIONS` and each is recorded in the
audit chain in the transaction that makes it.

Until scenario applications land, grants are issued by an operator with
``shuyu grant add``; the masked view is (re)built right after (:mod:`~shuyu_platform.data.views`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core import audit, roles
from ..core.db import parse_stamp, stamp
from ..core.models import Grant
from ..data.policy import DatasetPolicy

#: Allowed status changes. ``active`` is the only state a grant is issued in.
TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "active": frozenset({"revoked", "expired", "replaced"}),
    "revoked": frozenset(),
    "expired": frozenset(),
    "replaced": frozenset(),
}

#: Validity of a grant when none is given.
DEFAULT_DAYS: Final[int] = 365


class GrantError(ValueError):
    """A grant that cannot be issued or changed, with the reason for a person."""


def _now() -> datetime:
    return datetime.now(UTC)


def fields_of(grant: Grant) -> list[str]:
    """The granted field names, in policy order."""
    return list(json.loads(grant.fields))


def row_filter_of(grant: Grant) -> dict[str, list[Any]]:
    """The grant's row filter: field -> allowed raw values (empty: every row)."""
    return dict(json.loads(grant.row_filter))


def as_dict(grant: Grant) -> dict[str, Any]:
    """The grant as plain JSON-able data (for the API, the CLI and audit details)."""
    return {
        "id": grant.id,
        "tenant": grant.tenant,
        "dataset": grant.dataset,
        "scenario": grant.scenario,
        "fields": fields_of(grant),
        "row_filter": row_filter_of(grant),
        "budget_epsilon": grant.budget_epsilon,
        "status": grant.status,
        "issued_by": grant.issued_by,
        "issued_at": grant.issued_at,
        "expires_at": grant.expires_at,
        "ended_by": grant.ended_by,
        "ended_at": grant.ended_at,
        "end_reason": grant.end_reason,
    }


def _check_fields(policy: DatasetPolicy, fields: Sequence[str] | None) -> list[str]:
    visible = policy.visible_fields()
    if fields is None:
        return list(visible)
    problems = []
    for name in fields:
        field = policy.fields.get(name)
        if field is None:
            problems.append(f"{policy.dataset} has no field {name!r}")
        elif not field.visible:
            problems.append(
                f"field {name!r} (grade {field.grade}) is dropped from every view by policy"
            )
    if problems:
        raise GrantError("; ".join(problems))
    if not fields:
        raise GrantError("a grant needs at least one field")
    wanted = set(fields)
    return [name for name in policy.fields if name in wanted]  # policy order, no repeats


def _check_row_filter(
    policy: DatasetPolicy, row_filter: Mapping[str, Sequence[Any]] | None
) -> dict[str, list[Any]]:
    clean: dict[str, list[Any]] = {}
    for name, values in (row_filter or {}).items():
        if name not in policy.fields:
            raise GrantError(f"row filter on {name!r}: {policy.dataset} has no such field")
        if isinstance(values, str | bytes) or not list(values):
            raise GrantError(f"row filter on {name!r} needs a non-empty list of values")
        clean[name] = list(values)
    return clean


def _transition(session: Session, grant: Grant, status: str, *, actor: str, reason: str) -> None:
    if status not in TRANSITIONS[grant.status]:
        raise GrantError(f"grant {grant.id} is {grant.status}; it cannot become {status}")
    before = grant.status
    grant.status = status
    grant.ended_by = actor
    grant.ended_at = stamp(_now())
    grant.end_reason = reason
    audit.record(
        session,
        actor=actor,
        actor_kind="system" if actor == "system" else "user",
        action=f"grant.{status}",
        target=f"grant:{grant.id}",
        tenant=grant.tenant,
        detail={"dataset": grant.dataset, "from": before, "reason": reason},
    )


def issue(
    session: Session,
    policy: DatasetPolicy,
    *,
    tenant: str,
    fields: Sequence[str] | None,
    actor: str,
    row_filter: Mapping[str, Sequence[Any]] | None = None,
    budget_epsilon: float | None = None,
    expires_at: datetime | None = None,
    scenario: str = "",
) -> Grant:
    """Issue an active grant (replacing the tenant's active one for the dataset), audited.

    ``fields=None`` grants every field the policy lets into a view. The budget defaults
    to the policy's ``default_budget_epsilon``, the expiry to :data:`DEFAULT_DAYS` days.
    """
    if not roles.TENANT_SLUG.match(tenant):
        raise GrantError(f"{tenant!r} is not a tenant slug (lower-case letters, digits, '-')")
    chosen = _check_fields(policy, fields)
    rows = _check_row_filter(policy, row_filter)
    budget = policy.privacy.default_budget_epsilon if budget_epsilon is None else budget_epsilon
    if not budget >= 0:
        raise GrantError(f"the DP budget must be a number ≥ 0, not {budget!r}")
    now = _now()
    expiry = expires_at or now + timedelta(days=DEFAULT_DAYS)
    if expiry <= now:
        raise GrantError(f"the expiry {stamp(expiry)} is not in the future")
    current = active(session, tenant=tenant, dataset=policy.dataset)
    for old in current:
        _transition(session, old, "replaced", actor=actor, reason="a new grant was issued")
    grant = Grant(
        tenant=tenant,
        dataset=policy.dataset,
        scenario=scenario,
        fields=json.dumps(chosen, ensure_ascii=False),
        row_filter=json.dumps(rows, ensure_ascii=False, default=str),
        budget_epsilon=float(budget),
        status="active",
        issued_by=actor,
        issued_at=stamp(now),
        expires_at=stamp(expiry),
        ended_by="",
        ended_at="",
        end_reason="",
    )
    session.add(grant)
    session.flush()  # assigns the id the audit record names
    audit.record(
        session,
        actor=actor,
        action="grant.issue",
        target=f"grant:{grant.id}",
        tenant=tenant,
        detail=as_dict(grant),
    )
    return grant


def revoke(session: Session, grant_id: int, *, actor: str, reason: str) -> Grant:
    """End an active grant now (audited); its view is removed at the next build."""
    if not reason.strip():
        raise GrantError("a revocation needs a reason (it is recorded and shown to the tenant)")
    grant = session.get(Grant, grant_id)
    if grant is None:
        raise GrantError(f"no grant {grant_id}")
    _transition(session, grant, "revoked", actor=actor, reason=reason.strip())
    return grant


def expire_due(session: Session, *, now: datetime | None = None) -> list[Grant]:
    """Mark every active grant past its expiry as expired (audited, actor ``system``)."""
    moment = now or _now()
    due = [
        g
        for g in session.scalars(select(Grant).where(Grant.status == "active"))
        if parse_stamp(g.expires_at) <= moment
    ]
    for grant in due:
        _transition(session, grant, "expired", actor="system", reason="past its expiry")
    return due


def active(
    session: Session,
    *,
    tenant: str | None = None,
    dataset: str | None = None,
    now: datetime | None = None,
) -> list[Grant]:
    """Active, unexpired grants, optionally of one tenant and/or dataset, oldest first."""
    moment = now or _now()
    query = select(Grant).where(Grant.status == "active").order_by(Grant.id)
    if tenant is not None:
        query = query.where(Grant.tenant == tenant)
    if dataset is not None:
        query = query.where(Grant.dataset == dataset)
    return [g for g in session.scalars(query) if parse_stamp(g.expires_at) > moment]


def listing(session: Session, *, tenant: str | None = None) -> list[Grant]:
    """Every grant (any status), optionally of one tenant, newest first."""
    query = select(Grant).order_by(Grant.id.desc())
    if tenant is not None:
        query = query.where(Grant.tenant == tenant)
    return list(session.scalars(query))
