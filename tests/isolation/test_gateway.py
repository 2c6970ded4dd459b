"""The egress gateway in front of a hostile server: the attacker answers, the gateway decides.

A kernel can stop its server, shadow its modules or rewrite its configuration, so
these tests put a server entirely written by the attacker behind a real
:class:`~shuyu_platform.isolation.gateway.Gateway` (on a Unix socket, in a thread with
its own event loop) and talk to the gateway over real HTTP and websockets, as the proxy
does. Whatever the hostile server answers, file content must not pass, assets must come
from the image, and every byte that does pass is metered against the daily cap.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from tornado import web
from tornado import websocket as tornado_ws
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_unix_socket

from shuyu_platform.core import audit
from shuyu_platform.core.db import session_scope
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.egress.metering import Meter
from shuyu_platform.isolation import gateway as gw
from shuyu_platform.isolation.gateway import ROUTES, Gateway, Limits, Refusal, decide

BASE = "/user/mallory/"
NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


# ------------------------------------------------------------------ the table alone
@pytest.mark.parametrize(
    "path",
    [
        "files/result.csv",
        "FILES/result.csv",
        "%66iles/result.csv",
        "%2566iles/result.csv",
        "lab/../files/result.csv",
        "api/..%2ffiles/result.csv",
        "api/contents/..%2F..%2Fetc/passwd",
        "api/contents/%2e%2e/x",
        "api//contents/x",
        "view/result.csv",
        "nbconvert/html/a.ipynb",
        "voila/render/a.ipynb",
        "lsp/ws/pylsp",
        "lsp/status/x",
        "api/terminals",
        "terminals/websocket/1",
        "api/notebooks/a.ipynb",
        "api/config/notebook",
        "api/config/jupyterlabapputilsextensionannouncements/x",
        "metrics",
        "api/spec.yaml",
        "Lab",
        "API/contents/x.csv",
        "lab/api/news",
    ],
)
def test_paths_outside_the_allow_list_are_refused(path: str) -> None:
    assert isinstance(decide("GET", path, ROUTES), Refusal), path


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "", "base"),
        ("GET", "lab", "lab"),
        ("GET", "lab/tree/a%20b.ipynb", "lab"),
        ("GET", "api/contents", "api/contents"),
        ("GET", "api/contents/%E6%95%B0%E6%8D%AE/a.ipynb", "api/contents"),
        ("PUT", "api/contents/a.ipynb", "api/contents"),
        ("GET", "api/contents/a.ipynb/checkpoints", "api/contents"),
        ("POST", "api/kernels/abc/restart", "api/kernels"),
        ("GET", "api/kernels/abc/channels", "api/kernels"),
        ("GET", "lab/api/settings/@jupyterlab/apputils-extension:themes", "lab/api/settings"),
        ("GET", "static/lab/main.js", "static"),
        ("GET", "lab/api/build", "lab/api/build"),
        ("GET", "api/config/jupyterlabapputilsextensionannouncements", "api/config"),
        ("GET", "lsp/status", "lsp"),
    ],
)
def test_what_jupyterlab_needs_is_allowed(method: str, path: str, name: str) -> None:
    route = decide(method, path, ROUTES)
    assert not isinstance(route, Refusal), route
    assert route.name == name


def test_methods_are_part_of_the_allow_list() -> None:
    assert isinstance(decide("HEAD", "api/contents/a.ipynb", ROUTES), Refusal)
    assert isinstance(decide("DELETE", "api/kernelspecs", ROUTES), Refusal)
    assert isinstance(decide("POST", "lab", ROUTES), Refusal)
    assert isinstance(decide("POST", "lab/api/build", ROUTES), Refusal)
    assert isinstance(
        decide("PATCH", "api/config/jupyterlabapputilsextensionannouncements", ROUTES), Refusal
    )


def test_every_route_says_why_it_is_there() -> None:
    for route in ROUTES:
        assert route.reason and route.kind in ("proxy", "websocket", "image", "answer")
        assert route.kind != "proxy" or route.check is not None, route.name
        assert route.kind != "image" or route.root is not None, route.name


# ------------------------------------------------------------------ a hostile server
@dataclass
class Hostile:
    """What the attacker's server answers, per path after the base URL."""

    replies: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    frames: list[str | bytes] = field(default_factory=list)
    protocol: str | None = None
    #: Websockets the server holds open now, and requests it is answering.
    sockets: int = 0
    answering: int = 0
    #: Set to make every request wait until it is released (a slow server).
    hold: asyncio.Event | None = None

    def json(self, path: str, body: Any, status: int = 200) -> None:
        self.replies[path] = (
            status,
            {"Content-Type": "application/json"},
            json.dumps(body).encode(),
        )


