"""The privacy-budget ledger on a real SQLite database: atomic, persistent, audited."""

from __future__ import annotations

import functools
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select, update

from harness import REPO
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import DpGlobalBudget, DpRelease, Grant, PrivacyBudget
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.dp import budget


@pytest.fixture(scope="module")
def health() -> DatasetPolicy:
    """health_records with a global budget too large to matter (the tenant's own
    account is under test here; the global one has tests of its own below)."""
    return roomy(load_policies(REPO / "policies")["health_records"])


@functools.cache
def _policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


def roomy(policy: DatasetPolicy, global_epsilon: float = 1000.0) -> DatasetPolicy:
    """``policy`` with another global budget."""
    return policy.model_copy(
        update={"dp": policy.dp.model_copy(update={"global_budget_epsilon": global_epsilon})}
    )


def _grant(db_url: str, policy: DatasetPolicy, epsilon: float, **kwargs: object) -> Grant:
    with db.session_scope(db_url) as session:
        return grants.issue(
            session,
            policy,
            tenant="kangning",
            fields=None,
            actor="op",
            budget_epsilon=epsilon,
            **kwargs,  # type: ignore[arg-type]
        )


def _spent(db_url: str) -> list[int]:
    with db.session_scope(db_url) as session:
        return list(session.scalars(select(PrivacyBudget.spent_micro)))


def _debit(db_url: str, grant: Grant, epsilon: float, policy: DatasetPolicy | None = None) -> str:
    if policy is None:
        policy = roomy(_policies()[grant.dataset])
    return budget.debit(
        db_url,
        grant,
        policy=policy,
        username="alice",
        kind="query",
        cost_micro=round(epsilon * 1_000_000),
        request={"epsilon": epsilon},
    )


def test_a_debit_records_the_release_and_an_audit_event_with_its_cost(
    db_url: str, health: DatasetPolicy
) -> None:
    grant = _grant(db_url, health, 1.0)
    release_id = _debit(db_url, grant, 0.25)
    assert _spent(db_url) == [250_000]
    with db.session_scope(db_url) as session:
        row = session.get(DpRelease, release_id)
        assert row is not None and row.status == "debited" and row.epsilon_micro == 250_000
        events = audit.query(session, action="dp.query", limit=10)
    assert events[-1]["detail"]["epsilon"] == 0.25
    assert events[-1]["detail"]["remaining"] == 0.75
    assert events[-1]["tenant"] == "kangning"

    digest = budget.release(db_url, release_id, {"rows": [[1]]}, username="alice")
    assert digest == budget.answer_hash({"rows": [[1]]})
    found = budget.find_answer(db_url, digest)
    assert found is not None and found.id == release_id


def test_overdraw_is_refused_with_what_remains_and_spends_nothing(
    db_url: str, health: DatasetPolicy
) -> None:
    grant = _grant(db_url, health, 1.0)
    _debit(db_url, grant, 0.9)
    with pytest.raises(budget.BudgetError) as refused:
        _debit(db_url, grant, 0.2)
    assert refused.value.status == 409
    assert refused.value.remaining == pytest.approx(0.1)
    assert "0.9 of 1 ε spent, 0.1 ε remains, this request costs 0.2 ε" in refused.value.message
    assert _spent(db_url) == [900_000]
    _debit(db_url, grant, 0.1)  # exactly what is left still goes through
    assert _spent(db_url) == [1_000_000]


def test_concurrent_threads_never_overspend(db_url: str, health: DatasetPolicy) -> None:
    grant = _grant(db_url, health, 5.0)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(40)

    def worker() -> None:
        start.wait()
        try:
            _debit(db_url, grant, 0.3)
            result = "ok"
        except budget.BudgetError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 16  # 16 × 0.3 = 4.8 ≤ 5 < 17 × 0.3
    assert outcomes.count("refused") == 24
    assert _spent(db_url) == [4_800_000]
    with db.session_scope(db_url) as session:
        assert len(session.scalars(select(DpRelease)).all()) == 16
        assert audit.verify(session).ok


def _process_worker(db_url: str, grant_id: int, count: int, results: multiprocessing.Queue) -> None:
    with db.session_scope(db_url) as session:
        grant = session.get(Grant, grant_id)
    assert grant is not None
    ok = 0
    for _ in range(count):
        try:
            _debit(db_url, grant, 0.1)
            ok += 1
        except budget.BudgetError:
            pass
    results.put(ok)


