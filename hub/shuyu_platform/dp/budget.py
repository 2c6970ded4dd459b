"""The privacy-budget ledger: one account per (tenant, scenario, dataset), debited first.

Accounting is pure ε with basic composition (see :mod:`shuyu_platform.dp`): an account's
spent ε is the sum of the ε of every query and model fit debited to it, and may never
exceed the ε of the tenant's active grant for the dataset. Besides, every dataset has a
global account per calendar period (the policy's ``dp.global_budget_epsilon`` and
``dp.budget_period``) that all tenants' queries draw on, so that tenants pooling their
grants can never spend more on one person than the dataset's cap. ε is stored in
millionths, so the sums are exact.

A debit is two conditional ``UPDATE ... SET spent = spent + cost WHERE spent + cost <=
cap`` in one transaction: the tenant's account (capped by the active, unexpired
grant), then the dataset's global account (capped by the policy). If either refuses,
the transaction rolls back and nothing is spent. The database applies them atomically,
so any number of concurrent queries (threads, processes, or service replicas on
PostgreSQL, where the row locks are always taken in this order) can never overspend.
The same transaction records the release row and the ``dp.query`` audit event; only
after it has committed does the engine compute the answer.

A debit is then *settled*: ``released`` with its answer, or, if nothing was released
(the engine failed, or the service died before storing the answer), ``refunded``: its
ε is given back to both accounts, audited as ``dp.refund``. An operator who prefers to
keep the cost of failures (a failure could depend on the data) sets
``Shuyu.dp_refund_failures = False``: they are then ``failed`` and stay spent. A
release the service left ``debited`` when it died is settled the same way when the
service starts (:func:`settle_interrupted`). So at rest every account's spent ε is the
sum of its ``released`` and ``failed`` releases (:func:`ledger_problems` checks it).

Released answers are stored with their SHA-256 over canonical JSON, so the egress checks
can recognise DP output (:func:`find_release`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..access import grants, suspension
from ..core import audit
from ..core.db import session_scope, stamp
from ..core.models import DpGlobalBudget, DpRelease, Grant, PrivacyBudget
from ..data.policy import BudgetPeriod, DatasetPolicy
from .number_keys import number_key
from .query import EPSILON_QUANTUM, QueryError

MICRO: Final[int] = round(1 / EPSILON_QUANTUM)

Kind = Literal["query", "model"]

#: Release states that count as spent once settled: answered, or failed and kept.
KEPT: Final[tuple[str, ...]] = ("released", "failed")
#: Who settles debits the service left unsettled when it died.
SETTLER: Final[str] = "platform"


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
        return grant_in(session, tenant, dataset)


def grant_in(session: Session, tenant: str, dataset: str) -> Grant:
    """:func:`active_grant`, read in ``session``."""
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


Accounts = tuple[str, int | None, int | None]
"""A budget period and the ids of a grant's account and its dataset's global account
for it, as :func:`account_ids_in` read them (``None``: not created yet)."""


def account_ids_in(session: Session, grant: Grant, period: str) -> tuple[int | None, int | None]:
    """The ids of the grant's account and of the dataset's global account for
    ``period`` as stored, read in ``session`` (``None``: not created yet)."""
    account = session.scalar(
        select(PrivacyBudget.id).where(
            PrivacyBudget.tenant == grant.tenant,
            PrivacyBudget.scenario == grant.scenario,
            PrivacyBudget.dataset == grant.dataset,
        )
    )
    pool = session.scalar(
        select(DpGlobalBudget.id).where(
            DpGlobalBudget.dataset == grant.dataset, DpGlobalBudget.period == period
        )
    )
    return account, pool


def _account_ids(
    db_url: str, grant: Grant, period: str, known: tuple[int | None, int | None] | None = None
) -> tuple[int, int]:
    """The ids of the grant's account and of the dataset's global account for
    ``period``: ``known`` (read already by :func:`account_ids_in`) or both read in one
    transaction, each created on first use."""
    if known is None:
        with session_scope(db_url) as session:
            known = account_ids_in(session, grant, period)
    account, pool = known
    return (
        account if account is not None else _account_id(db_url, grant),
        pool if pool is not None else _pool_id(db_url, grant.dataset, period),
    )


def period_of(period: BudgetPeriod, moment: datetime | None = None) -> str:
    """The name of the calendar period (UTC) holding ``moment`` (default: now):
    ``2026`` for a year, ``2026-Q4`` for a quarter, ``2026-11`` for a month."""
    when = moment or datetime.now(UTC)
    if period == "year":
        return f"{when.year:04d}"
    if period == "quarter":
        return f"{when.year:04d}-Q{(when.month - 1) // 3 + 1}"
    return f"{when.year:04d}-{when.month:02d}"


def _pool_id(db_url: str, dataset: str, period: str) -> int:
    """The id of the dataset's global account for ``period``, created on first use."""
    key = (DpGlobalBudget.dataset == dataset, DpGlobalBudget.period == period)
    with session_scope(db_url) as session:
        found = session.scalar(select(DpGlobalBudget.id).where(*key))
    if found is not None:
        return found
    now = stamp()
    try:
        with session_scope(db_url) as session:
            session.execute(
                insert(DpGlobalBudget).values(
                    dataset=dataset, period=period, spent_micro=0, created_at=now, updated_at=now
                )
            )
    except IntegrityError:
        pass  # a concurrent first query created it
    with session_scope(db_url) as session:
        return session.scalars(select(DpGlobalBudget.id).where(*key)).one()