class HostileHandler(web.RequestHandler):
    def initialize(self, hostile: Hostile) -> None:
        self.hostile = hostile

    def check_xsrf_cookie(self) -> None:
        pass

    async def _answer(self) -> None:
        relative = self.request.path[len(BASE) :]
        if self.hostile.hold is not None:
            self.hostile.answering += 1
            try:
                await self.hostile.hold.wait()
            finally:
                self.hostile.answering -= 1
        status, headers, body = self.hostile.replies.get(
            relative, (200, {"Content-Type": "text/plain"}, b"EVIL:" + relative.encode())
        )
        self.set_status(status)
        for name, value in headers.items():
            self.set_header(name, value)
        self.finish(body)

    get = post = put = patch = delete = head = _answer  # type: ignore[assignment]


class HostileSocket(tornado_ws.WebSocketHandler):
    def initialize(self, hostile: Hostile) -> None:
        self.hostile = hostile

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return self.hostile.protocol if self.hostile.protocol in subprotocols else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.hostile.sockets += 1

    def on_close(self) -> None:
        self.hostile.sockets -= 1

    async def on_message(self, message: str | bytes) -> None:
        for frame in self.hostile.frames:
            try:
                await self.write_message(frame, binary=isinstance(frame, bytes))
            except tornado_ws.WebSocketClosedError:
                return


@dataclass
class Rig:
    """A gateway on 127.0.0.1 in front of a hostile server on a Unix socket."""

    url: str
    hostile: Hostile
    gateway: Gateway
    settings: Shuyu
    loop: asyncio.AbstractEventLoop

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{BASE}{path}", timeout=30, allow_redirects=False, **kwargs)

    def flush(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.meter.flush(), self.loop).result(30)

    def events(self, action: str) -> list[dict[str, Any]]:
        with session_scope(self.settings.db_url) as session:
            return audit.query(session, action=action, limit=1000)


