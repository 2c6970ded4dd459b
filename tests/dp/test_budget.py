"""The privacy-budget ledger on a real SQLite database: atomic, persistent, audited."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from harness import REPO
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import DpRelease, Grant, PrivacyBudget
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.dp import budget


@pytest.fixture(scope="module")
def health() -> DatasetPolicy:
    return load_policies(REPO / "policies")["health_records"]


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


def _debit(db_url: str, grant: Grant, epsilon: float) -> str:
    return budget.debit(
        db_url,
        grant,
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


def test_a_failed_answer_keeps_its_cost(db_url: str, health: DatasetPolicy) -> None:
    grant = _grant(db_url, health, 1.0)
    release_id = _debit(db_url, grant, 0.3)
    budget.fail(db_url, release_id, "engine crashed", username="alice")
    assert _spent(db_url) == [300_000]
    row = budget.find_release(db_url, release_id)
    assert row is not None and row.status == "failed" and row.error == "engine crashed"