class _AccountRefused(Exception):
    """Rolls the debit's transaction back when the grant's account refuses it."""


class _PoolExhausted(Exception):
    """Rolls the debit's transaction back when the global account cannot cover it."""


def debit(
    db_url: str,
    grant: Grant,
    *,
    policy: DatasetPolicy,
    username: str,
    kind: Kind,
    cost_micro: int,
    request: dict[str, Any],
    raw_version: int | None = None,
    accounts: Accounts | None = None,
) -> str:
    """Spend ``cost_micro`` of the grant's account and of the dataset's global account
    for this period (``policy.dp``); return the new release's id. ``raw_version`` is the
    raw version the answer is computed on (recorded with the release). ``accounts``: a
    period and the account ids :func:`account_ids_in` read for it with the grant, so the
    debit need not read them again (ignored if the period has turned since).

    Raises :class:`BudgetError` if the grant is no longer active or either account
    cannot cover the cost; then nothing is spent.
    """
    if policy.dataset != grant.dataset:
        raise ValueError(f"grant {grant.id} is of {grant.dataset}, not {policy.dataset}")
    period = period_of(policy.dp.budget_period)
    known = (accounts[1], accounts[2]) if accounts and accounts[0] == period else None
    account, pool = _account_ids(db_url, grant, period, known)
    pool_cap = round(policy.dp.global_budget_epsilon * MICRO)
    now = stamp()
    cap = (
        select(func.round(Grant.budget_epsilon * MICRO))
        .where(Grant.id == grant.id, Grant.status == "active", Grant.expires_at > now)
        .scalar_subquery()
    )
    release_id = uuid.uuid4().hex
    try:
        with session_scope(db_url) as session:
            # The release row goes first (it only takes the write lock on SQLite, where
            # writers queue anyway); then the conditional UPDATEs take the row locks,
            # account then pool (PostgreSQL), before anything is read. Every request of
            # the tenant queues for its account's row until the commit: only the pool's
            # UPDATE and the audit record come between.
            session.add(
                DpRelease(
                    id=release_id,
                    budget_id=account,
                    global_budget_id=pool,
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
                    raw_version=raw_version,
                    error="",
                    created_at=now,
                    released_at="",
                )
            )
            session.flush()
            spent = session.execute(
                update(PrivacyBudget)
                .where(PrivacyBudget.id == account, PrivacyBudget.spent_micro + cost_micro <= cap)
                .values(spent_micro=PrivacyBudget.spent_micro + cost_micro, updated_at=now)
                .returning(PrivacyBudget.spent_micro)
            ).scalar()
            if spent is None:
                raise _AccountRefused
            pooled = session.execute(
                update(DpGlobalBudget)
                .where(
                    DpGlobalBudget.id == pool,
                    DpGlobalBudget.spent_micro + cost_micro <= pool_cap,
                )
                .values(spent_micro=DpGlobalBudget.spent_micro + cost_micro, updated_at=now)
                .returning(DpGlobalBudget.spent_micro)
            ).scalar()
            if pooled is None:
                raise _PoolExhausted
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
                    "raw_version": raw_version,
                    "scenario": grant.scenario,
                    "epsilon": epsilon(cost_micro),
                    "spent": epsilon(spent),
                    "remaining": epsilon(budget_micro - spent),
                    "period": period,
                    "global_spent": epsilon(pooled),
                    "global_remaining": epsilon(pool_cap - pooled),
                    "request": request,
                },
            )
            return release_id
    except _AccountRefused:
        raise _refusal(db_url, grant, account, cost_micro) from None
    except _PoolExhausted:
        raise _pool_refusal(db_url, policy, pool, period, cost_micro) from None


