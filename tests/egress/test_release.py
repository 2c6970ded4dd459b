"""Release of approved requests: immutable, watermarked, with provenance; tampering refused."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from sqlalchemy import select

from harness import REPO
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import EgressRequest
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import load_policies
from shuyu_platform.dp import budget
from shuyu_platform.egress import disclosure, release
from shuyu_platform.egress import requests as egress

CSV = "区县,理赔率\n涪城区,0.2513\n游仙区,0.1877\n".encode()


def _file(path: str = "out/rates.csv", data: bytes = CSV) -> dict:
    return egress.parse_content(
        {"kind": "file", "path": path, "data_b64": base64.b64encode(data).decode()}
    )


def _approved(settings: Shuyu, content: dict | None = None, checks: dict | None = None) -> str:
    """A request by alice of kangning, checked, submitted and approved by rita."""
    content = content or _file()
    with db.session_scope(settings.db_url) as session:
        row = egress.create(
            session, settings.zone("outbox"), tenant="kangning", username="alice",
            title="理赔率", purpose="产品定价", content=content,
        )  # fmt: skip
        report = egress.run_checks(content, checks or disclosure.Context())
        egress.record_checks(session, row, report)
        egress.transition(session, row, "submit", actor="alice")
        egress.decide(
            session, settings.zone("outbox"), row, "approve", actor="rita",
            actor_tenant=None, comment="ok", approvals_required=1,
            seen_sha256=row.snapshot_sha256,
        )  # fmt: skip
        return row.id


def _row(settings: Shuyu, request_id: str) -> EgressRequest:
    with db.session_scope(settings.db_url) as session:
        row = session.get(EgressRequest, request_id)
        assert row is not None
        session.expunge(row)
        return row


def test_an_approved_file_is_released_read_only_watermarked_with_provenance(
    settings: Shuyu,
) -> None:
    request_id = _approved(settings)
    assert release.release_pending(settings) == [request_id]

    row = _row(settings, request_id)
    assert row.status == "released"
    manifest = release.manifest_of(row)
    assert [f["name"] for f in manifest["files"]] == ["rates.csv"]
    folder = release.folder(settings.zone("released"), request_id)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    # Read as Excel does: a UTF-8 byte-order mark first means UTF-8 (without one, Excel
    # on a Chinese Windows reads GBK and garbles every Chinese word).
    raw = (folder / "rates.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    released = raw[3:].decode("utf-8").splitlines()
    assert released[0] == "区县,理赔率,shuyu_release"
    assert released[1] == f"涪城区,0.2513,{request_id}"

    record = json.loads((folder / release.PROVENANCE).read_text())
    assert record["request"]["id"] == request_id
    assert record["request"]["snapshot_sha256"] == row.snapshot_sha256
    assert record["reviewers"] == [
        {"reviewer": "rita", "action": "approve", "at": record["approved_at"], "comment": "ok"}
    ]
    assert record["files"] == manifest["files"]

    path, entry = release.open_released(settings, row, "rates.csv")
    assert entry["sha256"] == manifest["files"][0]["sha256"]
    with db.session_scope(settings.db_url) as session:
        events = audit.query(session, action="egress.", limit=1000)
    actions = [e["action"] for e in events if e["target"] == f"egress:{request_id}"]
    assert actions[-2:] == ["egress.release", "egress.released"]
    assert events[-1]["actor"] == "platform" and events[-1]["actor_kind"] == "system"


def test_a_changed_outbox_snapshot_is_never_released(settings: Shuyu) -> None:
    request_id = _approved(settings)
    snapshot = egress.snapshot_path(settings.zone("outbox"), request_id)
    os.chmod(snapshot, 0o600)
    frozen = json.loads(snapshot.read_text())
    frozen["data_b64"] = base64.b64encode(CSV.replace(b"0.2513", b"0.9999")).decode()
    snapshot.write_text(json.dumps(frozen))

    assert release.release_pending(settings) == []
    assert _row(settings, request_id).status == "approved"
    assert not release.folder(settings.zone("released"), request_id).exists()
    with db.session_scope(settings.db_url) as session:
        failed = audit.query(session, action="egress.release_failed")
    assert failed and "SHA-256 mismatch" in failed[-1]["detail"]["error"]


def test_a_changed_released_file_is_not_served(settings: Shuyu) -> None:
    request_id = _approved(settings)
    release.release_pending(settings)
    path = release.folder(settings.zone("released"), request_id) / "rates.csv"
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o644)
    path.write_text("区县,理赔率\n涪城区,0.0001\n")
    with pytest.raises(release.ReleaseError, match="changed on disk") as caught:
        release.open_released(settings, _row(settings, request_id), "rates.csv")
    assert caught.value.status == 409


def test_only_listed_files_of_released_requests_are_served(settings: Shuyu) -> None:
    request_id = _approved(settings)
    with pytest.raises(release.ReleaseError, match="not released"):
        release.open_released(settings, _row(settings, request_id), "rates.csv")
    release.release_pending(settings)
    row = _row(settings, request_id)
    for name in ("../outbox/x.json", "other.csv", ""):
        with pytest.raises(release.ReleaseError, match="has no file"):
            release.open_released(settings, row, name)
    release.open_released(settings, row, release.PROVENANCE)


def test_a_release_folder_left_by_a_failed_commit_is_adopted_not_replaced(
    settings: Shuyu,
) -> None:
    request_id = _approved(settings)
    with pytest.raises(RuntimeError), db.session_scope(settings.db_url) as session:
        row = session.get(EgressRequest, request_id)
        assert row is not None
        release.release(settings, session, row)
        raise RuntimeError("the commit never happens")
    folder = release.folder(settings.zone("released"), request_id)
    assert folder.is_dir() and _row(settings, request_id).status == "approved"
    first = (folder / "rates.csv").read_bytes()

    assert release.release_pending(settings) == [request_id]
    assert (folder / "rates.csv").read_bytes() == first
    release.open_released(settings, _row(settings, request_id), "rates.csv")


def test_provenance_names_the_dp_queries_whose_numbers_are_released(settings: Shuyu) -> None:
    policies = load_policies(REPO / "policies")
    with db.session_scope(settings.db_url) as session:
        grant = grants.issue(
            session, policies["health_records"], tenant="kangning", fields=None, actor="op"
        )
        session.expunge(grant)
    release_id = budget.debit(
        settings.db_url, grant, policy=policies["health_records"], username="alice",
        kind="query", cost_micro=500_000, request={"epsilon": 0.5},
    )  # fmt: skip
    answer = {
        "rows": [{"district": "涪城区", "count": 1204.37}, {"district": "游仙区", "count": 873.91}]
    }
    budget.release(settings.db_url, release_id, answer, username="alice")
    context = disclosure.Context(
        dp_numbers=frozenset(disclosure.number_key(v) for v in (1204.37, 873.91))
    )
    table = "区县,人数\n涪城区,1204.37\n游仙区,873.91\n".encode()
    request_id = _approved(settings, _file("dp.csv", table), context)
    release.release_pending(settings)

    record = json.loads(
        (release.folder(settings.zone("released"), request_id) / release.PROVENANCE).read_text()
    )
    assert [q["id"] for q in record["dp_queries"]] == [release_id]
    assert record["dp_queries"][0]["epsilon"] == 0.5
    assert record["dp_queries"][0]["dataset"] == "health_records"
    assert record["datasets"] == ["health_records"]
    with db.session_scope(settings.db_url) as session:
        released = session.scalars(
            select(EgressRequest.status).where(EgressRequest.id == request_id)
        ).one()
    assert released == "released"


def test_the_merchant_sees_no_raw_name_match_in_the_request_or_the_release(
    settings: Shuyu,
) -> None:
    """Raw-data name matches stay with the reviewer: API view and manifest leave them out."""
    text = "区县,理赔率,经办\n涪城区,0.2513,张三丰\n游仙区,0.1877,李四光\n".encode()
    ids = {
        known: _approved(settings, _file("out/a.csv", text), disclosure.Context(known_names=known))
        for known in (frozenset({"张三丰"}), frozenset())
    }
    release.release_pending(settings)
    merchant = {k: egress.as_dict(_row(settings, rid)) for k, rid in ids.items()}
    reviewer = {k: egress.as_dict(_row(settings, rid), reviewer=True) for k, rid in ids.items()}
    provenance = {
        k: json.loads(
            (release.folder(settings.zone("released"), rid) / release.PROVENANCE).read_text()
        )["checks"]
        for k, rid in ids.items()
    }
    for view in merchant.values():
        assert {f["check"] for f in view["checks"]["findings"]} == {"names"}
        assert view["verdict"] == "warn"
    a, b = merchant.values()
    assert a["checks"] == b["checks"]
    first, second = provenance.values()
    assert first == second and first["verdict"] == "warn"
    checks = [{f["check"] for f in v["checks"]["findings"]} for v in reviewer.values()]
    assert checks == [{"names", "known_names"}, {"names"}]