@pytest.fixture
def rig(settings: Shuyu, tmp_path: Path) -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    hostile = Hostile()
    sock_path = str(tmp_path / "server.sock")
    meter = Meter(settings.db_url, cap=4 * 1024 * 1024, flush_interval=0.2)

    async def setup() -> tuple[Gateway, int, HTTPServer]:
        app = web.Application(
            [
                (BASE + r"api/kernels/[^/]+/channels", HostileSocket, {"hostile": hostile}),
                (r".*", HostileHandler, {"hostile": hostile}),
            ]
        )
        server = HTTPServer(app)
        server.add_socket(bind_unix_socket(sock_path))
        gateway = Gateway(
            socket_path=sock_path,
            base_url=BASE,
            username="mallory",
            tenant="kangning",
            db_url=settings.db_url,
            meter=meter,
            limits=Limits(contents=1024 * 1024),
        )
        return gateway, gateway.listen(), server

    gateway, port, server = asyncio.run_coroutine_threadsafe(setup(), loop).result(30)
    yield Rig(f"http://127.0.0.1:{port}", hostile, gateway, settings, loop)

    async def teardown() -> None:
        await gateway.close()
        server.stop()

    asyncio.run_coroutine_threadsafe(teardown(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _model(kind: str, fmt: str | None, content: Any, name: str = "x") -> dict[str, Any]:
    return {
        "name": name,
        "path": name,
        "type": kind,
        "format": fmt,
        "content": content,
        "mimetype": None,
        "writable": True,
        "created": "",
        "last_modified": "",
        "size": 1,
    }


@pytest.mark.parametrize(
    ("what", "model"),
    [
        ("CSV served as a file", _model("file", "text", "district,n\n涪城区,12\n")),
        ("binary as base64", _model("file", "base64", base64.b64encode(b"PAR1").decode())),
        ("base64 with a trailing space", _model("notebook", "base64 ", "UEFSMQ==")),
        ("a notebook that is text", _model("notebook", "text", "district,n\n")),
        (
            "a listing carrying content",
            _model("directory", "json", [_model("file", "text", "a,b\n1,2\n")]),
        ),
    ],
)
def test_contents_replies_with_file_content_are_refused_whatever_was_asked(
    rig: Rig, what: str, model: dict[str, Any]
) -> None:
    rig.hostile.json("api/contents/x.ipynb", model)
    response = rig.get("api/contents/x.ipynb?type=notebook&content=1")
    assert response.status_code == 403, what
    assert "export request" in response.json()["message"]
    assert "涪城区" not in response.text and "PAR1" not in response.text


def test_notebooks_and_listings_pass_byte_for_byte(rig: Rig) -> None:
    rig.hostile.json("api/contents/a.ipynb", _model("notebook", "json", NOTEBOOK, "a.ipynb"))
    rig.hostile.json("api/contents", _model("directory", "json", [_model("file", None, None)]))
    for path in ("api/contents/a.ipynb", "api/contents"):
        response = rig.get(path)
        assert response.status_code == 200, response.text
        assert response.content == rig.hostile.replies[path][2]


def test_a_notebook_over_the_size_cap_is_refused(rig: Rig) -> None:
    big = {**NOTEBOOK, "metadata": {"pad": "x" * (1024 * 1024)}}
    rig.hostile.json("api/contents/big.ipynb", _model("notebook", "json", big))
    response = rig.get("api/contents/big.ipynb")
    assert response.status_code == 403 and "limit" in response.json()["reason"]


def test_checkpoints_replies_carry_ids_and_times_only(rig: Rig) -> None:
    rig.hostile.json("api/contents/a.csv/checkpoints", [{"id": "1", "last_modified": "x"}])
    assert rig.get("api/contents/a.csv/checkpoints").status_code == 200
    rig.hostile.json("api/contents/a.csv/checkpoints", [_model("file", "text", "a,b\n")])
    assert rig.get("api/contents/a.csv/checkpoints").status_code == 403
    # A path the server would take for a file named CHECKPOINTS is a contents request.
    rig.hostile.json("api/contents/d/CHECKPOINTS", _model("file", "text", "a,b\n"))
    assert rig.get("api/contents/d/CHECKPOINTS").status_code == 403


@pytest.mark.parametrize(
    ("path", "reply"),
    [
        (
            "api/contents/a.ipynb",
            (
                200,
                {"Content-Type": "application/json", "Content-Encoding": "gzip"},
                gzip.compress(json.dumps(_model("file", "text", "a,b\n")).encode()),
            ),
        ),
        (
            "api/contents/a.ipynb",
            (
                200,
                {"Content-Type": "application/json", "Content-Disposition": "attachment"},
                json.dumps(_model("notebook", "json", NOTEBOOK)).encode(),
            ),
        ),
        ("lab", (200, {"Content-Type": "text/csv"}, b"a,b\n1,2\n")),
        ("oauth_callback", (200, {"Content-Type": "text/html"}, b"a,b\n1,2\n")),
        ("api/kernelspecs", (200, {"Content-Type": "application/json"}, b"a,b\n1,2\n")),
        (
            "lab/api/workspaces/x",
            (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"data": {"x": "y" * 300_000}}).encode(),
            ),
        ),
        (
            "lab/api/settings/@x/y:z",
            (
                200,
                {"Content-Type": "application/json"},
                json.dumps({"id": "@x/y:z", "raw": "/*" + "y" * 70_000 + "*/"}).encode(),
            ),
        ),
        ("api/kernels", (500, {"Content-Type": "application/json"}, b"[" + b"1," * 20_000 + b"1]")),
    ],
)
def test_replies_that_do_not_fit_their_route_are_refused(
    rig: Rig, path: str, reply: tuple[int, dict[str, str], bytes]
) -> None:
    rig.hostile.replies[path] = reply
    response = rig.get(path)
    assert response.status_code == 403, (path, response.status_code)
    assert b"a,b\n1,2" not in response.content


PREVIEWS_REFUSED = [
    ("a file's bytes", {"kind": "file", "path": "r.csv", "data_b64": "ZGlzdHJpY3Q="}),
    ("a size and its bytes", {"kind": "file", "path": "r.csv", "bytes": 9, "data": "a,b"}),
    ("a size that is text", {"kind": "file", "path": "r.csv", "bytes": "district,n"}),
    ("another kind", {"kind": "rows", "rows": [["district", "n"]]}),
    ("cells with an extra field", {"kind": "cells", "notebook": "a", "cells": [], "x": 1}),
    ("a cell with file content", {"kind": "cells", "notebook": "a", "cells": [{"data": 1}]}),
    ("outputs that are text", {"kind": "cells", "notebook": "a", "cells": [{"outputs": "a"}]}),
    ("a list", [{"kind": "file", "path": "r.csv", "bytes": 9}]),
    ("over the cap", {"kind": "cells", "notebook": "a", "cells": [{"source": "x" * 3 * 2**20}]}),
]


