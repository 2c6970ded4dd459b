"""The egress gateway on a real hub: each known way round the in-sandbox guard is refused.

The attacker is a merchant with a kernel in its own sandbox: it writes files shaped to
slip past a request-side deny-list, plants assets and documents where jupyter-server
would serve them, and finally reconfigures its server (a config file, a shadowed module,
a socket of its own) and restarts it. Every attempt goes through the proxy with the
merchant's own browser session and must be refused by the hub-side gateway, whose
refusals are recorded as ``egress.blocked`` with ``by: gateway``.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
import websocket
from test_downloads import Merchant, start

from harness import Platform
from shuyu_platform.isolation.gateway import AUDITED_REFUSALS_PER_MINUTE, MAX_WEBSOCKETS

pytestmark = pytest.mark.hub

PLANT = textwrap.dedent(
    """
    import json, os
    home = os.path.expanduser("~")
    open("result.csv", "w").write("district,n\\n涪城区,12\\n")
    open("x.ipynb", "w").write("district,n\\n涪城区,12\\n")
    os.makedirs("d", exist_ok=True)
    open("d/CHECKPOINTS", "w").write("district,n\\n涪城区,12\\n")
    os.makedirs("small", exist_ok=True)
    for i in range(40):
        open(f"small/part{i}.csv", "w").write(f"row{i},涪城区,12\\n")
    for folder in (".local/share/jupyter/kernels/evil",
                   ".local/share/jupyter/labextensions/evil/static"):
        os.makedirs(os.path.join(home, folder), exist_ok=True)
    open(os.path.join(home, ".local/share/jupyter/kernels/evil/kernel.json"), "w").write(
        json.dumps({"argv": ["python3"], "display_name": "evil", "language": "python"}))
    open(os.path.join(home, ".local/share/jupyter/kernels/evil/data.csv"), "w").write(
        "district,n\\n涪城区,12\\n")
    open(os.path.join(home, ".local/share/jupyter/labextensions/evil/static/data.js"), "w").write(
        "district,n\\n涪城区,12\\n")
    big = "涪城区,12\\n" * 8_000
    # Where the server keeps JupyterLab's user settings (the kernel inherits its environment).
    user_settings = os.environ.get("JUPYTERLAB_SETTINGS_DIR",
                                   os.path.join(home, ".jupyter/lab/user-settings"))
    settings_dir = os.path.join(user_settings, "@jupyterlab/apputils-extension")
    os.makedirs(settings_dir, exist_ok=True)
    open(os.path.join(settings_dir, "themes.jupyterlab-settings"), "w").write(
        "{\\n// " + big.replace("\\n", " ") + "\\n}")
    """
)
#: A workspace document as large as the one the kernel could write (the browser's PUT
#: is inbound and allowed; reading it back is output).
WORKSPACE = {"data": {"leak": "涪城区,12\n" * 30_000}, "metadata": {"id": "leak"}}


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Merchant]:
    merchant = start(platform, "alice")
    planted = merchant.kernel.run(PLANT)
    assert planted.ok, planted.error
    stored = merchant.request("PUT", "lab/api/workspaces/leak", json=WORKSPACE)
    assert stored.status_code in (200, 204), stored.text[:200]
    yield merchant
    merchant.kernel.close()


BYPASSES = [
    ("GET", "api/contents/x.ipynb?type=file", "x.ipynb holding CSV, asked as a file"),
    ("GET", "api/contents/x.ipynb?type=file&format=text", "x.ipynb holding CSV, as text"),
    ("GET", "api/contents/result.csv", "a small text file"),
    ("GET", "api/contents/result.csv?format=base64%20", "base64 with a trailing space"),
    ("GET", "api/contents/result.csv?format=base64", "base64"),
    ("GET", "api/contents/d/CHECKPOINTS", "a file named like the checkpoints route"),
    ("GET", "api/contents/result.csv/Checkpoints", "checkpoints in another case"),
    ("GET", "%2566iles/result.csv", "double percent-encoding"),
    ("GET", "api/contents/%252e%252e/result.csv", "double-encoded dot segments"),
    ("GET", "kernelspecs/evil/data.csv", "a kernelspec the tenant installed"),
    ("GET", "kernelspecs/python3/../evil/data.csv", "a kernelspec path with dot segments"),
    ("GET", "lab/extensions/evil/static/data.js", "an extension the tenant installed"),
    ("GET", "lab/api/workspaces/leak", "a large workspace document"),
    ("GET", "lab/api/settings/@jupyterlab/apputils-extension:themes", "large user settings"),
    ("GET", "lab/api/settings", "every setting with the large one"),
    ("GET", "api/config/notebook", "server-side config documents"),
]


@pytest.mark.parametrize(
    ("method", "path", "why"), BYPASSES, ids=[f"{m} {p}" for m, p, _ in BYPASSES]
)
def test_known_bypasses_of_the_in_sandbox_guard_are_refused(
    alice: Merchant, method: str, path: str, why: str
) -> None:
    response = alice.request(method, path)
    assert response.status_code >= 400, (why, response.status_code, response.text[:200])
    assert "涪城区" not in response.text, why


def test_the_gateway_lends_no_one_the_tenants_sign_in(alice: Merchant, platform: Platform) -> None:
    """The gateway keeps no cookies of its own: the server's sign-in cookie is the browser's.

    Its HTTP client once kept a cookie jar, so after alice signed in to her server every
    request reaching her gateway carried her cookie, whoever sent it.
    """
    assert alice.request("GET", "api/contents").status_code == 200
    for who, session in (("nobody", requests.Session()), ("bob", platform.login("bob"))):
        for path in ("api/contents", "api/contents/x.ipynb", "lab"):
            response = session.get(f"{alice.base}/{path}", allow_redirects=False, timeout=30)
            assert response.status_code in (302, 403), (who, path, response.status_code)
            assert "涪城区" not in response.text and "result.csv" not in response.text


def _room_for(platform: Platform, refusals: int, name: str) -> None:
    """Wait until ``name``'s gateway has room in its audited-refusal budget (a sliding
    minute) for ``refusals`` more, after what other tests used of it."""
    deadline = time.monotonic() + 70
    while True:
        now = datetime.now(UTC)
        recent = [
            record
            for record in platform.audit_events("egress.blocked", actor=name)
            if record["detail"].get("by") == "gateway"
            and now - datetime.fromisoformat(record["ts"].replace("Z", "+00:00"))
            < timedelta(seconds=61)
        ]
        if len(recent) + refusals <= AUDITED_REFUSALS_PER_MINUTE or time.monotonic() > deadline:
            return
        time.sleep(1)


def test_many_small_files_each_refused_and_audited(platform: Platform) -> None:
    """Forty small files, each refused and each audited.

    carol's server, not alice's: alice's gateway has spent much of its audited-refusal
    budget on the attacks above, and waiting a minute for it to refill cost the suite
    most of this test's time."""
    carol = start(platform, "carol")
    try:
        planted = carol.kernel.run(
            "import os\nos.makedirs('small', exist_ok=True)\nfor i in range(40):\n"
            "    open(f'small/part{i}.csv', 'w').write(f'row{i},涪城区,12\\n')"
        )
        assert planted.ok, planted.error
        _room_for(platform, 40, "carol")
        before = len(platform.audit_events("egress.blocked", actor="carol"))
        for i in range(40):
            response = carol.request("GET", f"api/contents/small/part{i}.csv")
            assert response.status_code == 403 and "涪城区" not in response.text
        deadline = time.monotonic() + 20
        while len(platform.audit_events("egress.blocked", actor="carol")) < before + 40:
            assert time.monotonic() < deadline, "refusals were not all recorded"
            time.sleep(0.2)
        record = platform.audit_events("egress.blocked", actor="carol")[-1]
        assert record["detail"]["by"] == "gateway" and record["detail"]["route"] == "api/contents"
    finally:
        carol.kernel.run("import shutil\nshutil.rmtree('small', ignore_errors=True)")
        carol.kernel.close()


