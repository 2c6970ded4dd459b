"""DP debits that settle, on a real platform: a failure after the debit is refunded, and
a query cut short by SIGKILL of the platform service is settled when it comes back.

The platform here is this module's own, with the staged engine of ``engines/`` (OpenDP's
engine that pauses or fails on a marker ``alpha``), because the service is killed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from harness import Platform, running_platform
from shuyu_platform.core.db import session_scope
from shuyu_platform.core.models import DpRelease
from shuyu_platform.dp import budget

pytestmark = pytest.mark.hub

ENGINES = Path(__file__).parent / "engines"
API = "/services/shuyu/api/dp"
PAUSE_ALPHA = 0.0321  # shuyu_test_engines.PAUSE_ALPHA: the engine sleeps before answering
FAIL_ALPHA = 0.0123  # shuyu_test_engines.FAIL_ALPHA: the engine raises after the debit
HOLD_ALPHA = 0.0456  # shuyu_test_engines.HOLD_ALPHA: held while HOLD_FILE exists
HOLD_FILE = "test-engine-hold"  # shuyu_test_engines.HOLD_FILE, in the state root


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    path = os.pathsep.join(p for p in (str(ENGINES), os.environ.get("PYTHONPATH", "")) if p)
    with running_platform(
        tmp_path_factory.mktemp("dp-crash"),
        SHUYU_DP_ENGINE="shuyu_test_engines:StagedEngine",
        PYTHONPATH=path,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def token(platform: Platform) -> str:
    session = platform.login("alice")
    created = platform.hub_api(session, "POST", "users/alice/tokens", json={"note": "crash"})
    assert created.status_code == 201, created.text
    return str(created.json()["token"])


def call(
    platform: Platform, token: str, method: str, path: str, **kwargs: Any
) -> requests.Response:
    return requests.request(
        method,
        f"{platform.url}{API}/{path}",
        headers={"Authorization": f"token {token}"},
        timeout=120,
        **kwargs,
    )


def remaining(platform: Platform, token: str) -> float:
    body = call(platform, token, "GET", "budget").json()
    (account,) = [b for b in body["budgets"] if b["dataset"] == "health_records"]
    return float(account["remaining_epsilon"])


def releases(platform: Platform, status: str) -> list[str]:
    with session_scope(platform.db_url) as session:
        return list(session.scalars(select(DpRelease.id).where(DpRelease.status == status)))


def service_pid(platform: Platform) -> int:
    """The pid of this platform's service: its command line, and its state root."""
    home = f"SHUYU_HOME={platform.home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if b"shuyu_platform.service" in command and home in environ:
            return int(entry.name)
    raise AssertionError("the platform service is not running")


def body(alpha: float, epsilon: float = 0.1) -> dict[str, Any]:
    return {
        "dataset": "health_records",
        "epsilon": epsilon,
        "alpha": alpha,
        "statistics": {"n": {"fn": "count"}},
    }


def test_a_failure_after_the_debit_is_refunded_audited_and_names_no_data(
    platform: Platform, token: str
) -> None:
    before = remaining(platform, token)
    failed = call(platform, token, "POST", "query", json=body(FAIL_ALPHA))
    assert failed.status_code == 503, failed.text
    answer = failed.json()
    assert "its 0.1 ε was refunded" in answer["message"]
    assert "row 17" not in failed.text  # the engine's reason stays with the operator
    assert remaining(platform, token) == before
    row = call(platform, token, "GET", f"releases/{answer['release']}").json()
    assert row["status"] == "refunded" and "answer" not in row
    (event,) = [
        e
        for e in platform.audit_events("dp.refund")
        if e["target"] == f"dp_release:{answer['release']}"
    ]
    assert event["actor"] == "alice" and "staged failure" in event["detail"]["error"]
    assert budget.ledger_problems(platform.db_url) == []


