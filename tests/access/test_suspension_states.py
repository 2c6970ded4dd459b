"""Suspension states of tenants and datasets: reasons required, transitions audited."""

from __future__ import annotations

import pytest

from shuyu_platform.access import suspension
from shuyu_platform.core import audit, db


@pytest.mark.parametrize("kind", ["tenant", "dataset"])
def test_suspend_and_resume_are_audited_with_their_reasons(db_url: str, kind: str) -> None:
    with db.session_scope(db_url) as session:
        assert suspension.is_suspended(session, "x_1", kind) is None  # no row: active
        suspension.suspend(session, "x_1", reason=" 排查 ", actor="operator:a", kind=kind)
    with db.session_scope(db_url) as session:
        row = suspension.is_suspended(session, "x_1", kind)
        assert row is not None and row.reason == "排查"
        assert suspension.suspended(session, kind) == {"x_1": "排查"}
        other = "dataset" if kind == "tenant" else "tenant"
        assert suspension.suspended(session, other) == {}
        suspension.resume(session, "x_1", actor="operator:b", reason="fixed", kind=kind)
    with db.session_scope(db_url) as session:
        assert suspension.is_suspended(session, "x_1", kind) is None
        events = audit.query(session, action=f"{kind}.")
    assert [e["action"] for e in events] == [f"{kind}.suspend", f"{kind}.resume"]
    assert events[0]["target"] == ("x_1" if kind == "tenant" else "dataset:x_1")
    assert events[0]["tenant"] == ("x_1" if kind == "tenant" else None)
    assert events[1]["detail"] == {"reason": "fixed"}


@pytest.mark.parametrize("kind", ["tenant", "dataset"])
def test_refusals_say_why_and_change_nothing(db_url: str, kind: str) -> None:
    with db.session_scope(db_url) as session:
        with pytest.raises(suspension.SuspensionError, match="needs a reason"):
            suspension.suspend(session, "x_1", reason="  ", actor="op", kind=kind)
        with pytest.raises(suspension.SuspensionError, match="is not suspended"):
            suspension.resume(session, "x_1", actor="op", kind=kind)
        suspension.suspend(session, "x_1", reason="first", actor="op", kind=kind)
    with (
        pytest.raises(suspension.SuspensionError, match="already suspended: first"),
        db.session_scope(db_url) as session,
    ):
        suspension.suspend(session, "x_1", reason="second", actor="op", kind=kind)
    with db.session_scope(db_url) as session:
        assert suspension.suspended(session, kind) == {"x_1": "first"}
        assert len(audit.query(session, action=f"{kind}.suspend")) == 1