def test_jupyterlab_still_opens_notebooks_and_lists_folders(alice: Merchant) -> None:
    for path in ("lab", "api/contents", "api/contents/small", "api/kernelspecs", "api/me"):
        response = alice.request("GET", path)
        assert response.status_code == 200, (path, response.text[:200])
    listing = alice.request("GET", "api/contents/small").json()
    assert len(listing["content"]) == 40 and all(e["content"] is None for e in listing["content"])
    assert alice.kernel.run("print(6 * 7)").stdout.strip() == "42"


#: Connections the server has open now, counted from the kernel beside it (the server
#: listens on the port of JUPYTERHUB_SERVICE_URL inside the sandbox).
SERVER_CONNECTIONS = textwrap.dedent(
    """
    import os, urllib.parse
    port = urllib.parse.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"]).port
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                count += state == "01" and int(local.rsplit(":", 1)[1], 16) == port
    print(count)
    """
)


def test_websocket_gets_without_the_upgrade_leave_nothing_open(alice: Merchant) -> None:
    """The gateway once connected to the server before the browser's handshake, and kept
    that websocket open when the handshake then failed: each plain GET of a kernel's
    channels left a connection open on the hub and in the sandbox."""

    def connections() -> int:
        counted = alice.kernel.run(SERVER_CONNECTIONS)
        assert counted.ok, counted.error
        return int(counted.stdout)

    before = connections()
    for _ in range(20):
        plain = alice.request("GET", f"api/kernels/{alice.kernel.id}/channels")
        assert plain.status_code == 400, (plain.status_code, plain.text[:200])
    time.sleep(1)
    assert connections() <= before + 1, before  # the count's own request may still linger
    assert alice.kernel.run("print(6 * 7)").stdout.strip() == "42"