def _pool_refusal(
    db_url: str, policy: DatasetPolicy, pool: int, period: str, cost_micro: int
) -> BudgetError:
    """Why the dataset's global account refused a debit."""
    with session_scope(db_url) as session:
        spent = session.scalar(select(DpGlobalBudget.spent_micro).where(DpGlobalBudget.id == pool))
    cap = round(policy.dp.global_budget_epsilon * MICRO)
    left = max(cap - (spent or 0), 0)
    return BudgetError(
        f"the global privacy budget of {policy.dataset} for {period} is exhausted: all "
        f"tenants together have spent {epsilon(spent or 0):g} of "
        f"{policy.dp.global_budget_epsilon:g} ε, {epsilon(left):g} ε remains, this request "
        f"costs {epsilon(cost_micro):g} ε",
        409,
        remaining=epsilon(left),
    )


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


def release(
    db_url: str,
    release_id: str,
    answer: Any,
    *,
    username: str,
    also_read: Callable[[Session], object] | None = None,
) -> str:
    """Register the released answer (status ``released``) and return its SHA-256.

    Only a release still ``debited`` can be released: one already settled (refunded by
    a start-up sweep, say) raises :class:`BudgetError` and its answer must not be sent.
    ``also_read`` reads what the answer reports (the balances) in the same transaction,
    once the release row is claimed and before the audit record, which comes last: it
    holds the chain head (:mod:`shuyu_platform.core.audit`) until the commit.
    """
    digest = answer_hash(answer)
    with session_scope(db_url) as session:
        row = session.execute(
            update(DpRelease)
            .where(DpRelease.id == release_id, DpRelease.status == "debited")
            .values(
                status="released",
                answer=audit.canonical_json(answer),
                answer_sha256=digest,
                released_at=stamp(),
            )
            .returning(DpRelease.tenant, DpRelease.dataset, DpRelease.epsilon_micro)
        ).one_or_none()
        if row is None:
            raise BudgetError(
                f"release {release_id} was settled before its answer was stored; "
                "nothing is released",
                409,
            )
        if also_read is not None:
            also_read(session)
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


def settle(db_url: str, release_id: str, error: str, *, username: str, refund: bool = True) -> bool:
    """Settle a debited release that released nothing; return whether it was unsettled.

    ``refund``: mark it ``refunded`` and give its ε back to the tenant's account and the
    dataset's global account (audited ``dp.refund``); otherwise mark it ``failed`` and
    keep its ε spent (audited ``dp.release`` with outcome ``error``). A release already
    settled is left as it is, so settling twice never refunds twice.
    """
    status = "refunded" if refund else "failed"
    with session_scope(db_url) as session:
        # Claiming the row is the first statement: two settlers cannot both refund it.
        row = session.execute(
            update(DpRelease)
            .where(DpRelease.id == release_id, DpRelease.status == "debited")
            .values(status=status, error=error)
            .returning(
                DpRelease.tenant,
                DpRelease.dataset,
                DpRelease.epsilon_micro,
                DpRelease.budget_id,
                DpRelease.global_budget_id,
            )
        ).one_or_none()
        if row is None:
            return False
        if refund:
            now = stamp()
            session.execute(
                update(PrivacyBudget)
                .where(PrivacyBudget.id == row.budget_id)
                .values(spent_micro=PrivacyBudget.spent_micro - row.epsilon_micro, updated_at=now)
            )
            if row.global_budget_id is not None:
                session.execute(
                    update(DpGlobalBudget)
                    .where(DpGlobalBudget.id == row.global_budget_id)
                    .values(
                        spent_micro=DpGlobalBudget.spent_micro - row.epsilon_micro,
                        updated_at=now,
                    )
                )
        audit.record(
            session,
            actor=username,
            action="dp.refund" if refund else "dp.release",
            target=f"dp_release:{release_id}",
            tenant=row.tenant,
            outcome="ok" if refund else "error",
            detail={
                "dataset": row.dataset,
                "error": error,
                "epsilon": epsilon(row.epsilon_micro),
                "refunded": epsilon(row.epsilon_micro) if refund else 0,
            },
        )
    return True


def fail(db_url: str, release_id: str, error: str, *, username: str) -> None:
    """Mark a debited release ``failed``, keeping its ε spent (audited)."""
    settle(db_url, release_id, error, username=username, refund=False)


