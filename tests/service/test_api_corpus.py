"""The cases that once made the live service answer 500, as plain regression tests.

Each is sent over real HTTP through the hub's proxy to the real platform service, as a
user whose role may call the endpoint (signed-in browser sessions): deep nesting, huge integers,
unhashable values where text is expected, lone surrogates in stored or audited text,
malformed egress cell outputs (which once left orphan snapshots in ``outbox/``),
and ``epsilon: NaN`` in an application. (A time-zone-aware timestamp in a DP filter,
once debited and then a 500, is tested with the DP API in ``tests/dp/test_api.py``.)
Every answer must be a JSON 4xx, with nothing written or spent. Also here: the OpenAPI
document as served, and a decision on a changed request.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests

from harness import Platform
from shuyu_platform.service import openapi

pytestmark = pytest.mark.hub

API = "/services/shuyu/api"
ZERO_ID = "0" * 32
CELLS: dict[str, Any] = {
    "kind": "cells",
    "notebook": "corpus.ipynb",
    "purpose": "回归测试",
    "cells": [
        {
            "index": 0,
            "source": "print(1)",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "涪城区 128\n"}],
        }
    ],
}
JOB: dict[str, Any] = {
    "entry": "a.py",
    "files": {"a.py": "cHJpbnQoMSk="},
    "outputs": ["out/*.csv"],
    "purpose": "回归测试",
}
APPLICATION: dict[str, Any] = {
    "scenario": "回归测试",
    "purpose": "p",
    "method": "m",
    "security_measures": "s",
    "nature": "commercial",
    "period_start": "2030-01-01",
    "period_end": "2030-06-01",
    "datasets": [{"dataset": "health_records", "epsilon": 1}],
}
QUERY: dict[str, Any] = {
    "dataset": "health_records",
    "epsilon": 0.01,
    "statistics": {"n": {"fn": "count"}},
}


Caller = tuple[requests.Session, dict[str, str]]


@pytest.fixture(scope="module")
def callers(platform: Platform) -> dict[str, Caller]:
    """A signed-in browser session of each role, with the xsrf header its writes need."""
    return {name: platform.service_session(name) for name in ("alice", "rita", "ada", "audrey")}


def call(
    platform: Platform, caller: Caller | None, method: str, path: str, body: Any = None
) -> requests.Response:
    """One request; ``body`` as raw bytes, or JSON-encoded if it is not bytes."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    session, xsrf = caller or (requests.Session(), {})
    headers = {"Content-Type": "application/json", **xsrf}
    return session.request(
        method, f"{platform.url}{API}/{path}", data=data, headers=headers, timeout=120
    )