def test_a_browser_holding_websockets_open_is_capped_through_the_proxy(alice: Merchant) -> None:
    """The gateway's cap on a server's websockets holds for a browser going through the
    real proxy: past MAX_WEBSOCKETS the next handshake gets 503 with its sentence, the
    kernel's own websocket keeps working, and a place closed is a place free again."""
    held: list[websocket.WebSocket] = []
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as over:
            for _ in range(MAX_WEBSOCKETS + 1):  # alice's kernel already holds one
                held.append(alice.kernel._connect())
        assert over.value.status_code == 503, over.value
        assert f"{MAX_WEBSOCKETS}".encode() in (over.value.resp_body or b""), over.value
        assert MAX_WEBSOCKETS - 4 <= len(held) < MAX_WEBSOCKETS, len(held)
        assert alice.kernel.run("print(6 * 7)").stdout.strip() == "42"
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the gateway learns of the close as the proxy passes it on
            try:
                held.append(alice.kernel._connect())
                break
            except websocket.WebSocketBadStatusException as refused:
                assert refused.status_code == 503 and time.monotonic() < deadline, refused
                time.sleep(0.2)
    finally:
        for ws in held:
            ws.close()


RECONFIGURE = textwrap.dedent(
    """
    import json, os, socket, sys
    home = os.path.expanduser("~")
    os.makedirs(os.path.join(home, ".jupyter"), exist_ok=True)
    # 1. A server config that switches the guard off (Python config runs at start).
    open(os.path.join(home, ".jupyter/jupyter_server_config.py"), "w").write(
        "c.ServerApp.jpserver_extensions = {'shuyu_server': False}\\n"
        "c.ContentsManager.allow_hidden = True\\n")
    # 2. A shadow of the guard's module, found first because the home is on sys.path.
    real = os.path.dirname(__import__("shuyu_server").__file__)
    os.makedirs(os.path.join(home, "shuyu_server"), exist_ok=True)
    open(os.path.join(home, "shuyu_server/__init__.py"), "w").write(
        f"__path__.append({real!r})\\n"
        "def _jupyter_server_extension_points():\\n    return []\\n")
    open(os.path.join(home, "shuyu_server/egress.py"), "w").write(
        "from jupyter_server.extension.application import ExtensionApp\\n"
        "class EgressGuard(ExtensionApp):\\n    name = 'shuyu_server'\\n")
    # 3. Move the server's socket away and bind one of its own in the socket folder.
    moved, bound = [], False
    try:
        os.rename("/run/shuyu/server.sock", "/run/shuyu/moved.sock")
        moved.append("server.sock")
    except OSError:
        pass
    mine = socket.socket(socket.AF_UNIX)
    try:
        mine.bind("/run/shuyu/mine.sock")
        mine.listen(1)
        bound = True
    except OSError:
        pass
    print(json.dumps({"moved": moved, "bound": bound}))
    """
)


