"""The DP API of a real platform: over HTTP, from a sandboxed kernel, across a restart.

The platform here is this module's own (hub, proxy, platform service, sandboxed
servers), because these tests spend budgets, replace grants and restart the service.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import opendp.prelude as dp
import pytest
import requests

from harness import Platform, launch_hub, running_platform, shuyu, wait_until_up
from kernel import Kernel

pytestmark = pytest.mark.hub

API = "/services/shuyu/api/dp"
COUNT = {"n": {"fn": "count"}}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("dp-platform"), rows=5000) as running:
        yield running


def token_of(platform: Platform, username: str) -> str:
    session = platform.login(username)
    created = platform.hub_api(session, "POST", f"users/{username}/tokens", json={"note": "dp"})
    assert created.status_code == 201, created.text
    return created.json()["token"]


@pytest.fixture(scope="module")
def tokens(platform: Platform) -> dict[str, str]:
    return {name: token_of(platform, name) for name in ("alice", "bob")}


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


def remaining(platform: Platform, token: str, dataset: str) -> float:
    body = call(platform, token, "GET", "budget").json()
    (account,) = [b for b in body["budgets"] if b["dataset"] == dataset]
    return account["remaining_epsilon"]


def test_a_query_is_answered_debited_registered_and_audited(
    platform: Platform, tokens: dict[str, str]
) -> None:
    before = remaining(platform, tokens["alice"], "health_records")
    response = call(
        platform,
        tokens["alice"],
        "POST",
        "query",
        json={
            "dataset": "health_records",
            "epsilon": 0.1,
            "group_by": ["sex"],
            "statistics": {"n": COUNT["n"], "avg": {"fn": "mean", "column": "settlement_amount"}},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["columns"] == [
        "sex",
        "n",
        "n_ci_low",
        "n_ci_high",
        "avg",
        "avg_ci_low",
        "avg_ci_high",
    ]
    assert [row["sex"] for row in body["rows"]] == ["M", "F"]
    assert body["remaining_epsilon"] == pytest.approx(before - 0.1)
    assert body["global_remaining_epsilon"] <= 0.9
    assert remaining(platform, tokens["alice"], "health_records") == pytest.approx(before - 0.1)
    (event,) = [
        e
        for e in platform.audit_events("dp.query", actor="alice")
        if e["detail"].get("release") == body["release"]
    ]
    assert event["detail"]["epsilon"] == 0.1 and event["tenant"] == "kangning"
    assert event["detail"]["global_remaining"] <= 0.9
    released = [
        e
        for e in platform.audit_events("dp.release")
        if e["target"] == f"dp_release:{body['release']}"
    ]
    assert released[0]["detail"]["sha256"] == body["sha256"]
    again = call(platform, tokens["alice"], "GET", f"releases/{body['release']}").json()
    assert again["sha256"] == body["sha256"] and again["answer"]["rows"] == body["rows"]
    # Another tenant cannot read it.
    assert call(platform, tokens["bob"], "GET", f"releases/{body['release']}").status_code == 404


def test_a_preview_spends_nothing(platform: Platform, tokens: dict[str, str]) -> None:
    before = remaining(platform, tokens["alice"], "health_records")
    response = call(
        platform,
        tokens["alice"],
        "POST",
        "query",
        json={"dataset": "health_records", "epsilon": 0.25, "statistics": COUNT, "dry_run": True},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True and body["epsilon"] == 0.25
    # Integer Laplace of scale 1/ε = 4: OpenDP's own 95% accuracy for it.
    expected = dp.discrete_laplacian_scale_to_accuracy(4.0, 0.05)
    assert body["estimate"]["statistics"]["n"]["ci_half_width"] == pytest.approx(expected)
    assert remaining(platform, tokens["alice"], "health_records") == before
    assert 0 < body["global_remaining_epsilon"] <= 1.0  # what every tenant together has left
    assert platform.audit_events("dp.preview", actor="alice")


@pytest.mark.parametrize(
    ("user", "body", "status", "message"),
    [
        ("alice", b"{not json", 400, "not valid JSON"),
        ("alice", {"dataset": "no_such", "statistics": COUNT}, 404, "no dataset 'no_such'"),
        (
            "alice",
            {"dataset": "health_records", "statistics": {"s": {"fn": "sum", "column": "wage"}}},
            400,
            "has no column 'wage'",
        ),
        (
            "bob",
            {
                "dataset": "health_records",
                "statistics": {"s": {"fn": "sum", "column": "settlement_amount"}},
            },
            403,
            "not in your grant",
        ),
        (
            "alice",
            {"dataset": "health_records", "group_by": ["dosage_mg"], "statistics": COUNT},
            400,
            "no public key set",
        ),
        (
            "alice",
            {"dataset": "health_records", "statistics": {"s": {"fn": "sum", "column": "district"}}},
            400,
            "not a number",
        ),
        (
            "alice",
            {"dataset": "health_records", "epsilon": 0, "statistics": COUNT},
            400,
            "greater than 0",
        ),
        (
            "alice",
            {"dataset": "health_records", "epsilon": 5, "statistics": COUNT},
            400,
            "per-query cap",
        ),
        (
            "alice",
            {"dataset": "enterprise_credit", "statistics": COUNT},
            403,
            "no active grant of enterprise_credit",
        ),
        (
            "alice",
            {
                "dataset": "health_records",
                "filters": [{"column": "person_id", "op": "==", "value": "P-0000001"}],
                "statistics": COUNT,
            },
            403,
            "may not filter or group by 'person_id': it is the privacy unit",
        ),
        (
            "alice",
            {
                "dataset": "health_records",
                "filters": [
                    {"column": "sex", "op": "==", "value": "F"},
                    {"column": "district", "op": "==", "value": "涪城区"},
                    {"column": "birth_date", "op": "==", "value": "1980-03-12"},
                ],
                "statistics": COUNT,
            },
            403,
            "'birth_date': the policy does not list it as filterable",
        ),
        (
            "alice",
            {
                "dataset": "health_records",
                "filters": [{"column": "settlement_amount", "op": "==", "value": 12345.67}],
                "statistics": COUNT,
            },
            403,
            "may only be compared with <, <=, > or >=",
        ),
    ],
)
def test_bad_requests_are_refused_audited_and_cost_nothing(
    platform: Platform, tokens: dict[str, str], user: str, body: Any, status: int, message: str
) -> None:
    dataset = "health_records"
    before = remaining(platform, tokens[user], dataset)
    data = body if isinstance(body, bytes) else json.dumps(body)
    response = call(platform, tokens[user], "POST", "query", data=data)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]
    assert remaining(platform, tokens[user], dataset) == before
    event = platform.audit_events("dp.query", actor=user)[-1]
    assert (event["action"], event["outcome"]) == ("dp.query", "denied")
    assert event["detail"]["cost_epsilon"] == 0 and message in event["detail"]["reason"]


def test_only_merchants_have_a_budget(platform: Platform) -> None:
    reviewer = platform.login("rita")
    reviewer.get(f"{platform.url}/services/shuyu/", timeout=30)  # completes the service's OAuth
    refused = reviewer.get(f"{platform.url}{API}/budget", timeout=30)
    assert refused.status_code == 403 and "merchant role" in refused.json()["message"]
    assert platform.audit_events("access.denied", actor="rita")


def test_concurrent_queries_never_overspend(platform: Platform, tokens: dict[str, str]) -> None:
    shuyu(
        "grant", "add", "--tenant", "kangning", "--dataset", "social_insurance",
        "--budget", "1.0", "--scenario", "concurrency-test", "--no-build",
        env=platform.env,
    )  # fmt: skip
    body = {"dataset": "social_insurance", "epsilon": 0.1, "statistics": COUNT}

    def ask(_: int) -> requests.Response:
        return call(platform, tokens["alice"], "POST", "query", json=body)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(ask, range(30)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 10 and codes.count(409) == 20, codes
    refusal = next(r for r in responses if r.status_code == 409).json()
    assert "1 of 1 ε spent, 0 ε remains" in refusal["message"]
    assert refusal["remaining_epsilon"] == 0
    assert remaining(platform, tokens["alice"], "social_insurance") == 0


def test_two_tenants_together_cannot_exceed_a_datasets_global_budget(
    platform: Platform, tokens: dict[str, str]
) -> None:
    """Each tenant holds 1 ε of enterprise_credit; the policy lets everyone together
    spend 1 ε a year, so pooling two grants answers 4 queries of 0.25 ε, not 8."""
    for tenant in ("kangning", "huaxin"):
        shuyu(
            "grant", "add", "--tenant", tenant, "--dataset", "enterprise_credit",
            "--budget", "1.0", "--scenario", "pool-test", "--no-build",
            env=platform.env,
        )  # fmt: skip
    body = {"dataset": "enterprise_credit", "epsilon": 0.25, "statistics": COUNT}

    def ask(user: str) -> requests.Response:
        return call(platform, tokens[user], "POST", "query", json=body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(ask, ["alice", "bob"] * 8))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 4 and codes.count(409) == 12, codes
    messages = [r.json()["message"] for r in responses if r.status_code == 409]
    assert any(
        "the global privacy budget of enterprise_credit" in m
        and "all tenants together have spent 1 of 1 ε" in m
        for m in messages
    ), messages
    spent = [1 - remaining(platform, tokens[user], "enterprise_credit") for user in tokens]
    assert sum(spent) == pytest.approx(1.0)
    budgets = call(platform, tokens["bob"], "GET", "budget").json()["budgets"]
    (pooled,) = [b["global"] for b in budgets if b["dataset"] == "enterprise_credit"]
    assert pooled["remaining_epsilon"] == 0 and pooled["budget_epsilon"] == 1.0


def test_bins_whose_edges_print_alike_are_answered_once_each(
    platform: Platform, tokens: dict[str, str]
) -> None:
    """The attack: 101 bin edges 1e-7 apart, which 6 significant digits print alike,
    so that the bins share a label and the engine answers that label once per bin, each
    time with fresh noise on the same rows: ε spent about 100 times over for one debit."""
    shuyu(
        "grant", "add", "--tenant", "kangning", "--dataset", "bus_ridership",
        "--budget", "1.0", "--scenario", "bins-test", "--no-build",
        env=platform.env,
    )  # fmt: skip
    edges = [10 + i * 1e-7 for i in range(101)]
    body = {
        "dataset": "bus_ridership",
        "epsilon": 0.1,
        "group_by": [{"column": "boardings", "bins": edges}],
        "statistics": COUNT,
    }
    response = call(platform, tokens["alice"], "POST", "query", json=body)
    assert response.status_code == 200, response.text
    labels = [row["boardings_bin"] for row in response.json()["rows"]]
    assert len(labels) == len(edges) + 1 == len(set(labels))
    assert labels[:2] == ["<10", "[10, 10.0000001)"]


def test_a_time_with_a_zone_is_refused_before_any_debit(
    platform: Platform, tokens: dict[str, str]
) -> None:
    """It used to pass the preview, be debited, then fail with a 500."""
    shuyu(
        "grant", "add", "--tenant", "huaxin", "--dataset", "bus_ridership",
        "--budget", "1.0", "--scenario", "tz-test", "--no-build",
        env=platform.env,
    )  # fmt: skip
    body = {
        "dataset": "bus_ridership",
        "epsilon": 0.1,
        "filters": [{"column": "service_date", "op": ">=", "value": "2024-05-01T00:00+08:00"}],
        "statistics": COUNT,
    }
    for dry_run in (True, False):
        refused = call(platform, tokens["bob"], "POST", "query", json={**body, "dry_run": dry_run})
        assert refused.status_code == 400, refused.text
        assert "carries a time zone" in refused.json()["message"]
    assert remaining(platform, tokens["bob"], "bus_ridership") == 1.0
    body["filters"][0]["value"] = "2024-05-01"
    answered = call(platform, tokens["bob"], "POST", "query", json=body)
    assert answered.status_code == 200, answered.text
    assert remaining(platform, tokens["bob"], "bus_ridership") == pytest.approx(0.9)


def test_the_kernel_client_queries_and_sees_refusals(platform: Platform) -> None:
    session = platform.login("bob")
    platform.start_server(session, "bob")
    kernel = Kernel(platform.url, session, "bob")
    try:
        out = kernel.run(
            textwrap.dedent(
                """
                import json
                from shuyu import dp
                q = (dp.query("health_records", epsilon=0.25)
                     .filter(dp.col("sex") == "F")
                     .group_by("district")
                     .agg(patients=dp.count()))
                print(list(q.preview()["statistic"]))
                frame = q.run()
                columns = list(frame.columns)[:4]
                print(json.dumps([list(frame["district"]), columns, list(frame["patients"])]))
                print(frame.attrs["epsilon"], len(frame.attrs["sha256"]))
                print(dp.budget()[["dataset", "remaining_epsilon"]].to_dict("records"))
                try:
                    dp.query("health_records").agg(s=dp.sum("settlement_amount")).run()
                except dp.DpError as err:
                    print(type(err).__name__, err.status, err.message)
                """
            )
        )
        assert out.ok, out.error
        lines = out.stdout.strip().split("\n")
        assert lines[0] == "['patients']"
        # huaxin's grant covers two districts: the others are released as noisy zeros.
        districts, columns, patients = json.loads(lines[1])
        assert columns == ["district", "patients", "patients_ci_low", "patients_ci_high"]
        assert len(districts) == 9  # every public key, in policy order
        counts = dict(zip(districts, patients, strict=True))
        assert counts["涪城区"] > 100 and counts["游仙区"] > 100
        assert all(counts[d] < 40 for d in districts[2:]), counts  # noisy zeros (scale 4)
        assert lines[2] == "0.25 64"
        assert "'remaining_epsilon': 0.25" in lines[3]
        assert lines[4].startswith("DpError 403") and "not in your grant" in lines[4]
    finally:
        kernel.close()


def test_the_ledger_survives_a_platform_restart(platform: Platform, tokens: dict[str, str]) -> None:
    shuyu(
        "grant", "add", "--tenant", "kangning", "--dataset", "bus_ridership",
        "--budget", "0.3", "--scenario", "restart-test", "--no-build",
        env=platform.env,
    )  # fmt: skip
    body = {"dataset": "bus_ridership", "epsilon": 0.2, "statistics": COUNT}
    assert call(platform, tokens["alice"], "POST", "query", json=body).status_code == 200
    before = remaining(platform, tokens["alice"], "health_records")

    platform.stop()
    platform.proc, platform.log_path = launch_hub(platform.home, platform.env)
    wait_until_up(platform)

    assert remaining(platform, tokens["alice"], "health_records") == before
    assert remaining(platform, tokens["alice"], "bus_ridership") == pytest.approx(0.1)
    refused = call(platform, tokens["alice"], "POST", "query", json=body)
    assert refused.status_code == 409, refused.text
    assert "0.2 of 0.3 ε spent, 0.1 ε remains" in refused.json()["message"]


def test_models_are_fitted_on_raw_rows_and_debited(
    platform: Platform, tokens: dict[str, str]
) -> None:
    before = remaining(platform, tokens["alice"], "health_records")
    fitted = call(
        platform,
        tokens["alice"],
        "POST",
        "models",
        json={
            "dataset": "health_records",
            "model": "logistic_regression",
            "features": ["dosage_mg", "settlement_amount"],
            "label": "sex",
            "epsilon": 0.1,
        },
    )
    assert fitted.status_code == 200, fitted.text
    body = fitted.json()
    assert body["model"]["classes"] == ["M", "F"] and len(body["model"]["coef"][0]) == 2
    assert "rows" not in body and len(body["sha256"]) == 64
    assert remaining(platform, tokens["alice"], "health_records") == pytest.approx(before - 0.1)
    assert platform.audit_events("dp.model", actor="alice")[-1]["detail"]["epsilon"] == 0.1

    refused = call(
        platform,
        tokens["alice"],
        "POST",
        "models",
        json={"dataset": "health_records", "model": "random_forest", "features": ["dosage_mg"]},
    )
    # The declared model names the field and the models there are (never echoing input).
    message = refused.json()["message"]
    assert (
        refused.status_code == 400
        and message.startswith("请求有误：model:")
        and "kmeans" in message
    )
    assert remaining(platform, tokens["alice"], "health_records") == pytest.approx(before - 0.1)


def test_a_suspended_tenant_gets_no_answers(platform: Platform, tokens: dict[str, str]) -> None:
    body = {"dataset": "health_records", "epsilon": 0.1, "statistics": COUNT}
    shuyu("tenant", "suspend", "huaxin", "--reason", "数据泄露排查", env=platform.env)
    try:
        refused = call(platform, tokens["bob"], "POST", "query", json=body)
        assert refused.status_code == 403
        assert refused.json()["message"] == "无权操作：tenant huaxin is suspended: 数据泄露排查"
    finally:
        shuyu("tenant", "resume", "huaxin", env=platform.env)
    assert call(platform, tokens["bob"], "POST", "query", json=body).status_code == 200
