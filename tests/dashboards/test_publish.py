"""Dashboard publication: what is accepted, what is published, where its kernel may run."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from harness import REPO
from shuyu_platform.core import db
from shuyu_platform.core.models import EgressRequest
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.dashboards import publish as dashboards
from shuyu_platform.dashboards import service as voila_service
from shuyu_platform.dashboards.kernel import command
from shuyu_platform.dashboards.notebook import KERNEL_NAME
from shuyu_platform.egress import disclosure, jailed, release
from shuyu_platform.egress import requests as egress
from shuyu_platform.isolation.jail import JailRefusal, Limits


def _notebook() -> dict:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("import pandas as pd\npd.read_csv('rates.csv')")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="old output\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("# 看板"), cell]
    return json.loads(nbformat.writes(nb))


def _released(settings: Shuyu, tenant: str = "kangning") -> str:
    content = egress.parse_content(
        {
            "kind": "file",
            "path": "rates.csv",
            "data_b64": base64.b64encode(b"district,rate\n a,0.25\n").decode(),
        }
    )
    with db.session_scope(settings.db_url) as session:
        row = egress.create(
            session, settings.zone("outbox"), tenant=tenant, username="alice", title="t",
            purpose="p", content=content,
        )  # fmt: skip
        egress.record_checks(session, row, egress.run_checks(content, disclosure.Context()))
        for action, actor in (("submit", "alice"), ("approve", "rita")):
            egress.transition(session, row, action, actor=actor)
        request_id = row.id
    assert release.release_pending(settings) == [request_id]
    return request_id


def _dashboard(settings: Shuyu, releases: list[str], tenant: str = "kangning") -> str:
    content = egress.parse_content(
        {"kind": "dashboard", "notebook": "show.ipynb", "document": _notebook(),
         "releases": releases}
    )  # fmt: skip
    with db.session_scope(settings.db_url) as session:
        egress.released_inputs(session, tenant, content["releases"])
        row = egress.create(
            session, settings.zone("outbox"), tenant=tenant, username="alice", title="看板",
            purpose="p", content=content,
        )  # fmt: skip
        egress.record_checks(session, row, egress.run_checks(content, disclosure.Context()))
        for action, actor in (("submit", "alice"), ("approve", "rita")):
            egress.transition(session, row, action, actor=actor)
        return row.id


def test_an_approved_dashboard_is_published_with_copies_of_its_releases(
    settings: Shuyu,
) -> None:
    table = _released(settings)
    request_id = _dashboard(settings, [table])
    assert release.release_pending(settings) == [request_id]
    folder = dashboards.folder(settings, request_id)
    assert sorted(p.name for p in folder.iterdir()) == [
        "dashboard.ipynb",
        "provenance.json",
        "rates.csv",
    ]
    assert oct(folder.stat().st_mode & 0o777) == "0o555"
    published = nbformat.read(folder / "dashboard.ipynb", as_version=4)
    assert published.metadata.kernelspec.name == KERNEL_NAME
    assert published.cells[1].outputs == []  # Voila runs it afresh
    assert "shuyu_release" in (folder / "rates.csv").read_text()  # the watermarked copy

    with db.session_scope(settings.db_url) as session:
        row = session.get(EgressRequest, request_id)
        assert row is not None and row.status == "released"
        with pytest.raises(release.ReleaseError, match="not downloaded"):
            release.open_released(settings, row, "rates.csv")
        with pytest.raises(egress.EgressError, match="only alice"):
            release.unpublish(settings, session, row, actor="carol", administrator=False)
    with db.session_scope(settings.db_url) as session:
        row = session.get(EgressRequest, request_id)
        release.unpublish(settings, session, row, actor="ada", administrator=True)
        assert row.status == "unpublished"
    assert not folder.exists()


def test_a_dashboard_reads_only_released_files_of_its_own_tenant(settings: Shuyu) -> None:
    other = _released(settings, tenant="huaxin")
    with pytest.raises(egress.EgressError, match="not a request of tenant kangning"):
        _dashboard(settings, [other])
    with pytest.raises(egress.EgressError, match="at most 20 IDs"):
        _dashboard(settings, ["not-an-id"])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"nbformat": 3, "cells": []}, "nbformat 4"),
        ({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "x"}]},
         "not a valid notebook"),
    ],
)  # fmt: skip
def test_a_malformed_dashboard_is_refused(document: dict, message: str) -> None:
    """The shape is checked by the service; the schema in the parsing jail, with the checks."""
    with pytest.raises((egress.EgressError, JailRefusal), match=message):
        content = egress.parse_content(
            {"kind": "dashboard", "notebook": "d.ipynb", "document": document}
        )
        jailed.check_content(content, disclosure.Context(), Limits())


def test_file_and_cell_releases_cannot_be_unpublished(settings: Shuyu) -> None:
    table = _released(settings)
    with db.session_scope(settings.db_url) as session:
        row = session.get(EgressRequest, table)
        with pytest.raises(egress.EgressError, match="only dashboards unpublish"):
            release.unpublish(settings, session, row, actor="alice", administrator=False)


def test_the_dashboard_kernel_runs_only_in_a_published_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "published" / "abc").mkdir(parents=True)
    (home / "views").mkdir()
    env = {**os.environ, "SHUYU_HOME": str(home), "PYTHONPATH": str(REPO / "hub")}
    for cwd in (home / "views", home / "published", tmp_path):
        refused = subprocess.run(
            [sys.executable, "-m", "shuyu_platform.dashboards.kernel", "-f", "/nonexistent"],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "is not a published dashboard's folder" in refused.stderr


def test_the_dashboard_sandbox_has_no_network_and_binds_no_platform_zone(tmp_path: Path) -> None:
    folder = tmp_path / "published" / "abc"
    args = command(tmp_path / "kernel.json", folder, tmp_path / "ipc" / "k1", seccomp_fd=9)
    assert "--unshare-net" in args and "--clearenv" in args
    assert args[args.index("--seccomp") + 1] == "9"
    assert args[-5:-3] == ["-I", "-m"]  # isolated mode: the folder's files shadow nothing
    binds = [args[i + 1] for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
    assert str(folder) in binds and str(tmp_path / "ipc" / "k1") in binds
    for zone in ("raw", "views", "work", "released", "outbox", "db", "hub"):
        assert not any(f"/{zone}" in b for b in binds if str(tmp_path) in b and b != str(folder))
    user = args[args.index("--") - 7 :]
    assert "--reuid=65534" in user and "--no-new-privs" in user


def test_a_dashboard_kernel_sees_only_its_folder_and_leaves_no_key_behind(
    settings: Shuyu, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real kernel in the real sandbox, started as Voila starts it."""
    folder = dashboards.folder(settings, "f" * 32)
    folder.mkdir(mode=0o755)
    (folder / "table.csv").write_text("a\n1\n")
    monkeypatch.setenv("SHUYU_HOME", settings.home)
    monkeypatch.setenv("JUPYTER_PATH", str(voila_service.kernel_spec(settings)))
    ipc = Path(tempfile.mkdtemp(prefix="shuyu-test-ipc-"))  # short: a socket path limit
    monkeypatch.setenv("SHUYU_DASHBOARD_IPC", str(ipc))
    probe = (
        "import os, json, socket\n"
        "seen = {'files': sorted(os.listdir('.')), 'uid': os.getuid(),\n"
        "        'home': os.path.exists(" + repr(settings.home) + "),\n"
        "        'token': 'JUPYTERHUB_API_TOKEN' in os.environ}\n"
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "seen['seccomp'] = [l.split()[1] for l in open('/proc/self/status')\n"
        "                   if l.startswith('Seccomp:')][0]\n"
        "seen['unshare'] = libc.unshare(0x10000000), ctypes.get_errno()  # CLONE_NEWUSER\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2); seen['net'] = 'up'\n"
        "except OSError as err:\n"
        "    seen['net'] = type(err).__name__\n"
        # Chinese chart labels: a missing glyph is a warning, made an error here
        "import io, warnings\n"
        "try:\n"
        "    warnings.simplefilter('error')\n"
        "    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
        "    figure, axes = plt.subplots(); axes.set_title('各部门数据使用量')\n"
        "    figure.savefig(io.BytesIO(), format='png'); seen['chart'] = 'ok'\n"
        "except Exception as err:\n"
        "    seen['chart'] = repr(err)\n"
        "print(json.dumps(seen))"
    )

    async def run() -> dict:
        manager = voila_service.DashboardKernelManager(kernel_name=KERNEL_NAME)
        env = {**os.environ, "JUPYTERHUB_API_TOKEN": "secret"}  # as Voila passes it
        await manager.start_kernel(cwd=str(folder), env=env)
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
            client.execute(probe)
            while True:
                message = await client.get_iopub_msg(timeout=30)
                if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
                    return json.loads(message["content"]["text"])
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)

    # In its own thread: the browser tests' Playwright may hold this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        seen = pool.submit(asyncio.run, run()).result(timeout=180)
    assert seen["files"] == ["table.csv"] and seen["uid"] == 65534
    assert seen["home"] is False and seen["token"] is False
    assert seen["net"] != "up"
    assert seen["seccomp"] == "2"  # a filter is loaded (mode 2), the sandboxes' own
    assert seen["unshare"] == [-1, 1]  # EPERM: no user namespace
    assert seen["chart"] == "ok"  # the platform's matplotlibrc and the CJK font
    assert list(ipc.iterdir()) == []  # sockets and the key copy are gone
    ipc.rmdir()