def test_cheap_reads_are_answered_while_queries_hold_every_compute_thread(
    platform: Platform, token: str
) -> None:
    """Two debited queries hold both DP compute threads (``dp_compute_threads`` is 2)
    until the test lets them go; meanwhile the catalogue, the budget (showing both
    debits, exactly) and the egress list are answered. No timing threshold: the reads
    must come back while the queries provably cannot have finished."""
    hold = platform.home / HOLD_FILE
    hold.touch()
    before = remaining(platform, token)
    outcomes: dict[int, requests.Response] = {}

    def ask(index: int) -> None:
        outcomes[index] = call(platform, token, "POST", "query", json=body(HOLD_ALPHA, 0.01))

    asking = [threading.Thread(target=ask, args=(index,)) for index in range(2)]
    try:
        for thread in asking:
            thread.start()
        deadline = time.monotonic() + 60
        while len(releases(platform, "debited")) < 2:
            assert time.monotonic() < deadline, "the queries were never debited"
            time.sleep(0.05)
        for path in ("catalogue", "dp/budget", "egress/requests"):
            answer = requests.get(
                f"{platform.url}/services/shuyu/api/{path}",
                headers={"Authorization": f"token {token}"},
                timeout=60,
            )
            assert answer.status_code == 200, (path, answer.text)
        assert remaining(platform, token) == pytest.approx(before - 0.02)
        assert len(releases(platform, "debited")) == 2  # still held: no answer yet
        assert all(thread.is_alive() for thread in asking)
    finally:
        hold.unlink(missing_ok=True)
        for thread in asking:
            thread.join(150)
    assert [outcomes[i].status_code for i in range(2)] == [200, 200], outcomes
    assert releases(platform, "debited") == []
    assert remaining(platform, token) == pytest.approx(before - 0.02)
    assert budget.ledger_problems(platform.db_url) == []


def test_a_query_cut_short_by_sigkill_is_settled_when_the_service_restarts(
    platform: Platform, token: str
) -> None:
    answered = call(platform, token, "POST", "query", json=body(0.05))
    assert answered.status_code == 200, answered.text
    before = remaining(platform, token)
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["response"] = call(platform, token, "POST", "query", json=body(PAUSE_ALPHA))
        except requests.RequestException as err:
            outcome["error"] = err

    asking = threading.Thread(target=ask)
    asking.start()
    deadline = time.monotonic() + 60
    while not releases(platform, "debited"):
        assert time.monotonic() < deadline, "the query was never debited"
        time.sleep(0.05)
    (pending,) = releases(platform, "debited")
    assert remaining(platform, token) == pytest.approx(before - 0.1)  # spent, not answered

    old = service_pid(platform)
    os.kill(old, signal.SIGKILL)
    asking.join(130)
    response = outcome.get("response")
    assert response is None or response.status_code >= 500  # no answer left the service

    # The hub restarts its managed service; the new one settles what the old left.
    deadline = time.monotonic() + 90
    while True:
        try:
            if service_pid(platform) != old and remaining(platform, token) == before:
                break
        except (AssertionError, requests.RequestException, ValueError, KeyError):
            pass
        assert time.monotonic() < deadline, platform.log()[-4000:]
        time.sleep(0.5)
    assert releases(platform, "debited") == []
    row = call(platform, token, "GET", f"releases/{pending}").json()
    assert row["status"] == "refunded" and "interrupted" in row["error"]
    (event,) = [
        e for e in platform.audit_events("dp.refund") if e["target"] == f"dp_release:{pending}"
    ]
    assert event["actor"] == "platform" and event["detail"]["refunded"] == 0.1
    # Spent = the answered debits and nothing else, on the tenant's and the global account.
    assert budget.ledger_problems(platform.db_url) == []
    with session_scope(platform.db_url) as session:
        kept = session.scalars(
            select(DpRelease.epsilon_micro).where(DpRelease.status.in_(budget.KEPT))
        ).all()
    assert 0.5 - before == pytest.approx(sum(kept) / 1e6)
    assert "settled DP releases left debited by a crash" in platform.log()
