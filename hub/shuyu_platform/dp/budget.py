"""The privacy-budget ledger: one account per (tenant, scenario, dataset), debited first.

Accounting is pure ε with basic composition (see :mod:`shuyu_platform.dp`): an account's
spent ε is the sum of the ε of every query and model fit debited to it, and may never
exceed the ε of the tenant's active grant for the dataset. ε is stored in millionths, so
the sum is exact.

A debit is a single conditional ``UPDATE ... SET spent = spent + cost WHERE spent + cost
<= (the active, unexpired grant's cap)``: the database applies it atomically, so any
number of concurrent queries (threads, processes, or service replicas on PostgreSQL)
can never overspend, and an expired or revoked grant debits nothing. The same
transaction records the release row and the ``dp.query`` audit event; only after it has
committed does the engine compute the answer. An answer that then fails to compute
keeps its ε spent (a failure could depend on the data), marked ``failed``.

Released answers are stored with their SHA-256 over canonical JSON, so the egress checks
can recognise DP output (:func:`find_release`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Final, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..access import grants, suspension
from ..core import audit
from ..core.db import session_scope, stamp
from ..core.models import DpRelease, Grant, PrivacyBudget
from ..egress.disclosure import number_key
from .query import EPSILON_QUANTUM, QueryError

MICRO: Final[int] = round(1 / EPSILON_QUANTUM)

Kind = Literal["query", "model"]


class BudgetError(QueryError):
    """A debit refused: no active grant, grant expired or revoked, or too little left."""

    default_status = 409

    def __init__(
        self, message: str, status: int | None = None, remaining: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.remaining = remaining


def epsilon(micro: int) -> float:
    """ε from millionths, for people and JSON."""
    return round(micro / MICRO, 6)


def answer_hash(answer: Any) -> str:
    """SHA-256 of an answer's canonical JSON: how releases are registered and found."""
    return hashlib.sha256(audit.canonical_json(answer).encode()).hexdigest()


def active_grant(db_url: str, tenant: str, dataset: str) -> Grant:
    """The tenant's active grant of ``dataset``; a 403 if there is none or the dataset
    is suspended (R23)."""
    with session_scope(db_url) as session:
        current = grants.active(session, tenant=tenant, dataset=dataset)
        stopped = suspension.is_suspended(session, dataset, "dataset")
        reason = stopped.reason if stopped else ""
    if stopped:
        raise BudgetError(
            f"dataset {dataset} is suspended ({reason}): no DP queries until it is resumed",
            403,
        )
    if not current:
        raise BudgetError(
            f"tenant {tenant} has no active grant of {dataset}, so no DP budget for it", 403
        )
    return current[-1]


