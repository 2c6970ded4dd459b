"""Output metering and the daily cap on a real hub, from the merchant's side.

A platform of its own with a small daily cap (8 MiB), so hitting it harms no other
test. The figures the gateway stores must be exactly the bytes the merchant's client
received from its server (HTTP bodies and websocket frames), and a kernel flooding
``display_data`` must be stopped at the cap with a message, a 429 afterwards, and an
``egress.cap_reached`` record.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from sqlalchemy import select

from harness import Platform, running_platform
from kernel import execute_request
from shuyu_platform.core.db import session_scope
from shuyu_platform.core.models import OutputVolume

#: The module starts a platform of its own, which on a busy machine takes up to the
#: harness's STARTUP_TIMEOUT (240 s) and counts against its first test's timeout.
pytestmark = [pytest.mark.hub, pytest.mark.timeout(600)]

CAP = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("capped")
    with running_platform(home, SHUYU_EGRESS_DAILY_CAP=str(CAP), SHUYU_MEM_LIMIT="1G") as hub:
        yield hub


class Client:
    """A merchant's browser session that counts every body byte its server sent."""

    def __init__(self, platform: Platform, name: str) -> None:
        self.name = name
        self.prefix = f"/user/{name}/"
        self.received = 0
        self.session = platform.login(name)
        self.session.hooks["response"].append(self._count)
        platform.start_server(self.session, name)
        self.base = f"{platform.url}/user/{name}"
        self.session.get(f"{self.base}/lab", timeout=30).raise_for_status()
        xsrf = self.session.cookies.get("_xsrf", path=self.prefix)
        self.headers = {"X-XSRFToken": xsrf} if xsrf else {}

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        if requests.utils.urlparse(response.url).path.startswith(self.prefix):
            self.received += len(response.content)

    def kernel(self) -> tuple[str, websocket.WebSocket]:
        reply = self.session.post(
            f"{self.base}/api/kernels", json={"name": "python3"}, headers=self.headers, timeout=60
        )
        reply.raise_for_status()
        kernel_id = reply.json()["id"]
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        ws = websocket.create_connection(
            self.base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels",
            header=[f"Cookie: {cookie}", *(f"{k}: {v}" for k, v in self.headers.items())],
            timeout=120,
        )
        return kernel_id, ws


def execute(ws: websocket.WebSocket, code: str) -> tuple[int, list[dict[str, Any]], bool]:
    """Run ``code``; return frame bytes received, the messages, and whether it closed."""
    msg_id = uuid.uuid4().hex
    ws.send(execute_request(msg_id, code))
    size, messages = 0, []
    while True:
        try:
            opcode, data = ws.recv_data()
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return size, messages, True
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return size, messages, True
        size += len(data)
        message = json.loads(data)
        messages.append(message)
        if (
            message["msg_type"] == "status"
            and message["parent_header"].get("msg_id") == msg_id
            and message["content"]["execution_state"] == "idle"
        ):
            return size, messages, False


def metered(platform: Platform, name: str) -> dict[str, int]:
    with session_scope(platform.db_url) as session:
        rows = session.execute(select(OutputVolume).where(OutputVolume.username == name))
        return {row.kind: row.bytes for row in rows.scalars()}


def wait_for_total(platform: Platform, name: str, total: int) -> dict[str, int]:
    deadline = time.monotonic() + 15
    while sum((kinds := metered(platform, name)).values()) != total:
        if time.monotonic() > deadline:
            return kinds
        time.sleep(0.2)
    return kinds


def test_metered_figures_are_what_the_client_received(capped: Platform) -> None:
    alice = Client(capped, "alice")
    alice.session.get(f"{alice.base}/api/contents", timeout=30)
    _, ws = alice.kernel()
    frames, _messages, closed = execute(
        ws, "from IPython.display import display\nfor i in range(20): display('x' * 10_000)"
    )
    assert not closed
    time.sleep(1.0)  # let trailing frames arrive, then drain them
    ws.settimeout(1.0)
    try:
        while True:
            frames += len(ws.recv())
    except websocket.WebSocketTimeoutException:
        pass
    ws.close()
    time.sleep(0.5)
    kinds = wait_for_total(capped, "alice", alice.received + frames)
    assert sum(kinds.values()) == alice.received + frames, kinds
    assert kinds["http"] == alice.received
    assert kinds["ws:display_data"] >= 20 * 10_000
    assert sum(v for k, v in kinds.items() if k.startswith("ws:")) == frames


def test_the_cap_stops_a_display_data_flood_from_a_real_kernel(capped: Platform) -> None:
    bob = Client(capped, "bob")
    _, ws = bob.kernel()
    flood = "from IPython.display import display\nfor i in range(200): display('y' * 100_000)"
    size, messages, closed = execute(ws, flood)
    assert closed, "the flood was not stopped"
    notices = [m for m in messages if m["header"].get("username") == "shuyu-gateway"]
    assert notices and "daily limit" in notices[0]["content"]["text"]
    assert size < CAP
    refused = bob.session.get(f"{bob.base}/api/contents", timeout=30)
    assert refused.status_code == 429 and "daily limit" in refused.json()["message"]
    hits = capped.audit_events("egress.cap_reached", actor="bob")
    assert len(hits) == 1 and hits[0]["detail"]["cap_bytes"] == CAP
    assert hits[0]["tenant"] == "huaxin"
    assert sum(metered(capped, "bob").values()) <= CAP


def test_reviewers_and_auditors_see_the_largest_volumes(capped: Platform) -> None:
    for name in ("rita", "audrey"):
        session, _ = capped.service_session(name)
        response = session.get(f"{capped.url}/services/shuyu/api/egress/volumes", timeout=30)
        assert response.status_code == 200, (name, response.text)
        volumes = response.json()["volumes"]
        assert volumes and volumes[0]["username"] == "bob"
        page = session.get(f"{capped.url}/services/shuyu/volumes", timeout=30)
        assert page.status_code == 200 and "bob" in page.text
    merchant, _ = capped.service_session("alice")
    denied = merchant.get(f"{capped.url}/services/shuyu/api/egress/volumes", timeout=30)
    assert denied.status_code == 403


def test_the_days_volume_is_audited_when_the_server_stops(capped: Platform) -> None:
    session = capped.login("alice")
    capped.stop_server(session, "alice")
    deadline = time.monotonic() + 15
    while not capped.audit_events("egress.volume", actor="alice"):
        assert time.monotonic() < deadline, "no egress.volume record"
        time.sleep(0.2)
    record = capped.audit_events("egress.volume", actor="alice")[-1]
    assert record["detail"]["total_bytes"] > 0 and "http" in record["detail"]["by_kind"]
    assert Path(capped.home).exists()
