"""Scenario applications: every transition, deadlines on a frozen clock, deemed approval."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness import REPO, local_settings
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import Application
from shuyu_platform.core.roles import APPLICATIONS_REVIEW, APPLICATIONS_SOURCE_REVIEW
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.core.workdays import Calendar
from shuyu_platform.data.policy import load_policies
from shuyu_platform.workflow import applications
from shuyu_platform.workflow.applications import ApplicationError

POLICIES = load_policies(REPO / "policies")
HEALTH, SOCIAL = "市卫生健康委员会", "市人力资源和社会保障局"
#: Friday 20 November 2026, 10:00 in China.
FILED = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
BODY: dict[str, Any] = {
    "scenario": "智能核保",
    "purpose": "用就诊与参保记录为健康险核保定价",
    "method": "掩码视图上的探索与差分隐私统计",
    "security_measures": "沙箱内分析，结果经审核导出",
    "nature": "commercial",
    "period_start": "2026-12-01",
    "period_end": "2027-05-31",
    "datasets": [
        {"dataset": "health_records", "fields": ["sex", "district", "settlement_amount"]},
        {"dataset": "social_insurance", "epsilon": 0.4},
    ],
}
REVIEWER = {"actor": "rita", "actor_scopes": [APPLICATIONS_REVIEW]}
SOURCE = {
    "actor": "sam",
    "actor_scopes": [APPLICATIONS_SOURCE_REVIEW],
    "actor_departments": [HEALTH, SOCIAL],
}


@pytest.fixture
def settings(tmp_path: Path) -> Shuyu:
    return local_settings(
        tmp_path / "home",
        holidays=["2026-11-26"],  # a Thursday off
        extra_workdays=["2026-11-28"],  # a Saturday worked
    )


def _file(settings: Shuyu, body: dict[str, Any] | None = None) -> str:
    content = applications.parse(body or BODY, POLICIES, today=date(2026, 11, 20))
    with db.session_scope(settings.db_url) as session:
        row = applications.submit(
            session, content, tenant="kangning", applicant="alice",
            calendar=settings.calendar, days=settings.compliance_review_days, now=FILED,
        )  # fmt: skip
        return row.id


def _act(settings: Shuyu, app_id: str, action: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("now", FILED + timedelta(hours=1))
    with db.session_scope(settings.db_url) as session:
        row = session.get(Application, app_id)
        assert row is not None
        applications.decide(session, row, action, settings=settings, policies=POLICIES, **kwargs)
        return applications.as_dict(row, applications.decisions_of(session, app_id))


def _row(settings: Shuyu, app_id: str) -> dict[str, Any]:
    with db.session_scope(settings.db_url) as session:
        row = session.get(Application, app_id)
        assert row is not None
        return applications.as_dict(
            row, applications.decisions_of(session, app_id), now=FILED + timedelta(days=40)
        )


def _at(settings: Shuyu, status: str) -> str:
    app_id = _file(settings)
    path = {
        "compliance_review": [],
        "source_review": [("compliance_approve", REVIEWER)],
        "approved": [
            ("compliance_approve", REVIEWER),
            ("source_approve", {**SOURCE, "department": HEALTH}),
            ("source_approve", {**SOURCE, "department": SOCIAL}),
        ],
        "rejected": [("reject", {**REVIEWER, "comment": "no"})],
        "withdrawn": [("withdraw", {"actor": "alice"})],
    }[status]
    for action, who in path:
        _act(settings, app_id, action, **who)
    return app_id


def _who(status: str, action: str) -> dict[str, Any]:
    actor = applications.ACTORS[action]
    if actor == "applicant":
        return {"actor": "alice"}
    if actor == "platform":
        return {"actor": "platform", "comment": "deemed"}
    base = SOURCE if status == "source_review" else REVIEWER
    return {**base, "comment": "reason"}


ALLOWED = [(s, a) for s, actions in applications.TRANSITIONS.items() for a in actions]
FORBIDDEN = [
    (s, a)
    for s in applications.TRANSITIONS
    for a in applications.ACTORS
    if a not in applications.TRANSITIONS[s]
]


@pytest.mark.parametrize(("status", "action"), ALLOWED)
def test_every_allowed_transition_is_made_and_audited(
    settings: Shuyu, status: str, action: str
) -> None:
    app_id = _at(settings, status)
    after = _act(settings, app_id, action, **_who(status, action))
    expected = applications.TRANSITIONS[status][action]
    if action == "source_approve":
        expected = "source_review"  # one of two departments
    assert after["status"] == expected
    assert after["decisions"][-1]["action"] == action
    with db.session_scope(settings.db_url) as session:
        event = audit.query(session, action=f"application.{action}")[-1]
    assert event["target"] == f"application:{app_id}" and event["detail"]["to"] == expected


@pytest.mark.parametrize(("status", "action"), FORBIDDEN)
def test_every_forbidden_transition_is_refused_and_changes_nothing(
    settings: Shuyu, status: str, action: str
) -> None:
    app_id = _at(settings, status)
    before = _row(settings, app_id)
    with pytest.raises(ApplicationError, match="is not allowed") as caught:
        _act(settings, app_id, action, **_who(status, action))
    assert caught.value.status == 409
    assert _row(settings, app_id) == before


def test_approval_needs_every_department_and_issues_the_grants(settings: Shuyu) -> None:
    app_id = _at(settings, "source_review")
    one = _act(settings, app_id, "source_approve", **SOURCE, department=HEALTH)
    assert one["status"] == "source_review"
    with pytest.raises(ApplicationError, match="has approved already"):
        _act(settings, app_id, "source_approve", **SOURCE, department=HEALTH)
    done = _act(settings, app_id, "source_approve", **SOURCE)  # the one still pending
    assert done["status"] == "approved" and len(done["grant_ids"]) == 2
    assert [d["department"] for d in done["decisions"][-2:]] == [HEALTH, SOCIAL]
    with db.session_scope(settings.db_url) as session:
        issued = {g.dataset: g for g in grants.active(session, tenant="kangning")}
        health = issued["health_records"]
        assert grants.fields_of(health) == ["sex", "district", "settlement_amount"]
        assert issued["social_insurance"].budget_epsilon == 0.4
        assert issued["health_records"].budget_epsilon == 0.5  # the policy's default
        assert issued["health_records"].expires_at.startswith("2027-05-31T15:59:59")
        assert issued["health_records"].scenario == f"智能核保 ({app_id[:8]})"
        assert issued["health_records"].issued_by == "platform"


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ({"actor": "alice", "actor_scopes": [APPLICATIONS_REVIEW], "actor_tenant": "kangning"},
         "of their own tenant"),
        ({"actor": "bob", "actor_scopes": []}, "needs the reviewer role"),
        ({"actor": "sam", "actor_scopes": [APPLICATIONS_SOURCE_REVIEW]}, "needs the reviewer role"),
    ],
)  # fmt: skip
def test_only_a_compliance_reviewer_of_another_tenant_decides_the_first_stage(
    settings: Shuyu, who: dict[str, Any], message: str
) -> None:
    app_id = _at(settings, "compliance_review")
    with pytest.raises(ApplicationError, match=message) as caught:
        _act(settings, app_id, "compliance_approve", **who)
    assert caught.value.status == 403


def test_only_the_departments_concerned_decide_the_source_stage(settings: Shuyu) -> None:
    app_id = _at(settings, "source_review")
    transport = {**SOURCE, "actor_departments": ["市交通运输局"]}
    with pytest.raises(ApplicationError, match="department still pending"):
        _act(settings, app_id, "source_approve", **transport)
    with pytest.raises(ApplicationError, match="you do not speak for"):
        _act(settings, app_id, "reject", **transport, department=HEALTH, comment="x")
    with pytest.raises(ApplicationError, match="needs nothing from"):
        _act(settings, app_id, "source_approve", **SOURCE, department="市交通运输局")
    with pytest.raises(ApplicationError, match="needs the source-reviewer role"):
        _act(settings, app_id, "source_approve", **{**SOURCE, "actor_scopes": []})


def test_rejection_and_extension_need_reasons_and_withdrawal_only_the_applicant(
    settings: Shuyu,
) -> None:
    app_id = _at(settings, "compliance_review")
    for action in ("reject", "extend"):
        with pytest.raises(ApplicationError, match="needs a reason"):
            _act(settings, app_id, action, **REVIEWER)
    with pytest.raises(ApplicationError, match="only alice"):
        _act(settings, app_id, "withdraw", actor="carol")
    with pytest.raises(ApplicationError, match="only the platform"):
        _act(settings, app_id, "deem_approve", actor="rita", comment="x")


def test_deadlines_count_working_days_and_an_extension_is_allowed_once(settings: Shuyu) -> None:
    # Filed Friday 20 Nov. Working days: Mon 23, Tue 24, Wed 25, (Thu 26 a holiday),
    # Fri 27, Sat 28 (a make-up day): the fifth ends Saturday 28 Nov at 24:00 China time.
    app_id = _file(settings)
    assert _row(settings, app_id)["deadline"].startswith("2026-11-28T15:59:59")
    extended = _act(settings, app_id, "extend", **REVIEWER, comment="需补充材料")
    # Five more: Mon 30, Tue 1, Wed 2, Thu 3, Fri 4 December.
    assert extended["deadline"].startswith("2026-12-04T15:59:59") and extended["extended"]
    with pytest.raises(ApplicationError, match="extended once already"):
        _act(settings, app_id, "extend", **REVIEWER, comment="again")
    moved = _act(
        settings, app_id, "compliance_approve", **REVIEWER, now=datetime(2026, 12, 1, 2, tzinfo=UTC)
    )
    # The source stage gets 10 working days of its own, and its own extension.
    assert moved["deadline"].startswith("2026-12-15T15:59:59") and not moved["extended"]


def test_silence_past_the_deadline_is_a_deemed_approval_recorded_as_such(
    settings: Shuyu,
) -> None:
    app_id = _file(settings)
    deadline = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)  # 24:00 China time
    with db.session_scope(settings.db_url) as session:
        assert (
            applications.process_deadlines(
                session, settings, POLICIES, now=deadline - timedelta(seconds=2)
            )
            == []
        )
    with db.session_scope(settings.db_url) as session:
        changed = applications.process_deadlines(session, settings, POLICIES, now=deadline)
        assert [r.id for r in changed] == [app_id]
    row = _row(settings, app_id)
    assert row["status"] == "source_review"
    assert row["decisions"][-1]["actor"] == "platform"
    assert "deemed approved" in row["decisions"][-1]["comment"]

    later = deadline + timedelta(days=20)
    with db.session_scope(settings.db_url) as session:
        applications.process_deadlines(session, settings, POLICIES, now=later)
    row = _row(settings, app_id)
    assert row["status"] == "approved" and len(row["grant_ids"]) == 2
    assert HEALTH in row["decisions"][-1]["comment"]
    with db.session_scope(settings.db_url) as session:
        deemed = audit.query(session, action="application.deem_approve")
    assert [e["actor_kind"] for e in deemed] == ["system", "system"]


def test_without_deemed_approval_an_overdue_application_waits(tmp_path: Path) -> None:
    settings = local_settings(tmp_path / "strict", silence_approves=False)
    app_id = _file(settings)
    with db.session_scope(settings.db_url) as session:
        assert (
            applications.process_deadlines(
                session, settings, POLICIES, now=FILED + timedelta(days=60)
            )
            == []
        )
    row = _row(settings, app_id)
    assert row["status"] == "compliance_review" and row["overdue"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datasets": [{"dataset": "weather"}]}, "no dataset 'weather'"),
        ({"datasets": [{"dataset": "health_records", "fields": ["name"]}]}, "never leave"),
        ({"datasets": [{"dataset": "health_records", "fields": ["nope"]}]}, "has no field"),
        ({"datasets": [{"dataset": "health_records", "epsilon": 50}]}, "at most 0.5"),
        ({"datasets": [{"dataset": "health_records"}] * 2}, "listed twice"),
        ({"datasets": []}, "at least one"),
        ({"nature": "private"}, "nature must be one of"),
        ({"period_end": "2026-11-30"}, "must come after"),
        ({"period_start": "2026-01-01", "period_end": "2026-06-01"}, "has passed"),
        ({"period_end": "2028-12-31"}, "at most 366 days"),
        ({"period_start": "soon"}, "must be a date"),
        ({"purpose": "  "}, "purpose must be a non-empty text"),
    ],
)
def test_a_malformed_application_is_refused_with_a_clear_reason(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApplicationError, match=message):
        applications.parse({**BODY, **change}, POLICIES, today=date(2026, 11, 20))


def test_the_calendar_counts_make_up_days_and_skips_holidays() -> None:
    calendar = Calendar(
        holidays=frozenset({date(2026, 10, d) for d in range(1, 8)}),
        extra_workdays=frozenset({date(2026, 10, 10)}),
    )
    start = datetime(2026, 9, 30, 1, tzinfo=UTC)  # Wednesday 30 Sep, China time
    # Oct 1-7 off, Thu 8, Fri 9, Sat 10 (make-up), Mon 12, Tue 13.
    assert calendar.deadline(start, 5).astimezone(UTC).isoformat().startswith("2026-10-13T15:59")
    assert calendar.workdays_between(start, datetime(2026, 10, 13, 1, tzinfo=UTC)) == 5
    assert json.dumps(calendar.is_workday(date(2026, 10, 10))) == "true"
    with pytest.raises(ValueError, match="at least one working day"):
        calendar.deadline(start, 0)