@pytest.mark.parametrize(
    ("what", "body"), PREVIEWS_REFUSED, ids=[what for what, _ in PREVIEWS_REFUSED]
)
def test_export_previews_carry_cells_or_a_file_size_only(rig: Rig, what: str, body: Any) -> None:
    """A replaced server answering the extension's preview with a file's bytes is refused."""
    rig.hostile.json("shuyu/api/exports/preview", body)
    response = requests.post(f"{rig.url}{BASE}shuyu/api/exports/preview", json={}, timeout=30)
    assert response.status_code == 403, (what, response.text[:200])
    assert "district" not in response.text and "x" * 100 not in response.text


@pytest.mark.parametrize("route", ["context", "grants", "budget", "exports"])
def test_the_extensions_other_reads_are_capped_at_256_kib(rig: Rig, route: str) -> None:
    """The extension's other JSON routes answer small documents; a replaced server's
    300 KB one, or one that is not JSON, is refused."""
    rig.hostile.json(f"shuyu/api/{route}", {"tenant": "kangning", "pad": "district,n\n" * 30_000})
    response = rig.get(f"shuyu/api/{route}")
    assert response.status_code == 403 and "district" not in response.text
    rig.hostile.replies[f"shuyu/api/{route}"] = (200, {"Content-Type": "text/csv"}, b"district")
    response = rig.get(f"shuyu/api/{route}")
    assert response.status_code == 403 and "district" not in response.text
    rig.hostile.json(f"shuyu/api/{route}", {"tenant": "kangning"})
    assert rig.get(f"shuyu/api/{route}").json() == {"tenant": "kangning"}


def test_export_previews_jupyterlab_shows_pass(rig: Rig) -> None:
    cells = {
        "kind": "cells",
        "notebook": "a.ipynb",
        "cells": [{"index": 0, "source": "1", "outputs": [{"output_type": "stream"}]}],
    }
    for body in (cells, {"kind": "file", "path": "r.csv", "bytes": 9}):
        rig.hostile.json("shuyu/api/exports/preview", body)
        response = requests.post(f"{rig.url}{BASE}shuyu/api/exports/preview", json={}, timeout=30)
        assert response.status_code == 200 and response.json() == body


def test_assets_come_from_the_image_never_from_the_server(rig: Rig) -> None:
    image = Path(gw._share("lab", "static"))
    asset = next(p for p in sorted(image.iterdir()) if p.is_file())
    response = rig.get(f"static/lab/{asset.name}")
    assert response.status_code == 200 and response.content == asset.read_bytes()
    for path in (
        "lab/extensions/evil/static/remoteEntry.js",
        "kernelspecs/evil/data.csv",
        "static/lab/../../../../etc/passwd",
        "lab/api/themes/evil/index.css",
    ):
        response = rig.get(path)
        assert response.status_code in (403, 404), path
        assert b"EVIL" not in response.content and b"root:" not in response.content


def test_refusals_are_audited_as_the_gateways(rig: Rig) -> None:
    assert rig.get("files/result.csv").status_code == 403
    for _ in range(100):
        events = rig.events("egress.blocked")
        if events:
            break
        threading.Event().wait(0.05)
    event = events[-1]
    assert event["actor"] == "mallory" and event["tenant"] == "kangning"
    assert event["detail"]["route"] == "files" and event["detail"]["by"] == "gateway"


def test_refusals_say_it_chinese_first_as_a_page_and_as_json(rig: Rig) -> None:
    page = rig.get("files/result.csv")
    assert page.status_code == 403 and page.headers["Content-Type"].startswith("text/html")
    assert "<h1>已拒绝 Refused</h1>" in page.text
    said = re.search(r"</h1><p>([^<]*)</p>", page.text)
    assert said and said.group(1).startswith("数域沙箱内不能下载"), page.text[:300]
    assert "export request" in said.group(1)  # the English follows the Chinese
    assert "申请导出 Request export</a>" in page.text
    api = rig.get("api/terminals")
    assert api.status_code == 403 and set(api.json()) == {"status", "message", "reason"}
    assert api.json()["message"].startswith("数域沙箱内不能下载"), api.json()
    assert "Downloads are switched off" in api.json()["message"]


