"""Suspending a tenant (R23) stops its servers and refuses new ones, all audited."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from harness import Platform, shuyu

pytestmark = pytest.mark.hub


def _running(platform: Platform, session, name: str) -> bool:
    return bool(platform.hub_api(session, "GET", f"users/{name}").json().get("servers"))


def test_suspended_tenant_cannot_spawn_until_resumed(platform: Platform) -> None:
    session = platform.login("carol")  # tenant kangning
    platform.start_server(session, "carol")

    out = shuyu(
        "tenant",
        "suspend",
        "kangning",
        "--reason",
        "数据泄露排查 leak investigation",
        env=platform.env,
    )
    assert "suspended" in out and "carol" in out
    deadline = time.monotonic() + 30
    while _running(platform, session, "carol"):
        assert time.monotonic() < deadline, "carol's server still runs after suspension"
        time.sleep(0.3)

    refused = platform.hub_api(session, "POST", "users/carol/server")
    assert refused.status_code == 403
    assert "tenant kangning is suspended" in refused.json()["message"]
    assert "leak investigation" in refused.json()["message"]
    denied = platform.audit_events("server.start", actor="carol", tenant="kangning")
    assert denied[-1]["outcome"] == "denied"
    assert denied[-1]["detail"]["reason"] == "tenant suspended"
    suspension = platform.audit_events("tenant.suspend")[-1]
    assert suspension["target"] == "kangning" and suspension["actor"].startswith("operator:")
    assert platform.audit_events("server.stop", actor="carol")

    again = shuyu("tenant", "resume", "kangning", "--reason", "rectified", env=platform.env)
    assert "resumed" in again
    platform.start_server(session, "carol")
    assert platform.audit_events("tenant.resume")[-1]["detail"]["reason"] == "rectified"
    platform.stop_server(session, "carol")


def test_a_suspended_dataset_disappears_from_sandboxes_and_refuses_dp_queries(
    platform: Platform,
) -> None:
    probe = textwrap.dedent(
        """
        import json, shuyu
        from shuyu import dp
        result = {}
        try:
            result["rows"] = len(shuyu.views.read("social_insurance"))
        except Exception as err:
            result["view_error"] = f"{type(err).__name__}: {err}"
        try:
            dp.query("social_insurance", epsilon=0.1).agg(n=dp.count()).run()
            result["dp"] = "answered"
        except Exception as err:
            result["dp_error"] = f"{type(err).__name__}: {err}"
        print(json.dumps(result, ensure_ascii=False))
        """
    )
    before = json.loads(platform.run_code("alice", probe).stdout)
    assert before["rows"] > 0 and before["dp"] == "answered"

    out = shuyu(
        "dataset", "suspend", "social_insurance", "--reason", "源数据质量问题 bad source data",
        env=platform.env,
    )  # fmt: skip
    try:
        assert "views removed: 1" in out and "kangning/social_insurance" in out
        during = json.loads(platform.run_code("alice", probe).stdout)
        assert "rows" not in during and "bad source data" in during["view_error"]
        assert during["dp_error"].startswith("DpError") and "suspended" in during["dp_error"]
        assert not (platform.home / "views" / "kangning" / "social_insurance.parquet").exists()
        removal = [
            e
            for e in platform.audit_events("view.remove")
            if e["target"] == "view:kangning/social_insurance"
        ]
        assert removal[-1]["detail"]["reason"] == "dataset suspended"
        assert platform.audit_events("dataset.suspend")[-1]["target"] == "dataset:social_insurance"
        refused = platform.audit_events("dp.", actor="alice")[-1]
        assert refused["outcome"] == "denied"
    finally:
        again = shuyu("dataset", "resume", "social_insurance", "--reason", "ok", env=platform.env)
    assert "resumed" in again and "view kangning/social_insurance" in again
    after = json.loads(platform.run_code("alice", probe).stdout)
    assert after["rows"] == before["rows"] and after["dp"] == "answered"
