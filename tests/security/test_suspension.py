"""Suspending a tenant (R23) stops its servers and refuses new ones, all audited."""

from __future__ import annotations

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
