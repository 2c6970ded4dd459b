"""Idle single-user servers are stopped by the idle culler, and the stop is audited."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness import running_platform

pytestmark = pytest.mark.hub


def test_idle_server_is_culled(tmp_path: Path) -> None:
    with running_platform(tmp_path, rows=500, SHUYU_CULL_IDLE_SECONDS="4") as platform:
        session = platform.login("bob")
        platform.start_server(session, "bob")
        deadline = time.monotonic() + 60
        while platform.hub_api(session, "GET", "users/bob").json().get("servers"):
            assert time.monotonic() < deadline, "idle server was not culled within 60 s"
            time.sleep(1)
        assert platform.audit_events("server.stop", actor="bob")
        assert "idle-culler" in platform.log()