def test_a_server_that_does_not_answer_is_said_chinese_first(rig: Rig, tmp_path: Path) -> None:
    rig.gateway.socket_path = str(tmp_path / "nobody.sock")  # nothing listens there
    answer = rig.get("api/contents")
    assert answer.status_code == 502, answer.text[:300]
    assert answer.json()["message"].startswith("您的服务器没有响应"), answer.json()


# ------------------------------------------------------------------ metering and the cap
def _metered(rig: Rig) -> dict[str, int]:
    rig.flush()
    from sqlalchemy import select

    from shuyu_platform.core.models import OutputVolume

    with session_scope(rig.settings.db_url) as session:
        rows = session.execute(select(OutputVolume)).scalars().all()
        return {row.kind: row.bytes for row in rows if row.username == "mallory"}


def test_metered_bytes_are_what_the_client_received(rig: Rig) -> None:
    rig.hostile.json("api/contents/a.ipynb", _model("notebook", "json", NOTEBOOK, "a.ipynb"))
    received = sum(len(rig.get("api/contents/a.ipynb").content) for _ in range(5))
    rig.hostile.frames = [
        json.dumps({"header": {"msg_type": "display_data"}, "content": {"d": "x" * n}})
        for n in (10, 1000, 100_000)
    ] + [json.dumps({"header": {"msg_type": "status"}, "content": {}})]
    ws = websocket.create_connection(
        f"{rig.url.replace('http', 'ws')}{BASE}api/kernels/k1/channels", timeout=30
    )
    ws.send("go")
    frames = [ws.recv() for _ in rig.hostile.frames]
    ws.close()
    metered = _metered(rig)
    assert metered["http"] == received
    assert metered["ws:display_data"] == sum(len(f.encode()) for f in frames[:3])
    assert metered["ws:status"] == len(frames[3].encode())


def test_the_cap_stops_a_display_data_flood_with_a_message(rig: Rig) -> None:
    chunk = json.dumps(
        {
            "header": {"msg_type": "display_data"},
            "parent_header": {"msg_id": "cell-1"},
            "content": {"data": {"text/plain": "x" * 500_000}},
        }
    )
    rig.hostile.frames = [chunk] * 20  # 10 MB against a 4 MiB cap
    ws = websocket.create_connection(
        f"{rig.url.replace('http', 'ws')}{BASE}api/kernels/k1/channels", timeout=30
    )
    ws.send("go")
    got, notice = 0, None
    while True:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        message = json.loads(data)
        if message["header"].get("username") == "shuyu-gateway":
            notice = message
        else:
            got += len(data)
    assert got <= 4 * 1024 * 1024 and got >= 3 * 1024 * 1024
    assert notice is not None and "daily limit" in notice["content"]["text"]
    assert notice["parent_header"] == {"msg_id": "cell-1"}
    assert _metered(rig)["ws:display_data"] == got
    # Further output is refused with a clear 429 until the day ends.
    rig.hostile.json("api/contents", _model("directory", "json", []))
    refused = rig.get("api/contents")
    assert refused.status_code == 429 and "daily limit" in refused.json()["message"]
    assert refused.json()["message"].startswith(
        "今日从您的服务器发往浏览器的输出已达每日上限 4 MiB"
    )
    hits = rig.events("egress.cap_reached")
    assert len(hits) == 1 and hits[0]["actor"] == "mallory"
    assert hits[0]["detail"]["cap_bytes"] == 4 * 1024 * 1024


# ------------------------------------------------------------------ what one server holds
def _until(condition: Any, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_failed_websocket_handshake_leaves_no_connection_to_the_server(rig: Rig) -> None:
    """A GET of a websocket route without the upgrade headers: the gateway used to connect
    to the server first and never close that connection when the browser's handshake
    then failed, so each such GET left a websocket open on the hub and the server."""
    for _ in range(10):
        refused = rig.get("api/kernels/k1/channels")
        assert refused.status_code == 400, refused.text[:200]
    time.sleep(0.5)
    assert rig.hostile.sockets == 0
    assert rig.gateway.websockets == 0


def test_websockets_through_one_gateway_are_capped(rig: Rig) -> None:
    url = f"{rig.url.replace('http', 'ws')}{BASE}api/kernels/k1/channels"
    opened = [websocket.create_connection(url, timeout=30) for _ in range(gw.MAX_WEBSOCKETS)]
    try:
        assert _until(lambda: rig.hostile.sockets == gw.MAX_WEBSOCKETS)
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=30)
        assert refused.value.status_code == 503
        assert rig.hostile.sockets == gw.MAX_WEBSOCKETS  # the server never saw it
        opened.pop().close()
        assert _until(lambda: rig.gateway.websockets == gw.MAX_WEBSOCKETS - 1)
        opened.append(websocket.create_connection(url, timeout=30))  # room again
    finally:
        for ws in opened:
            ws.close()
    assert _until(lambda: rig.hostile.sockets == 0 and rig.gateway.websockets == 0)