def refused(response: requests.Response, status: int = 400) -> str:
    """Assert a JSON refusal with ``status``; its message."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and isinstance(body["message"], str) and body["message"]
    # A merchant reads every refusal Chinese first (the catalogue's text, or the status).
    assert re.match(r"[\u4e00-\u9fff]", body["message"]), body["message"]
    return str(body["message"])


def strict_json(response: requests.Response) -> Any:
    """The body as JSON proper: NaN or Infinity in it fail the test."""

    def constant(name: str) -> Any:
        raise AssertionError(f"{name} in a JSON answer")

    return json.loads(response.text, parse_constant=constant)


DEEP = b"[" * 30_000 + b"]" * 30_000
HUGE = b"1" + b"0" * 5000
#: (caller, path, body) of every JSON POST endpoint, with a well-shaped body.
POSTS: list[tuple[str, str, dict[str, Any]]] = [
    ("alice", "dp/query", QUERY),
    ("alice", "dp/models", {**QUERY, "model": "kmeans", "features": ["settlement_amount"]}),
    ("alice", "egress/blocked", {"route": "files", "reason": "r"}),
    ("alice", "egress/requests", CELLS),
    ("rita", f"egress/requests/{ZERO_ID}/decision", {"action": "approve"}),
    ("alice", f"egress/requests/{ZERO_ID}/resubmit", CELLS),
    ("alice", f"egress/requests/{ZERO_ID}/unpublish", {}),
    ("alice", "applications", APPLICATION),
    ("rita", f"applications/{ZERO_ID}/decision", {"action": "reject", "comment": "c"}),
    ("ada", "onboarding/registrations", {"org_name": "x"}),
    ("ada", f"onboarding/registrations/{ZERO_ID}/decision", {"action": "reject"}),
    ("alice", "jobs", JOB),
    ("alice", f"jobs/{ZERO_ID}/cancel", {}),
]


@pytest.mark.parametrize(("who", "path", "_"), POSTS, ids=[p for _, p, _ in POSTS])
def test_deep_nesting_huge_integers_and_bad_unicode_are_refused_everywhere(
    platform: Platform, callers: dict[str, Caller], who: str, path: str, _: Any
) -> None:
    caller = callers[who]
    assert "nests deeper" in refused(call(platform, caller, "POST", path, DEEP))
    assert "too large" in refused(call(platform, caller, "POST", path, b'{"x": ' + HUGE + b"}"))
    assert "Unicode" in refused(call(platform, caller, "POST", path, b'{"x": "\\ud800"}'))
    assert "NaN" in refused(call(platform, caller, "POST", path, b'{"x": NaN}'))
    assert "valid JSON" in refused(call(platform, caller, "POST", path, b"{\xff"))


@pytest.mark.parametrize(
    ("who", "path", "body", "field"),
    [
        ("alice", "dp/query", {**QUERY, "dataset": ["health_records"]}, "dataset"),
        ("alice", "dp/query", {**QUERY, "statistics": {"n": {"fn": ["count"]}}}, "fn"),
        (
            "alice",
            "applications",
            {**APPLICATION, "datasets": [{"dataset": ["health_records"]}]},
            "datasets.0.dataset",
        ),
        ("alice", "applications", {**APPLICATION, "nature": {"a": 1}}, "nature"),
        ("alice", "egress/blocked", {"route": ["files"]}, "route"),
        ("alice", "egress/requests", {**CELLS, "purpose": {"a": 1}}, "purpose"),
        ("alice", "jobs", {**JOB, "entry": ["a.py"]}, "entry"),
        ("alice", "jobs", {**JOB, "outputs": [{"a": 1}]}, "outputs.0"),
        ("rita", f"applications/{ZERO_ID}/decision", {"action": ["reject"]}, "action"),
        ("ada", f"onboarding/registrations/{ZERO_ID}/decision", {"action": {}}, "action"),
    ],
)
def test_unhashable_values_where_text_is_expected_are_refused(
    platform: Platform, callers: dict[str, Caller], who: str, path: str, body: Any, field: str
) -> None:
    assert field in refused(call(platform, callers[who], "POST", path, body))


@pytest.mark.parametrize(
    ("who", "path", "body"),
    [
        ("alice", "applications", {**APPLICATION, "scenario": "\ud800"}),
        ("alice", "egress/requests", {**CELLS, "purpose": "x\udc00"}),
        ("alice", "egress/blocked", {"route": "\ud800"}),
        ("rita", f"applications/{ZERO_ID}/decision", {"action": "reject", "comment": "\ud800"}),
        ("alice", "dp/query", {**QUERY, "statistics": {"\ud800": {"fn": "count"}}}),
    ],
)
def test_lone_surrogates_are_refused_before_anything_is_audited(
    platform: Platform, callers: dict[str, Caller], who: str, path: str, body: Any
) -> None:
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as \ud800
    before = len(platform.audit_events())
    assert "Unicode" in refused(call(platform, callers[who], "POST", path, raw))
    new = platform.audit_events()[before:]
    json.dumps(new, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate


@pytest.mark.parametrize(
    "outputs",
    [
        [[1]],
        ["text"],
        [{"output_type": "display_data", "data": "x"}],
        [{"output_type": "display_data", "data": {"text/html": {"a": 1}}}],
        [{"output_type": "stream", "name": "stdout", "text": {"a": 1}}],
        [{"output_type": "error", "ename": 1, "evalue": "v", "traceback": []}],
        [{"output_type": "execute_result", "data": {"text/plain": "x"}, "execution_count": "1"}],
        [{"output_type": "unknown"}],
    ],
)
def test_malformed_cell_outputs_are_refused_and_leave_no_snapshot(
    platform: Platform, callers: dict[str, Caller], outputs: list[Any]
) -> None:
    outbox = platform.home / "outbox"
    before = sorted(outbox.iterdir())
    body = {**CELLS, "cells": [{"index": 0, "source": "x", "outputs": outputs}]}
    assert "outputs" in refused(call(platform, callers["alice"], "POST", "egress/requests", body))
    assert sorted(outbox.iterdir()) == before


def test_nan_epsilon_in_an_application_is_refused_and_the_list_stays_json(
    platform: Platform, callers: dict[str, Caller]
) -> None:
    raw = json.dumps(APPLICATION).replace('"epsilon": 1', '"epsilon": NaN').encode()
    assert "NaN" in refused(call(platform, callers["alice"], "POST", "applications", raw))
    for who in ("alice", "rita", "audrey"):
        listed = call(platform, callers[who], "GET", "applications")
        assert listed.status_code == 200
        strict_json(listed)


def _remaining(platform: Platform, caller: Caller) -> float:
    budgets = call(platform, caller, "GET", "dp/budget").json()["budgets"]
    return next(b["remaining_epsilon"] for b in budgets if b["dataset"] == "health_records")


def test_the_openapi_document_is_served_to_anyone(platform: Platform) -> None:
    served = requests.get(f"{platform.url}{API}/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(openapi.document()))


def test_unknown_api_paths_answer_json(platform: Platform, callers: dict[str, Caller]) -> None:
    refused(call(platform, callers["alice"], "GET", "no/such/thing"), 404)
    refused(call(platform, None, "POST", "egress/requests/not-an-id/decision", {}), 404)


def test_a_decision_names_the_snapshot_and_is_refused_if_the_request_changed(
    platform: Platform, callers: dict[str, Caller]
) -> None:
    filed = call(platform, callers["alice"], "POST", "egress/requests", CELLS)
    assert filed.status_code == 201, filed.text
    request = filed.json()
    seen = request["snapshot_sha256"]
    decision = f"egress/requests/{request['id']}/decision"
    missing = refused(call(platform, callers["rita"], "POST", decision, {"action": "approve"}))
    assert "snapshot_sha256" in missing
    wrong = {"action": "approve", "snapshot_sha256": "0" * 64}
    assert "changed since you saw it" in refused(
        call(platform, callers["rita"], "POST", decision, wrong), 409
    )
    back = {"action": "request_changes", "comment": "合并小单元格", "snapshot_sha256": seen}
    assert call(platform, callers["rita"], "POST", decision, back).json()["status"] == (
        "changes_requested"
    )
    changed = {k: v for k, v in CELLS.items() if k != "purpose"}
    changed["cells"] = [{**CELLS["cells"][0], "source": "print(2)"}]
    resubmitted = call(
        platform, callers["alice"], "POST", f"egress/requests/{request['id']}/resubmit", changed
    )
    assert resubmitted.status_code == 200, resubmitted.text
    assert resubmitted.json()["snapshot_sha256"] != seen
    stale = {"action": "approve", "snapshot_sha256": seen}
    assert "changed since you saw it" in refused(
        call(platform, callers["rita"], "POST", decision, stale), 409
    )
    current = call(platform, callers["rita"], "GET", f"egress/requests/{request['id']}").json()
    assert current["status"] == "resubmitted"
    actions = [
        e["action"] for e in platform.audit_events() if e["target"] == f"egress:{request['id']}"
    ]
    assert "egress.approve" not in actions