def settle_interrupted(db_url: str, *, refund: bool = True) -> list[str]:
    """Settle every release left ``debited`` (the service died between the debit and
    storing the answer, so nothing was released); return their ids.

    Run by the platform service when it starts, before it answers anything. With
    several service replicas on one database, a starting replica also settles what
    another is still computing; that one's :func:`release` then refuses, so its answer
    never leaves and nothing is released unpaid.
    """
    with session_scope(db_url) as session:
        pending = list(session.scalars(select(DpRelease.id).where(DpRelease.status == "debited")))
    return [
        release_id
        for release_id in pending
        if settle(
            db_url,
            release_id,
            "interrupted: the platform service stopped before the answer was released",
            username=SETTLER,
            refund=refund,
        )
    ]


def ledger_problems(db_url: str) -> list[str]:
    """Accounts whose spent ε differs from the sum of their releases that count.

    At rest (no query in flight) every tenant account and every global account must
    equal the sum of its ``released`` and ``failed`` releases; a ``debited`` one counts
    too while it is in flight. An empty list means the ledger adds up.
    """
    counted = ("debited", *KEPT)
    problems = []
    with session_scope(db_url) as session:
        for table, column in (
            (PrivacyBudget, DpRelease.budget_id),
            (DpGlobalBudget, DpRelease.global_budget_id),
        ):
            sums = dict(
                session.execute(
                    select(column, func.sum(DpRelease.epsilon_micro))
                    .where(DpRelease.status.in_(counted))
                    .group_by(column)
                ).all()
            )
            for account_id, spent in session.execute(select(table.id, table.spent_micro)):
                expected = sums.get(account_id) or 0
                if spent != expected:
                    problems.append(
                        f"{table.__tablename__} {account_id}: {epsilon(spent):g} ε spent, "
                        f"releases add up to {epsilon(expected):g} ε"
                    )
    return problems


def balances(db_url: str, tenant: str) -> list[dict[str, Any]]:
    """The tenant's budget per active grant: fields, cap, spent, remaining, expiry."""
    with session_scope(db_url) as session:
        return balances_in(session, tenant)


def balances_in(session: Session, tenant: str) -> list[dict[str, Any]]:
    """:func:`balances`, read in ``session``: the grants and their accounts in two
    queries, whatever the number of grants (read exactly, never cached)."""
    active = grants.active(session, tenant=tenant)
    spent = {
        (scenario, dataset): used
        for scenario, dataset, used in session.execute(
            select(PrivacyBudget.scenario, PrivacyBudget.dataset, PrivacyBudget.spent_micro).where(
                PrivacyBudget.tenant == tenant
            )
        )
    }
    out = []
    for grant in active:
        budget_micro = round(grant.budget_epsilon * MICRO)
        used = spent.get((grant.scenario, grant.dataset)) or 0
        out.append(
            {
                "dataset": grant.dataset,
                "scenario": grant.scenario,
                "grant": grant.id,
                "fields": grants.fields_of(grant),
                "budget_epsilon": grant.budget_epsilon,
                "spent_epsilon": epsilon(used),
                "remaining_epsilon": epsilon(max(budget_micro - used, 0)),
                "expires_at": grant.expires_at,
            }
        )
    return out


def pool_balance(db_url: str, policy: DatasetPolicy) -> dict[str, Any]:
    """The dataset's global budget for the current period: cap, spent, remaining."""
    with session_scope(db_url) as session:
        return pool_balances_in(session, [policy])[policy.dataset]


def pool_balances_in(session: Session, policies: list[DatasetPolicy]) -> dict[str, dict[str, Any]]:
    """:func:`pool_balance` of each of ``policies``, by dataset, read in ``session`` in
    one query (read exactly, never cached)."""
    periods = {p.dataset: period_of(p.dp.budget_period) for p in policies}
    spent: dict[str, int] = {}
    if periods:
        for dataset, period, used in session.execute(
            select(DpGlobalBudget.dataset, DpGlobalBudget.period, DpGlobalBudget.spent_micro).where(
                DpGlobalBudget.dataset.in_(sorted(periods))
            )
        ):
            if periods[dataset] == period:
                spent[dataset] = used
    out = {}
    for policy in policies:
        cap = round(policy.dp.global_budget_epsilon * MICRO)
        used = spent.get(policy.dataset) or 0
        out[policy.dataset] = {
            "period": periods[policy.dataset],
            "budget_epsilon": policy.dp.global_budget_epsilon,
            "spent_epsilon": epsilon(used),
            "remaining_epsilon": epsilon(max(cap - used, 0)),
        }
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
        "raw_version": row.raw_version,
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
    (:func:`shuyu_platform.dp.number_keys.number_key`) of every value they hold.

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