def test_concurrent_processes_never_overspend(db_url: str, health: DatasetPolicy) -> None:
    grant = _grant(db_url, health, 2.0)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_process_worker, args=(db_url, grant.id, 10, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert sum(results.get(timeout=5) for _ in workers) == 20  # 20 × 0.1 = 2.0
    assert _spent(db_url) == [2_000_000]


def test_expired_and_revoked_grants_close_the_budget(db_url: str, health: DatasetPolicy) -> None:
    grant = _grant(db_url, health, 5.0)
    with db.session_scope(db_url) as session:
        past = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        session.execute(update(Grant).where(Grant.id == grant.id).values(expires_at=past))
    with pytest.raises(budget.BudgetError) as refused:
        _debit(db_url, grant, 0.1)
    assert refused.value.status == 403 and "is expired" in refused.value.message

    other = _grant(db_url, load_policies(REPO / "policies")["social_insurance"], 5.0)
    with db.session_scope(db_url) as session:
        grants.revoke(session, other.id, actor="op", reason="scenario ended")
    with pytest.raises(budget.BudgetError) as refused:
        _debit(db_url, other, 0.1)
    assert "is revoked" in refused.value.message and "budget is closed" in refused.value.message
    assert set(_spent(db_url)) == {0}


def test_a_replacement_grant_in_the_same_scenario_continues_the_account(
    db_url: str, health: DatasetPolicy
) -> None:
    first = _grant(db_url, health, 1.0, scenario="underwriting")
    _debit(db_url, first, 0.8)
    second = _grant(db_url, health, 1.0, scenario="underwriting")
    with pytest.raises(budget.BudgetError, match=r"0\.2 ε remains"):
        _debit(db_url, second, 0.5)
    balances = budget.balances(db_url, "kangning")
    assert [(b["grant"], b["spent_epsilon"], b["remaining_epsilon"]) for b in balances] == [
        (second.id, 0.8, 0.2)
    ]
    # A different scenario is a different account.
    third = _grant(db_url, health, 1.0, scenario="another")
    _debit(db_url, third, 0.5)
    assert sorted(_spent(db_url)) == [500_000, 800_000]


def test_the_ledger_survives_a_new_process(db_url: str, health: DatasetPolicy) -> None:
    grant = _grant(db_url, health, 1.0)
    _debit(db_url, grant, 0.6)
    db.engine_for.cache_clear()
    db._sessionmaker.cache_clear()  # as a restarted service would: new engine, new pool
    with pytest.raises(budget.BudgetError, match=r"0\.4 ε remains"):
        _debit(db_url, grant, 0.5)


def test_a_failed_answer_kept_by_the_operator_keeps_its_cost(
    db_url: str, health: DatasetPolicy
) -> None:
    grant = _grant(db_url, health, 1.0)
    release_id = _debit(db_url, grant, 0.3)
    budget.fail(db_url, release_id, "engine crashed", username="alice")
    assert _spent(db_url) == [300_000]
    row = budget.find_release(db_url, release_id)
    assert row is not None and row.status == "failed" and row.error == "engine crashed"
    assert budget.ledger_problems(db_url) == []


# ------------------------------------------------------------ the global budget


def _issue(db_url: str, policy: DatasetPolicy, tenant: str, epsilon: float) -> Grant:
    with db.session_scope(db_url) as session:
        grant = grants.issue(
            session, policy, tenant=tenant, fields=None, actor="op", budget_epsilon=epsilon
        )
        session.expunge(grant)
        return grant


def _pools(db_url: str) -> dict[tuple[str, str], int]:
    with db.session_scope(db_url) as session:
        return {
            (row.dataset, row.period): row.spent_micro
            for row in session.scalars(select(DpGlobalBudget))
        }


def test_two_tenants_together_cannot_exceed_the_global_budget(db_url: str) -> None:
    policy = _policies()["health_records"]  # the real policy: 1 ε per year for everyone
    assert policy.dp.global_budget_epsilon == 1.0
    kangning = _issue(db_url, policy, "kangning", 5.0)
    huaxin = _issue(db_url, policy, "huaxin", 5.0)
    _debit(db_url, kangning, 0.6, policy)
    with pytest.raises(budget.BudgetError) as refused:
        _debit(db_url, huaxin, 0.5, policy)
    period = budget.period_of("year")
    assert refused.value.status == 409 and refused.value.remaining == pytest.approx(0.4)
    assert (
        f"the global privacy budget of health_records for {period} is exhausted: all tenants "
        "together have spent 0.6 of 1 ε, 0.4 ε remains, this request costs 0.5 ε"
    ) in refused.value.message
    # The refusal rolled back huaxin's own debit too: nothing is half-spent.
    assert sorted(_spent(db_url)) == [0, 600_000]
    _debit(db_url, huaxin, 0.4, policy)
    assert _pools(db_url) == {("health_records", period): 1_000_000}
    assert budget.pool_balance(db_url, policy)["remaining_epsilon"] == 0
    assert budget.ledger_problems(db_url) == []


def test_concurrent_threads_of_two_tenants_never_exceed_the_global_budget(db_url: str) -> None:
    policy = _policies()["health_records"]
    tenants = [_issue(db_url, policy, name, 5.0) for name in ("kangning", "huaxin")]
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(40)

    def worker(index: int) -> None:
        start.wait()
        try:
            _debit(db_url, tenants[index % 2], 0.15, policy)
            result = "ok"
        except budget.BudgetError as err:
            assert "global privacy budget" in err.message
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 6  # 6 × 0.15 = 0.9 ≤ 1 < 7 × 0.15
    assert sum(_spent(db_url)) == 900_000
    assert list(_pools(db_url).values()) == [900_000]
    assert budget.ledger_problems(db_url) == []
    with db.session_scope(db_url) as session:
        assert audit.verify(session).ok


def _pool_worker(db_url: str, grant_id: int, count: int, results: multiprocessing.Queue) -> None:
    with db.session_scope(db_url) as session:
        grant = session.get(Grant, grant_id)
        assert grant is not None
        session.expunge(grant)
    policy = load_policies(REPO / "policies")["health_records"]
    ok = 0
    for _ in range(count):
        try:
            _debit(db_url, grant, 0.1, policy)
            ok += 1
        except budget.BudgetError:
            pass
    results.put(ok)


def test_concurrent_processes_of_two_tenants_never_exceed_the_global_budget(
    db_url: str,
) -> None:
    policy = _policies()["health_records"]
    tenants = [_issue(db_url, policy, name, 5.0) for name in ("kangning", "huaxin")]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_pool_worker, args=(db_url, tenants[i % 2].id, 8, results))
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert sum(results.get(timeout=5) for _ in workers) == 10  # 10 × 0.1 = 1.0
    assert sum(_spent(db_url)) == 1_000_000
    assert list(_pools(db_url).values()) == [1_000_000]
    assert budget.ledger_problems(db_url) == []


