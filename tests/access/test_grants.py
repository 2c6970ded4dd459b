"""Grants: validation, replacement, revocation and expiry, each audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harness import REPO
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.data.policy import DatasetPolicy, load_policies


@pytest.fixture(scope="module")
def health() -> DatasetPolicy:
    return load_policies(REPO / "policies")["health_records"]


def _actions(url: str) -> list[str]:
    with db.session_scope(url) as session:
        return [e["action"] for e in audit.query(session, after_seq=0, limit=1000)]


def test_issue_defaults_to_every_visible_field_and_the_policy_budget(
    db_url: str, health: DatasetPolicy
) -> None:
    with db.session_scope(db_url) as session:
        grant = grants.issue(session, health, tenant="kangning", fields=None, actor="op")
        body = grants.as_dict(grant)
    assert body["fields"] == list(health.visible_fields())
    assert "id_card" not in body["fields"] and "name" not in body["fields"]
    assert body["budget_epsilon"] == health.privacy.default_budget_epsilon
    assert body["status"] == "active"
    assert _actions(db_url) == ["grant.issue"]


def test_fields_are_kept_in_policy_order(db_url: str, health: DatasetPolicy) -> None:
    with db.session_scope(db_url) as session:
        grant = grants.issue(
            session, health, tenant="kangning", fields=["district", "sex", "sex"], actor="op"
        )
        assert grants.fields_of(grant) == ["sex", "district"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fields": ["id_card"]}, "field 'id_card' (grade L4) is dropped from every view"),
        ({"fields": ["no_such"]}, "health_records has no field 'no_such'"),
        ({"fields": []}, "at least one field"),
        ({"row_filter": {"county": ["涪城区"]}}, "row filter on 'county'"),
        ({"row_filter": {"district": []}}, "non-empty list"),
        ({"budget_epsilon": -1.0}, "budget must be a number ≥ 0"),
        ({"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "is not in the future"),
        ({"tenant": "Not A Slug"}, "is not a tenant slug"),
    ],
)
def test_bad_grants_are_refused_and_nothing_is_written(
    db_url: str, health: DatasetPolicy, kwargs: dict, message: str
) -> None:
    arguments = {"tenant": "kangning", "fields": None, "actor": "op"} | kwargs
    with (
        pytest.raises(grants.GrantError, match=message.replace("(", r"\(").replace(")", r"\)")),
        db.session_scope(db_url) as session,
    ):
        grants.issue(session, health, **arguments)
    with db.session_scope(db_url) as session:
        assert grants.listing(session) == []
    assert _actions(db_url) == []


def test_a_new_grant_replaces_the_active_one(db_url: str, health: DatasetPolicy) -> None:
    with db.session_scope(db_url) as session:
        first = grants.issue(session, health, tenant="kangning", fields=["sex"], actor="op").id
    with db.session_scope(db_url) as session:
        second = grants.issue(session, health, tenant="kangning", fields=["district"], actor="op")
        assert [g.id for g in grants.active(session, tenant="kangning")] == [second.id]
        old = grants.as_dict(session.get(grants.Grant, first))
    assert old["status"] == "replaced"
    assert _actions(db_url) == ["grant.issue", "grant.replaced", "grant.issue"]


def test_grants_of_other_tenants_are_separate(db_url: str, health: DatasetPolicy) -> None:
    with db.session_scope(db_url) as session:
        grants.issue(session, health, tenant="kangning", fields=None, actor="op")
        grants.issue(session, health, tenant="huaxin", fields=["sex"], actor="op")
        assert len(grants.active(session)) == 2
        assert [g.tenant for g in grants.active(session, tenant="huaxin")] == ["huaxin"]


def test_revoke_needs_a_reason_and_happens_once(db_url: str, health: DatasetPolicy) -> None:
    with db.session_scope(db_url) as session:
        grant_id = grants.issue(session, health, tenant="kangning", fields=None, actor="op").id
    with (
        pytest.raises(grants.GrantError, match="needs a reason"),
        db.session_scope(db_url) as session,
    ):
        grants.revoke(session, grant_id, actor="op", reason=" ")
    with db.session_scope(db_url) as session:
        grants.revoke(session, grant_id, actor="op", reason="合同终止")
    with (
        pytest.raises(grants.GrantError, match="is revoked; it cannot become revoked"),
        db.session_scope(db_url) as session,
    ):
        grants.revoke(session, grant_id, actor="op", reason="again")
    with (
        pytest.raises(grants.GrantError, match="no grant 999"),
        db.session_scope(db_url) as session,
    ):
        grants.revoke(session, 999, actor="op", reason="x")
    with db.session_scope(db_url) as session:
        assert grants.active(session) == []
    assert _actions(db_url) == ["grant.issue", "grant.revoked"]


def test_expiry_with_a_frozen_clock(db_url: str, health: DatasetPolicy) -> None:
    soon = datetime.now(UTC) + timedelta(days=2)
    with db.session_scope(db_url) as session:
        grants.issue(session, health, tenant="kangning", fields=None, actor="op", expires_at=soon)
        later = grants.issue(session, health, tenant="huaxin", fields=None, actor="op")
        assert len(grants.active(session, now=soon - timedelta(seconds=1))) == 2
        assert [g.id for g in grants.active(session, now=soon)] == [later.id]
    with db.session_scope(db_url) as session:
        assert grants.expire_due(session, now=soon - timedelta(hours=1)) == []
        expired = grants.expire_due(session, now=soon + timedelta(hours=1))
        assert [g.tenant for g in expired] == ["kangning"]
    with db.session_scope(db_url) as session:
        events = audit.query(session, after_seq=0, limit=100, action="grant.expired")
        assert events[0]["actor"] == "system" and events[0]["tenant"] == "kangning"
        assert audit.verify(session).ok