def _account_id(db_url: str, grant: Grant) -> int:
    """The id of the grant's account, created (spent 0) on first use."""
    key = (
        PrivacyBudget.tenant == grant.tenant,
        PrivacyBudget.scenario == grant.scenario,
        PrivacyBudget.dataset == grant.dataset,
    )
    with session_scope(db_url) as session:
        found = session.scalar(select(PrivacyBudget.id).where(*key))
    if found is not None:
        return found
    now = stamp()
    try:
        with session_scope(db_url) as session:
            session.execute(
                insert(PrivacyBudget).values(
                    tenant=grant.tenant,
                    scenario=grant.scenario,
                    dataset=grant.dataset,
                    spent_micro=0,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        pass  # a concurrent first query created it
    with session_scope(db_url) as session:
        return session.scalars(select(PrivacyBudget.id).where(*key)).one()


def debit(
    db_url: str,
    grant: Grant,
    *,
    username: str,
    kind: Kind,
    cost_micro: int,
    request: dict[str, Any],
) -> str:
    """Spend ``cost_micro`` of the grant's account; return the new release's id.

    Raises :class:`BudgetError` (and audits the refusal) if the grant is no longer
    active or the account cannot cover the cost.
    """
    account = _account_id(db_url, grant)
    now = stamp()
    cap = (
        select(func.round(Grant.budget_epsilon * MICRO))
        .where(Grant.id == grant.id, Grant.status == "active", Grant.expires_at > now)
        .scalar_subquery()
    )
    release_id = uuid.uuid4().hex
    with session_scope(db_url) as session:
        # The conditional UPDATE is the transaction's first statement: it takes the write
        # lock (SQLite) or the row lock (PostgreSQL) before anything is read.
        spent = session.execute(
            update(PrivacyBudget)
            .where(PrivacyBudget.id == account, PrivacyBudget.spent_micro + cost_micro <= cap)
            .values(spent_micro=PrivacyBudget.spent_micro + cost_micro, updated_at=now)
            .returning(PrivacyBudget.spent_micro)
        ).scalar()
        if spent is not None:
            session.add(
                DpRelease(
                    id=release_id,
                    budget_id=account,
                    grant_id=grant.id,
                    tenant=grant.tenant,
                    dataset=grant.dataset,
                    username=username,
                    kind=kind,
                    epsilon_micro=cost_micro,
                    request=audit.canonical_json(request),
                    status="debited",
                    answer="",
                    answer_sha256="",
                    error="",
                    created_at=now,
                    released_at="",
                )
            )
            budget_micro = round(grant.budget_epsilon * MICRO)
            audit.record(
                session,
                actor=username,
                action=f"dp.{kind}",
                target=f"dataset:{grant.dataset}",
                tenant=grant.tenant,
                detail={
                    "release": release_id,
                    "grant": grant.id,
                    "scenario": grant.scenario,
                    "epsilon": epsilon(cost_micro),
                    "spent": epsilon(spent),
                    "remaining": epsilon(budget_micro - spent),
                    "request": request,
                },
            )
            return release_id
    raise _refusal(db_url, grant, account, cost_micro)


def _refusal(db_url: str, grant: Grant, account: int, cost_micro: int) -> BudgetError:
    """Why a debit was refused, in words that state what remains."""
    with session_scope(db_url) as session:
        current = session.get(Grant, grant.id)
        spent = session.scalar(select(PrivacyBudget.spent_micro).where(PrivacyBudget.id == account))
    assert current is not None and spent is not None
    now = stamp()
    if current.status != "active" or current.expires_at <= now:
        state = current.status if current.status != "active" else "expired"
        when = current.ended_at or current.expires_at
        return BudgetError(
            f"grant {grant.id} of {grant.dataset} is {state} (since {when}); "
            "its DP budget is closed",
            403,
            remaining=0.0,
        )
    left = max(round(current.budget_epsilon * MICRO) - spent, 0)
    return BudgetError(
        f"privacy budget of {grant.dataset} exhausted for tenant {grant.tenant}: "
        f"{epsilon(spent):g} of {current.budget_epsilon:g} ε spent, {epsilon(left):g} ε "
        f"remains, this request costs {epsilon(cost_micro):g} ε",
        409,
        remaining=epsilon(left),
    )


def release(db_url: str, release_id: str, answer: Any, *, username: str) -> str:
    """Register the released answer (status ``released``) and return its SHA-256."""
    digest = answer_hash(answer)
    with session_scope(db_url) as session:
        row = session.get(DpRelease, release_id)
        assert row is not None and row.status == "debited"
        row.status = "released"
        row.answer = audit.canonical_json(answer)
        row.answer_sha256 = digest
        row.released_at = stamp()
        audit.record(
            session,
            actor=username,
            action="dp.release",
            target=f"dp_release:{release_id}",
            tenant=row.tenant,
            detail={
                "dataset": row.dataset,
                "sha256": digest,
                "epsilon": epsilon(row.epsilon_micro),
            },
        )
    return digest


def fail(db_url: str, release_id: str, error: str, *, username: str) -> None:
    """Mark a debited release ``failed`` (its ε stays spent), audited."""
    with session_scope(db_url) as session:
        row = session.get(DpRelease, release_id)
        assert row is not None
        row.status = "failed"
        row.error = error
        audit.record(
            session,
            actor=username,
            action="dp.release",
            target=f"dp_release:{release_id}",
            tenant=row.tenant,
            outcome="error",
            detail={"dataset": row.dataset, "error": error, "epsilon": epsilon(row.epsilon_micro)},
        )


def balances(db_url: str, tenant: str) -> list[dict[str, Any]]:
    """The tenant's budget per active grant: cap, spent, remaining, expiry."""
    out = []
    with session_scope(db_url) as session:
        for grant in grants.active(session, tenant=tenant):
            spent = session.scalar(
                select(PrivacyBudget.spent_micro).where(
                    PrivacyBudget.tenant == tenant,
                    PrivacyBudget.scenario == grant.scenario,
                    PrivacyBudget.dataset == grant.dataset,
                )
            )
            budget_micro = round(grant.budget_epsilon * MICRO)
            used = spent or 0
            out.append(
                {
                    "dataset": grant.dataset,
                    "scenario": grant.scenario,
                    "grant": grant.id,
                    "budget_epsilon": grant.budget_epsilon,
                    "spent_epsilon": epsilon(used),
                    "remaining_epsilon": epsilon(max(budget_micro - used, 0)),
                    "expires_at": grant.expires_at,
                }
            )
    return out


def release_dict(row: DpRelease, *, with_answer: bool = True) -> dict[str, Any]:
    """A release as JSON for its tenant (and, later, for egress reviewers)."""
    body: dict[str, Any] = {
        "id": row.id,
        "dataset": row.dataset,
        "kind": row.kind,
        "username": row.username,
        "epsilon": epsilon(row.epsilon_micro),
        "status": row.status,
        "created_at": row.created_at,
        "released_at": row.released_at,
        "sha256": row.answer_sha256,
        "request": json.loads(row.request),
    }
    if with_answer and row.answer:
        body["answer"] = json.loads(row.answer)
    if row.error:
        body["error"] = row.error
    return body


def releases(db_url: str, tenant: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The tenant's newest releases, without their answers."""
    with session_scope(db_url) as session:
        rows = session.scalars(
            select(DpRelease)
            .where(DpRelease.tenant == tenant)
            .order_by(DpRelease.created_at.desc(), DpRelease.id)
            .limit(limit)
        ).all()
        return [release_dict(r, with_answer=False) for r in rows]


def find_release(db_url: str, release_id: str) -> DpRelease | None:
    """One release by id (any tenant: callers check who may see it)."""
    with session_scope(db_url) as session:
        return session.get(DpRelease, release_id)


def find_answer(db_url: str, sha256: str) -> DpRelease | None:
    """The release whose answer has this SHA-256, if any (DP provenance for egress)."""
    with session_scope(db_url) as session:
        return session.scalars(
            select(DpRelease).where(
                DpRelease.answer_sha256 == sha256, DpRelease.status == "released"
            )
        ).first()


def answers_by_number(session: Session, tenant: str) -> dict[str, list[DpRelease]]:
    """The tenant's released DP answers, keyed by the number key
    (:func:`shuyu_platform.egress.disclosure.number_key`) of every value they hold.

    The egress checks mark numbers found here as DP output; a release's provenance
    names the queries behind the numbers it matched.
    """
    index: dict[str, list[DpRelease]] = {}
    for release in session.scalars(
        select(DpRelease).where(DpRelease.tenant == tenant, DpRelease.status == "released")
    ):
        for row in json.loads(release.answer or "{}").get("rows", []):
            for value in row.values():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    index.setdefault(number_key(value), []).append(release)
    return index