def test_the_global_budget_survives_a_new_process_and_renews_each_period(db_url: str) -> None:
    policy = _policies()["health_records"]
    kangning = _issue(db_url, policy, "kangning", 5.0)
    huaxin = _issue(db_url, policy, "huaxin", 5.0)
    _debit(db_url, kangning, 0.7, policy)
    db.engine_for.cache_clear()
    db._sessionmaker.cache_clear()  # as a restarted service would: new engine, new pool
    with pytest.raises(budget.BudgetError, match=r"0\.3 ε remains"):
        _debit(db_url, huaxin, 0.5, policy)

    # Last period's exhausted account does not count against this one.
    with db.session_scope(db_url) as session:
        session.add(
            DpGlobalBudget(
                dataset="social_insurance", period="1999", spent_micro=1_000_000,
                created_at="1999-01-01T00:00:00Z", updated_at="1999-01-01T00:00:00Z",
            )
        )  # fmt: skip
    social = _policies()["social_insurance"]
    _debit(db_url, _issue(db_url, social, "kangning", 5.0), 0.25, social)
    assert _pools(db_url)[("social_insurance", budget.period_of("year"))] == 250_000


def test_a_debit_spends_from_the_accounts_read_with_its_grant_unless_the_period_turned(
    db_url: str,
) -> None:
    """A DP request reads its accounts with its grant; the debit then reads no more, but
    accounts read for a period that has ended since are not spent from."""
    policy = _policies()["social_insurance"]
    grant = _issue(db_url, policy, "kangning", 5.0)
    _debit(db_url, grant, 0.1, policy)  # creates this period's accounts
    period = budget.period_of("year")
    with db.session_scope(db_url) as session:
        known = budget.account_ids_in(session, grant, period)
        session.add(
            DpGlobalBudget(
                dataset="social_insurance", period="1999", spent_micro=0,
                created_at="1999-01-01T00:00:00Z", updated_at="1999-01-01T00:00:00Z",
            )
        )  # fmt: skip
        session.flush()
        old_pool = budget.account_ids_in(session, grant, "1999")[1]
    assert None not in known and old_pool is not None

    statements: list[str] = []
    engine = db.engine_for(db_url)

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    def debit(accounts: budget.Accounts) -> None:
        budget.debit(
            db_url, grant, policy=policy, username="alice", kind="query",
            cost_micro=100_000, request={"epsilon": 0.1}, accounts=accounts,
        )  # fmt: skip

    event.listen(engine, "before_cursor_execute", count)
    try:
        debit((period, *known))
        given = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        debit(("1999", known[0], old_pool))  # read before the year turned
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert given == [], given  # the debit itself reads nothing before it spends
    pools = _pools(db_url)
    assert pools[("social_insurance", "1999")] == 0
    assert pools[("social_insurance", period)] == 300_000


