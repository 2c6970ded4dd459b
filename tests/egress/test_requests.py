"""Egress requests: frozen snapshots, the review state machine, its rules and its audit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shuyu_platform.core import audit, db
from shuyu_platform.core.models import EgressRequest
from shuyu_platform.egress import requests as egress

CELLS: dict[str, Any] = {
    "kind": "cells",
    "notebook": "analysis.ipynb",
    "cells": [
        {
            "index": 2,
            "source": "table",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "district n\n"}],
        }
    ],
}


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    folder = tmp_path / "outbox"
    folder.mkdir()
    return folder


DASHBOARD: dict[str, Any] = {
    "kind": "dashboard",
    "notebook": "show.ipynb",
    "document": {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []},
}


def filed(db_url: str, outbox: Path, status: str = "submitted", kind: str = "cells") -> str:
    """A request by alice of kangning, brought to ``status`` along allowed transitions."""
    path = {
        "draft": [],
        "submitted": ["submit"],
        "changes_requested": ["submit", "request_changes"],
        "resubmitted": ["submit", "request_changes", "resubmit"],
        "approved": ["submit", "approve"],
        "rejected": ["submit", "reject"],
        "released": ["submit", "approve", "release"],
        "unpublished": ["submit", "approve", "release", "unpublish"],
    }[status]
    with db.session_scope(db_url) as session:
        row = egress.create(
            session, outbox, tenant="kangning", username="alice", title="t", purpose="p",
            content=egress.parse_content(DASHBOARD if kind == "dashboard" else CELLS),
        )  # fmt: skip
        for action in path:
            actor = {"requester": "alice", "reviewer": "rita", "platform": "system"}[
                egress.ACTORS[action]
            ]
            egress.transition(session, row, action, actor=actor, comment="why")
        return row.id


def act(db_url: str, request_id: str, action: str, **kwargs: Any) -> EgressRequest:
    with db.session_scope(db_url) as session:
        row = session.get(EgressRequest, request_id)
        assert row is not None
        return egress.transition(session, row, action, **kwargs)


def _kind(status: str, action: str) -> str:
    """Only dashboards are unpublished: those transitions need a dashboard request."""
    return "dashboard" if "unpublish" in (status, action) or status == "unpublished" else "cells"


ALLOWED = [(s, a) for s, actions in egress.TRANSITIONS.items() for a in actions]
FORBIDDEN = [
    (s, a) for s in egress.TRANSITIONS for a in egress.ACTORS if a not in egress.TRANSITIONS[s]
]


@pytest.mark.parametrize(("status", "action"), ALLOWED)
def test_every_allowed_transition_is_made_and_audited(
    db_url: str, outbox: Path, status: str, action: str
) -> None:
    request_id = filed(db_url, outbox, status, _kind(status, action))
    actor = {"requester": "alice", "reviewer": "rita", "platform": "system"}[egress.ACTORS[action]]
    row = act(db_url, request_id, action, actor=actor, comment="a reason")
    assert row.status == egress.TRANSITIONS[status][action]
    with db.session_scope(db_url) as session:
        event = audit.query(session, action=f"egress.{action}", limit=100)[-1]
        decisions = egress.decisions_of(session, request_id)
        assert audit.verify(session).ok
    assert event["target"] == f"egress:{request_id}" and event["detail"]["to"] == row.status
    assert (decisions[-1].from_status, decisions[-1].to_status) == (status, row.status)


@pytest.mark.parametrize(("status", "action"), FORBIDDEN)
def test_every_other_transition_is_refused(
    db_url: str, outbox: Path, status: str, action: str
) -> None:
    request_id = filed(db_url, outbox, status, _kind(status, action))
    with pytest.raises(egress.EgressError) as refused:
        act(db_url, request_id, action, actor="rita", comment="x")
    assert refused.value.status == 409 and f"is {status}" in refused.value.message


def test_roles_and_reasons_are_enforced(db_url: str, outbox: Path) -> None:
    request_id = filed(db_url, outbox)
    with pytest.raises(egress.EgressError, match="of their own"):
        act(db_url, request_id, "approve", actor="alice")
    with pytest.raises(egress.EgressError, match="or their tenant's"):
        act(db_url, request_id, "approve", actor="carol", actor_tenant="kangning")
    with pytest.raises(egress.EgressError, match="needs a comment"):
        act(db_url, request_id, "reject", actor="rita", comment="  ")
    act(db_url, request_id, "request_changes", actor="rita", comment="round the numbers")
    with (
        pytest.raises(egress.EgressError, match="only alice"),
        db.session_scope(db_url) as session,
    ):
        row = session.get(EgressRequest, request_id)
        assert row is not None
        egress.resubmit(session, outbox, row, egress.parse_content(CELLS), actor="bob")


def test_two_reviewer_rule(db_url: str, outbox: Path) -> None:
    request_id = filed(db_url, outbox)
    first = act(db_url, request_id, "approve", actor="rita", approvals_required=2)
    assert first.status == "submitted"  # recorded, not yet approved
    with pytest.raises(egress.EgressError, match="already approved"):
        act(db_url, request_id, "approve", actor="rita", approvals_required=2)
    second = act(db_url, request_id, "approve", actor="ruth", approvals_required=2)
    assert second.status == "approved"


def test_the_snapshot_is_frozen_and_tampering_is_detected(db_url: str, outbox: Path) -> None:
    request_id = filed(db_url, outbox)
    path = egress.snapshot_path(outbox, request_id)
    assert oct(path.stat().st_mode & 0o777) == "0o400"
    with db.session_scope(db_url) as session:
        row = session.get(EgressRequest, request_id)
        assert row is not None
        assert egress.read_snapshot(outbox, row)["cells"][0]["index"] == 2
        os.chmod(path, 0o600)
        path.write_bytes(path.read_bytes().replace(b"district", b"DISTRICT"))
        with pytest.raises(egress.EgressError, match="changed after submission"):
            egress.verify_snapshot(outbox, row)
        path.unlink()
        with pytest.raises(egress.EgressError, match="missing from the outbox"):
            egress.verify_snapshot(outbox, row)


def test_resubmission_replaces_the_snapshot(db_url: str, outbox: Path) -> None:
    request_id = filed(db_url, outbox, "changes_requested")
    new = {"kind": "file", "path": "summary.csv", "data_b64": "ZGlzdHJpY3QsbgoK"}
    with db.session_scope(db_url) as session:
        row = session.get(EgressRequest, request_id)
        assert row is not None
        before = row.snapshot_sha256
        egress.resubmit(session, outbox, row, egress.parse_content(new), actor="alice")
        assert row.status == "resubmitted" and row.kind == "file" and row.source == "summary.csv"
        assert row.snapshot_sha256 != before
        egress.verify_snapshot(outbox, row)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "zip"}, "kind must be 'cells', 'file' or 'dashboard'"),
        ({"kind": "cells", "notebook": "a.ipynb", "cells": []}, "non-empty list"),
        (
            {"kind": "cells", "notebook": "a.ipynb", "cells": [{"index": 1, "outputs": []}]},
            "cell 1 has no outputs",
        ),
        ({"kind": "cells", "notebook": "", "cells": [{}]}, "notebook must be a non-empty text"),
        ({"kind": "file", "path": "a.csv", "data_b64": "%%%"}, "not valid base64"),
        ({"kind": "file", "path": "a.csv"}, "data_b64 must hold"),
    ],
)
def test_malformed_content_is_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(egress.EgressError, match=message):
        egress.parse_content(body)


def test_an_oversized_snapshot_is_refused_and_nothing_is_written(
    outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(egress, "MAX_SNAPSHOT_BYTES", 100)
    with pytest.raises(egress.EgressError) as refused:
        egress.freeze(outbox, "a" * 32, CELLS)
    assert refused.value.status == 413
    assert list(outbox.iterdir()) == []


def test_a_decision_on_a_snapshot_that_changed_since_is_refused(db_url: str, outbox: Path) -> None:
    request_id = filed(db_url, outbox, "changes_requested")
    new = {"kind": "file", "path": "summary.csv", "data_b64": "ZGlzdHJpY3QsbgoK"}
    with db.session_scope(db_url) as session:
        row = session.get(EgressRequest, request_id)
        assert row is not None
        seen = row.snapshot_sha256  # what the reviewer looked at before the resubmission
        egress.resubmit(session, outbox, row, egress.parse_content(new), actor="alice")
        with pytest.raises(egress.EgressError, match="changed since you saw it") as refused:
            egress.decide(
                session, outbox, row, "approve", actor="rita", actor_tenant=None,
                comment="", approvals_required=1, seen_sha256=seen,
            )  # fmt: skip
        assert refused.value.status == 409 and row.status == "resubmitted"
        egress.decide(
            session, outbox, row, "approve", actor="rita", actor_tenant=None,
            comment="", approvals_required=1, seen_sha256=row.snapshot_sha256,
        )  # fmt: skip
        assert row.status == "approved"


def test_an_untitled_request_is_named_by_its_heading_or_file_stem_not_its_file_name() -> None:
    document = {"cells": [
        {"cell_type": "code", "source": "x = 1"},
        {"cell_type": "markdown", "source": ["# 核保风险看板\n", "说明"]},
    ]}  # fmt: skip
    dashboard = {"kind": "dashboard", "notebook": "work/underwriting_dashboard.ipynb",
                 "document": document}  # fmt: skip
    assert egress.default_title(dashboard) == "核保风险看板"
    assert egress.default_title({**dashboard, "document": {"cells": []}}) == (
        "underwriting_dashboard"
    )
    assert egress.default_title({"kind": "file", "path": "out/rates.csv"}) == "rates"
