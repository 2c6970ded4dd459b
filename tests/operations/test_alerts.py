"""Alert rules: validated like policies; each shipped rule fires on a crafted audit
sequence and stays quiet on a normal one; alerts are audited, deduplicated, linked to
their records and posted to a webhook (a real local HTTP server)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness import BIN, REPO, Platform, cli_env, free_port
from shuyu_platform.core import audit, db
from shuyu_platform.core.db import stamp
from shuyu_platform.core.models import EgressRequest
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.operations import alerts
from shuyu_platform.operations.metrics import PlatformMetrics

RULES = alerts.load_rules(REPO / "policies" / "operations" / "alerts.yaml")
COUNT_RULES = [r for r in RULES.rules if isinstance(r, alerts.AuditCountRule)]


def only(
    rule: alerts.AuditCountRule | alerts.ReviewOverdueRule | alerts.MetricRule,
) -> alerts.AlertRules:
    return alerts.AlertRules(rules=[rule])


def _event(settings: Shuyu, rule: alerts.AuditCountRule, *, matching: bool) -> None:
    """One record that the rule counts (or, if not ``matching``, a near miss)."""
    action = rule.action + "query" if rule.action.endswith(".") else rule.action
    detail: dict[str, Any] = dict(rule.detail)
    detail.update(rule.detail_contains)
    outcome = rule.outcome or "ok"
    if not matching:
        if rule.outcome:
            outcome = "ok" if rule.outcome != "ok" else "error"
        elif detail:
            detail = {k: (not v if isinstance(v, bool) else "other") for k, v in detail.items()}
        else:
            action = action + "x"
    audit.append(
        settings.db_url, actor="mallory", action=action, target="t1", tenant="huaxin",
        outcome=outcome, detail=detail,
    )  # fmt: skip


@pytest.mark.parametrize("rule", COUNT_RULES, ids=lambda r: r.name)
def test_each_audit_rule_fires_on_its_sequence_and_not_on_a_normal_one(
    settings: Shuyu, rule: alerts.AuditCountRule
) -> None:
    rules = only(rule)
    if rule.soon_after:  # e.g. the grant issued shortly before
        audit.append(
            settings.db_url, actor="op", action=rule.soon_after.action, tenant="huaxin",
            target="t1",
        )  # fmt: skip
    for _ in range(3):
        _event(settings, rule, matching=False)
    for _ in range(rule.threshold - 1):
        _event(settings, rule, matching=True)
    audit.append(settings.db_url, actor="alice", action="catalogue.read", target="all")
    assert alerts.evaluate(settings, rules) == []  # a normal day: below the threshold

    _event(settings, rule, matching=True)
    (raised,) = alerts.evaluate(settings, rules)
    assert raised["rule"] == rule.name and len(raised["events"]) == rule.threshold
    with db.session_scope(settings.db_url) as session:
        behind = [audit.query(session, after_seq=s - 1, limit=1)[0] for s in raised["events"]]
        recorded = audit.query(session, action="alert.raise")[-1]
    assert all(e["actor"] == "mallory" for e in behind)
    assert recorded["detail"]["events"] == raised["events"]
    assert recorded["target"] == f"alert:{raised['id']}"
    assert alerts.evaluate(settings, rules) == []  # the same records raise it once


def test_an_exhausted_budget_long_after_its_grant_raises_nothing(settings: Shuyu) -> None:
    rule = next(r for r in COUNT_RULES if r.soon_after)
    for _ in range(rule.threshold):
        _event(settings, rule, matching=True)  # no grant issued within the last day
    assert alerts.evaluate(settings, only(rule)) == []


def test_events_outside_the_window_do_not_count(settings: Shuyu) -> None:
    rule = next(r for r in COUNT_RULES if r.name == "failed_login_burst")
    for _ in range(rule.threshold):
        _event(settings, rule, matching=True)
    later = datetime.now(UTC) + timedelta(minutes=rule.window_minutes + 1)
    assert alerts.evaluate(settings, only(rule), now=later) == []


def test_an_overdue_review_fires_once_and_a_fresh_one_does_not(settings: Shuyu) -> None:
    rule = next(r for r in RULES.rules if r.name == "export_review_overdue")
    now = datetime.now(UTC)
    with db.session_scope(settings.db_url) as session:
        session.add(
            EgressRequest(
                id="a" * 32, tenant="huaxin", username="bob", kind="cells", title="t",
                purpose="p", source="n.ipynb", status="submitted", snapshot_sha256="0" * 64,
                snapshot_bytes=1, created_at=stamp(now), updated_at=stamp(now),
            )
        )  # fmt: skip
        audit.record(session, actor="bob", action="egress.submit", target=f"egress:{'a' * 32}")
    assert alerts.evaluate(settings, only(rule), now=now + timedelta(hours=1)) == []
    (raised,) = alerts.evaluate(settings, only(rule), now=now + timedelta(hours=49))
    assert raised["subject"] == "a" * 32 and "waiting 49 h" in raised["summary"]
    assert alerts.evaluate(settings, only(rule), now=now + timedelta(hours=50)) == []


def test_the_metric_rule_fires_on_a_failed_verification(settings: Shuyu) -> None:
    rule = next(r for r in RULES.rules if isinstance(r, alerts.MetricRule))
    metrics = PlatformMetrics(settings)
    assert alerts.evaluate(settings, only(rule), metrics) == []  # nothing verified yet
    metrics.verified(True)
    assert alerts.evaluate(settings, only(rule), metrics) == []
    metrics.verified(False)
    (raised,) = alerts.evaluate(settings, only(rule), metrics)
    assert raised["severity"] == "critical" and "shuyu_audit_verify_ok = 0" in raised["summary"]
    assert alerts.evaluate(settings, only(rule), metrics) == []  # not again at once
    later = datetime.now(UTC) + timedelta(minutes=rule.repeat_minutes + 1)
    assert len(alerts.evaluate(settings, only(rule), metrics, now=later)) == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rules: []", "rules: List should have at least 1 item"),
        ("rules: [{name: x1, description: d, kind: audit_count, action: a.b, threshold: 0, "
         "window_minutes: 5}]", "threshold: Input should be greater than or equal to 1"),
        ("rules: [{name: x1, description: d, kind: metric, metric: shuyu_a}]", "exactly one of"),
        ("rules: [{name: x1, description: d, kind: sms}]", "does not match any of the expected"),
        ("rules: [{name: Bad, description: d, kind: review_overdue, queue: egress, hours: 1}]",
         "name: String should match pattern"),
        ("rules: [{name: x1, description: d, kind: review_overdue, queue: egress, hours: 1, "
         "colour: red}]", "colour: Extra inputs are not permitted"),
        ("rules: [", "while parsing"),
    ],
)  # fmt: skip
def test_invalid_rule_files_are_refused_saying_where(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    with pytest.raises(alerts.AlertRulesError) as refused:
        alerts.load_rules(path)
    assert says in str(refused.value) and str(path) in str(refused.value)


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = HTTPServer(("127.0.0.1", free_port()), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()


def test_alerts_are_posted_to_the_webhook_and_failures_audited(
    settings: Shuyu, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    rule = next(r for r in COUNT_RULES if r.name == "audit_verification_failed")
    settings.alert_webhook_url = url
    _event(settings, rule, matching=True)
    (raised,) = alerts.evaluate(settings, only(rule))
    assert raised["webhook"] == "sent"
    assert received[0]["source"] == "shuyu" and received[0]["alert"]["id"] == raised["id"]
    assert alerts.recent(settings)[0]["webhook"] == "sent"

    settings.alert_webhook_url = f"http://127.0.0.1:{free_port()}/nobody"
    _event(settings, rule, matching=True)
    (failed,) = alerts.evaluate(settings, only(rule))
    assert failed["webhook"] == "failed"
    with db.session_scope(settings.db_url) as session:
        problem = audit.query(session, action="alert.webhook")[-1]
    assert problem["outcome"] == "error" and problem["target"] == f"alert:{failed['id']}"


@pytest.mark.hub
def test_the_alerts_page_is_for_auditors_and_administrators_only(platform: Platform) -> None:
    assert platform.service_get("audrey", "alerts").status_code == 200
    assert platform.service_get("ada", "api/alerts").status_code == 200
    refused = platform.service_get("alice", "api/alerts")
    assert refused.status_code == 403 and "administrator or auditor" in refused.json()["message"]


def test_the_check_commands_name_the_problem_and_pass_the_shipped_files(
    settings: Shuyu, tmp_path: Path
) -> None:
    bad = tmp_path / "alerts.yaml"
    bad.write_text("rules: [{name: x1, description: d, kind: sms}]")
    refused = subprocess.run(
        [str(BIN / "shuyu"), "alerts", "check", "--file", str(bad)],
        env=cli_env(settings), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "rules.0" in refused.stderr
    passed = subprocess.run(
        [str(BIN / "shuyu"), "fees", "check"],
        env=cli_env(settings), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert passed.returncode == 0 and "OK, 8 priced items in CNY" in passed.stdout