def test_periods_are_named_by_calendar_in_utc() -> None:
    moment = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    assert budget.period_of("year", moment) == "2026"
    assert budget.period_of("quarter", moment) == "2026-Q4"
    assert budget.period_of("month", moment) == "2026-11"
    assert budget.period_of("quarter", datetime(2027, 1, 1, tzinfo=UTC)) == "2027-Q1"


# ------------------------------------------------------------ settling debits


def test_a_debit_that_released_nothing_is_refunded_once_and_audited(
    db_url: str, health: DatasetPolicy
) -> None:
    grant = _grant(db_url, health, 1.0)
    kept = _debit(db_url, grant, 0.2)
    budget.release(db_url, kept, {"rows": []}, username="alice")
    lost = _debit(db_url, grant, 0.3)
    assert _spent(db_url) == [500_000] and budget.ledger_problems(db_url) == []

    assert budget.settle(db_url, lost, "engine crashed", username="alice") is True
    assert _spent(db_url) == [200_000]
    assert list(_pools(db_url).values()) == [200_000]
    assert budget.settle(db_url, lost, "again", username="alice") is False  # never twice
    assert _spent(db_url) == [200_000]
    row = budget.find_release(db_url, lost)
    assert row is not None and row.status == "refunded" and row.error == "engine crashed"
    with db.session_scope(db_url) as session:
        (event,) = audit.query(session, action="dp.refund", limit=10)
        assert audit.verify(session).ok
    assert event["target"] == f"dp_release:{lost}" and event["detail"]["refunded"] == 0.3
    # A settled release can no longer be released: its answer must not leave.
    with pytest.raises(budget.BudgetError, match="nothing is released"):
        budget.release(db_url, lost, {"rows": []}, username="alice")
    assert budget.ledger_problems(db_url) == []


def test_debits_left_by_a_crash_are_settled_at_start_up(db_url: str, health: DatasetPolicy) -> None:
    grant = _grant(db_url, health, 1.0)
    answered = _debit(db_url, grant, 0.1)
    budget.release(db_url, answered, {"rows": []}, username="alice")
    crashed = {_debit(db_url, grant, 0.2), _debit(db_url, grant, 0.3)}
    assert _spent(db_url) == [600_000]

    db.engine_for.cache_clear()
    db._sessionmaker.cache_clear()  # the service comes back as a new process
    assert set(budget.settle_interrupted(db_url)) == crashed
    assert budget.settle_interrupted(db_url) == []
    assert _spent(db_url) == [100_000]  # = the answered debit, nothing else
    assert budget.ledger_problems(db_url) == []
    with db.session_scope(db_url) as session:
        events = audit.query(session, action="dp.refund", limit=10)
    assert {e["target"] for e in events} == {f"dp_release:{i}" for i in crashed}
    assert {e["actor"] for e in events} == {"platform"}


def test_the_ledger_check_finds_a_spent_figure_that_does_not_add_up(
    db_url: str, health: DatasetPolicy
) -> None:
    grant = _grant(db_url, health, 1.0)
    _debit(db_url, grant, 0.2)
    with db.session_scope(db_url) as session:
        session.execute(update(PrivacyBudget).values(spent_micro=PrivacyBudget.spent_micro + 1))
    (problem,) = budget.ledger_problems(db_url)
    assert problem.startswith("privacy_budgets ") and "0.200001 ε spent" in problem