def test_a_kernel_that_reconfigures_and_restarts_its_server_is_still_refused(
    platform: Platform,
) -> None:
    carol = start(platform, "carol")
    done = carol.kernel.run(RECONFIGURE)
    assert done.ok, done.error
    assert '"moved": [], "bound": false' in done.stdout, done.stdout  # a read-only folder
    assert carol.kernel.run("open('mine.csv', 'w').write('district,n\\n涪城区,12\\n')").ok
    carol.kernel.close()
    platform.stop_server(carol.session, "carol")
    carol = start(platform, "carol")  # the next start reads the tenant's config and modules
    try:
        for path in (
            "files/mine.csv",
            "api/contents/mine.csv",
            "api/contents/mine.csv?format=base64",
            "api/contents/mine.csv?type=file",
            "nbconvert/script/mine.csv",
        ):
            response = carol.request("GET", path)
            assert response.status_code == 403, (path, response.status_code)
            assert "涪城区" not in response.text
        assert carol.kernel.run("print(1 + 1)").stdout.strip() == "2"
    finally:
        carol.kernel.run(
            "import os, shutil\n"
            "shutil.rmtree(os.path.expanduser('~/shuyu_server'), ignore_errors=True)\n"
            "os.remove(os.path.expanduser('~/.jupyter/jupyter_server_config.py'))"
        )
        carol.kernel.close()


#: What a kernel can make its own server answer on the extension's preview: the server
#: reads the notebook from disk, so a cell whose saved output is 50 MB (a table's rows as
#: text, a file as base64) is previewed whole. (A server replaced outright cannot be run
#: here: the sandbox reads no configuration of the tenant's and ends when its server
#: exits; the gateway's checks against such a server are in tests/isolation/test_gateway.py.)
PLANT_BIG_OUTPUT = textwrap.dedent(
    """
    import base64, json
    rows = "district,n\\n涪城区,12\\n" * 2_500_000
    packed = base64.b64encode(("district,n\\n涪城区,12\\n" * 40_000).encode()).decode()
    cell = {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "rows",
            "outputs": [{"output_type": "display_data", "metadata": {},
                         "data": {"text/plain": rows}},
                        {"output_type": "display_data", "metadata": {},
                         "data": {"application/octet-stream": packed}}]}
    notebook = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    open("leak.ipynb", "w").write(json.dumps(notebook, ensure_ascii=False))
    open("mine.csv", "w").write("district,n\\n涪城区,12\\n")
    """
)


def _volume(platform: Platform, username: str) -> int:
    """Bytes metered for ``username`` today, as stored."""
    from sqlalchemy import func, select

    from shuyu_platform.core.db import session_scope
    from shuyu_platform.core.models import OutputVolume
    from shuyu_platform.egress.metering import today

    with session_scope(platform.db_url) as session:
        total = session.scalar(
            select(func.coalesce(func.sum(OutputVolume.bytes), 0)).where(
                OutputVolume.username == username, OutputVolume.day == today()
            )
        )
    return int(total or 0)


def test_a_preview_over_its_cap_is_refused_audited_and_not_metered(platform: Platform) -> None:
    """A kernel saves a notebook whose one cell holds 50 MB of rows and a file as base64,
    and asks the extension's preview for that cell through its own browser session: the
    gateway refuses the reply (over the 2 MiB cap), records it, and counts none of it."""
    carol = start(platform, "carol")
    try:
        planted = carol.kernel.run(PLANT_BIG_OUTPUT)
        assert planted.ok, planted.error
        _room_for(platform, 2, "carol")
        time.sleep(3)  # the meter flushes every 2 s
        before = _volume(platform, "carol")
        audited = len(platform.audit_events("egress.blocked", actor="carol"))
        for _ in range(2):
            response = carol.request(
                "POST", "shuyu/api/exports/preview", json={"notebook": "leak.ipynb", "cells": [0]}
            )
            assert response.status_code == 403, (response.status_code, response.text[:200])
            assert "涪城区" not in response.text and "district" not in response.text
        # a file's preview is its size only (the real server), and passes
        response = carol.request("POST", "shuyu/api/exports/preview", json={"file": "mine.csv"})
        assert response.status_code == 200 and set(response.json()) == {"kind", "path", "bytes"}
        deadline = time.monotonic() + 20
        while True:
            records = platform.audit_events("egress.blocked", actor="carol")[audited:]
            mine = [r for r in records if r["detail"].get("path", "").endswith("preview")]
            if len(mine) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(mine) == 2 and all(r["detail"]["by"] == "gateway" for r in mine), mine
        time.sleep(3)
        assert _volume(platform, "carol") - before < 64 * 1024
    finally:
        carol.kernel.run("import os\nos.remove('leak.ipynb')\nos.remove('mine.csv')")
        carol.kernel.close()