def test_requests_in_flight_through_one_gateway_are_capped(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow server (or a browser's script asking thousands of things at once) holds
    requests open on the hub; past the cap they are answered 503 at once."""
    monkeypatch.setattr(gw, "MAX_IN_FLIGHT", 6)
    rig.hostile.json("api/contents", _model("directory", "json", []))
    rig.hostile.hold = asyncio.Event()
    with ThreadPoolExecutor(6) as pool:
        waiting = [pool.submit(rig.get, "api/contents") for _ in range(6)]
        try:
            assert _until(lambda: rig.gateway.in_flight == 6)
            over = rig.get("api/contents")
            assert over.status_code == 503, over.text[:200]
            said = over.json()["message"]
            assert said.startswith("您的服务器经平台进行中的请求已达 6 个"), said
        finally:
            rig.loop.call_soon_threadsafe(rig.hostile.hold.set)
        assert [f.result(30).status_code for f in waiting] == [200] * 6
    assert _until(lambda: rig.gateway.in_flight == 0)
    assert rig.get("api/contents").status_code == 200


def _raw(
    rig: Rig, request: bytes, read: bool = True, rcvbuf: int | None = None
) -> tuple[socket.socket, bytes]:
    """A connection to the gateway that sent ``request`` as bytes, and the reply's head
    (if ``read``); ``rcvbuf``: a receive buffer that small, set before the handshake."""
    host, port = rig.url.split("//")[1].split(":")
    conn = socket.socket()
    if rcvbuf:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    conn.settimeout(10)
    conn.connect((host, int(port)))
    conn.sendall(request)
    head = b""
    while read and b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return conn, head


def _upgrade(extra: str) -> bytes:
    return (
        f"GET {BASE}api/kernels/k1/channels HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\n{extra}\r\n"
    ).encode()


def _keyed_upgrade() -> bytes:
    """A well-formed websocket handshake with a kernel's channels."""
    key = base64.b64encode(os.urandom(16)).decode()
    return _upgrade(f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n")


def test_handshakes_tornado_refuses_after_the_server_accepted_leave_nothing_open(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade with a version but no key (Tornado answers 400 after taking the
    connection as a websocket), and a server choosing a subprotocol the browser did not
    offer: both once kept a place among MAX_WEBSOCKETS and the server's websocket."""
    for _ in range(10):
        conn, head = _raw(rig, _upgrade("Sec-WebSocket-Version: 13\r\n"))
        conn.close()
        assert head.startswith(b"HTTP/1.1 400"), head

    def choose_evil(self: HostileSocket) -> None:
        self.set_header("Sec-WebSocket-Protocol", "evil")

    monkeypatch.setattr(HostileSocket, "prepare", choose_evil, raising=False)
    for _ in range(10):
        conn, head = _raw(rig, _keyed_upgrade())
        conn.close()
        assert head.startswith(b"HTTP/1.1 502"), head
    assert _until(lambda: rig.gateway.websockets == 0 and rig.hostile.sockets == 0), (
        rig.gateway.websockets,
        rig.hostile.sockets,
    )


def test_connections_still_sending_their_request_are_capped(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request counts among those in flight once its body has arrived; until then only
    the connection cap bounds what a browser's script holds open on the hub."""
    monkeypatch.setattr(gw, "MAX_CONNECTIONS", 20)
    slow = f"PUT {BASE}api/contents/a.ipynb HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    held = [_raw(rig, slow.encode() + b"abc", read=False)[0] for _ in range(30)]
    try:
        server = rig.gateway.server
        assert server is not None
        assert _until(lambda: len(server._connections) == 20)
        closed = 0
        for conn in held[20:]:
            conn.settimeout(5)
            try:
                closed += conn.recv(1) == b""  # closed by the gateway, nothing said
            except ConnectionResetError:  # closed with the request's start unread
                closed += 1
        assert closed == 10 and len(server._connections) == 20 and rig.gateway.in_flight == 0
    finally:
        for conn in held:
            conn.close()
    assert _until(lambda: len(server._connections) == 0)
    assert rig.get("api/contents/a.ipynb").status_code in (200, 403)  # served again


def test_a_reply_the_browser_does_not_read_is_closed_and_counted(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply larger than the sockets' buffers, to a browser that reads none of it: the
    gateway gives up after IDLE_SECONDS, and the reply counts against the daily cap."""
    monkeypatch.setattr(gw, "IDLE_SECONDS", 1)
    monkeypatch.setattr(gw, "MIN_READ_RATE", 1024**3)
    monkeypatch.setattr(rig.gateway, "limits", Limits(contents=64 * 1024 * 1024))
    monkeypatch.setattr(rig.gateway, "max_body", 64 * 1024 * 1024)
    monkeypatch.setattr(rig.gateway.meter, "cap", 1024 * 1024 * 1024)
    notebook = {**NOTEBOOK, "metadata": {"pad": "x" * (24 * 1024 * 1024)}}
    rig.hostile.json("api/contents/a.ipynb", _model("notebook", "json", notebook, "a.ipynb"))
    request = f"GET {BASE}api/contents/a.ipynb HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    conn, _ = _raw(rig, request, read=False, rcvbuf=4096)
    try:
        assert _until(lambda: rig.gateway.in_flight == 1, 10)
        assert _until(lambda: rig.gateway.in_flight == 0, 10)  # given up on after 1 s
        assert _metered(rig)["http"] > 24 * 1024 * 1024  # counted as if read
    finally:
        conn.close()


def test_a_frame_the_browser_cuts_short_is_metered(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A browser reads most of a large frame, then resets the connection: the frame was
    once counted only after it was sent whole, so each reconnect carried one unmetered."""
    monkeypatch.setattr(rig.gateway.meter, "cap", 64 * 1024 * 1024)
    frame = json.dumps(
        {"header": {"msg_type": "display_data"}, "content": {"d": "x" * (8 * 1024 * 1024)}}
    )
    rig.hostile.frames = [frame]
    received = 0
    for round_ in range(3):
        conn, head = _raw(rig, _keyed_upgrade(), rcvbuf=4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        mask = os.urandom(4)
        conn.sendall(bytes([0x81, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"go")))
        while received < (round_ + 1) * 6 * 1024 * 1024:  # most of the frame, not all
            chunk = conn.recv(65536)
            assert chunk, "the gateway closed the websocket early"
            received += len(chunk)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset
    assert _until(lambda: rig.gateway.websockets == 0 and rig.hostile.sockets == 0)
    assert _metered(rig)["ws:display_data"] >= received


def test_handshakes_the_browser_abandons_still_hold_their_place_until_the_server_answers(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser leaves while the gateway waits for the server's answer: the place
    was given back at once while the connection to the server went on, so a script
    could keep hundreds of them pending."""
    monkeypatch.setattr(gw, "MAX_WEBSOCKETS", 8)
    pending = {"now": 0, "most": 0}
    answer = HostileSocket.get

    async def slow(self: HostileSocket, *args: Any, **kwargs: Any) -> None:
        pending["now"] += 1
        pending["most"] = max(pending["most"], pending["now"])
        try:
            await asyncio.sleep(2)
        finally:
            pending["now"] -= 1
        await answer(self, *args, **kwargs)

    monkeypatch.setattr(HostileSocket, "get", slow)
    for _ in range(40):
        conn, _ = _raw(rig, _keyed_upgrade(), read=False)
        time.sleep(0.01)
        conn.close()
    assert _until(lambda: pending["now"] == 0, 30)
    assert pending["most"] <= 8, pending
    assert _until(lambda: rig.gateway.websockets == 0 and rig.hostile.sockets == 0, 15)


def test_a_body_over_twice_the_notebook_cap_is_refused_before_it_is_read(rig: Rig) -> None:
    too_big = 2 * rig.gateway.max_body + 1
    conn, head = _raw(
        rig,
        f"PUT {BASE}api/contents/a.ipynb HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {too_big}\r\n\r\n".encode(),
    )
    conn.close()
    assert head == b"" or head.startswith(b"HTTP/1.1 4"), head[:100]
    assert rig.gateway.in_flight == 0
