"""Every download route of a merchant's server refuses, from the merchant's own session.

The requests are what a browser (or a script with the browser's cookies) would send
through the proxy to ``/user/<name>/``: each refusal is a 403 with the way out
(an export request) and an ``egress.blocked`` record in the audit chain, while opening
notebooks and listing the work folder keep working.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator

import pytest

from harness import Platform
from merchant import Merchant, start

pytestmark = pytest.mark.hub

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Merchant]:
    merchant = start(platform, "alice")
    setup = merchant.kernel.run(
        textwrap.dedent(
            """
            import json, os
            open("result.csv", "w").write("district,n\\n涪城区,12\\n")
            open("big.csv", "w").write("x\\n" * 400_000)
            notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
            json.dump(notebook, open("analysis.ipynb", "w"))
            for link, target in [("view.parquet", "/data/views/health_records.parquet"),
                                 ("passwd", "/etc/passwd")]:
                if not os.path.lexists(link):
                    os.symlink(target, link)
            """
        )
    )
    assert setup.ok, setup.error
    yield merchant
    merchant.kernel.close()


REFUSED = [
    ("GET", "files/result.csv", "files"),
    ("GET", "files/result.csv?download=1", "files"),
    ("HEAD", "files/result.csv", "files"),
    ("GET", "files/analysis.ipynb", "files"),
    ("GET", "%66iles/result.csv", "files"),
    ("GET", "%2566iles/result.csv", "files"),
    ("GET", "lab/../files/result.csv", "files"),
    ("GET", "api/..%2ffiles/result.csv", "files"),
    ("GET", "FILES/result.csv", "files"),
    ("GET", "Files/result.csv?download=true", "files"),
    ("GET", "view/result.csv", "view"),
    ("GET", "nbconvert/html/analysis.ipynb?download=true", "nbconvert"),
    ("GET", "nbconvert/script/analysis.ipynb", "nbconvert"),
    ("GET", "nbconvert/pdf/analysis.ipynb", "nbconvert"),
    ("POST", "nbconvert/html", "nbconvert"),
    ("GET", "api/contents/result.csv?format=base64", "api/contents"),
    ("GET", "api/contents/result.csv", "api/contents"),
    ("GET", "api/contents/big.csv", "api/contents"),
    ("GET", "api/contents/big.csv?type=file&format=text", "api/contents"),
    ("HEAD", "api/contents/big.csv", "api/contents"),
    ("GET", "api/contents/view.parquet", "api/contents"),
    ("GET", "api/contents/passwd", "api/contents"),
    ("GET", "api/notebooks/big.csv", "api/contents"),
    ("GET", "voila/render/analysis.ipynb", "voila"),
    ("GET", "voila/files/result.csv", "voila"),
    ("GET", "lsp/ws/pylsp", "lsp"),
    ("GET", "api/terminals", "terminals"),
    ("POST", "api/terminals", "terminals"),
    ("GET", "terminals/websocket/1", "terminals"),
]


@pytest.mark.parametrize(
    ("method", "path", "route"), REFUSED, ids=[f"{m} {p}" for m, p, _ in REFUSED]
)
def test_every_download_route_refuses_with_a_way_out_and_is_audited(
    alice: Merchant, platform: Platform, method: str, path: str, route: str
) -> None:
    before = len(platform.audit_events("egress.blocked", actor="alice"))
    response = alice.request(method, path)
    assert response.status_code == 403, (path, response.status_code, response.text[:200])
    if method != "HEAD":
        assert "export request" in response.text
    deadline = time.monotonic() + 10
    while len(platform.audit_events("egress.blocked", actor="alice")) == before:
        assert time.monotonic() < deadline, f"no egress.blocked record for {path}"
        time.sleep(0.1)
    event = platform.audit_events("egress.blocked", actor="alice")[-1]
    assert event["detail"]["route"] == route and event["detail"]["method"] == method
    assert event["outcome"] == "denied" and event["tenant"] == "kangning"


@pytest.mark.parametrize(
    "path",
    [
        "api/contents",
        "api/contents/analysis.ipynb",
        "api/contents/big.csv?content=0",
        "lab",
        "api/kernelspecs",
    ],
)
def test_working_in_jupyterlab_still_works(alice: Merchant, path: str) -> None:
    response = alice.request("GET", path)
    assert response.status_code == 200, (path, response.text[:200])


def test_saving_notebooks_and_running_code_still_work(alice: Merchant) -> None:
    saved = alice.request(
        "PUT", "api/contents/saved.ipynb", json={"type": "notebook", "content": NOTEBOOK}
    )
    assert saved.status_code in (200, 201), saved.text
    opened = alice.request("GET", "api/contents/saved.ipynb").json()
    assert opened["type"] == "notebook" and opened["content"]["nbformat"] == 4
    assert alice.kernel.run("print(6 * 7)").stdout.strip() == "42"


def test_the_tenant_cannot_switch_the_guard_off(platform: Platform) -> None:
    carol = start(platform, "carol")
    written = carol.kernel.run(
        textwrap.dedent(
            """
            import json, os
            os.makedirs(os.path.expanduser("~/.jupyter"), exist_ok=True)
            config = {"ServerApp": {"jpserver_extensions": {"shuyu_server": False,
                                                            "jupyter_server_terminals": True},
                                    "terminals_enabled": True}}
            for name in ("jupyter_server_config.json", "jupyter_config.json"):
                json.dump(config, open(os.path.expanduser("~/.jupyter/" + name), "w"))
            open("mine.csv", "w").write("a\\n1\\n")
            """
        )
    )
    assert written.ok, written.error
    carol.kernel.close()
    platform.stop_server(carol.session, "carol")
    carol = start(platform, "carol")  # the next start reads the tenant's config files
    try:
        assert carol.request("GET", "files/mine.csv").status_code == 403
        assert carol.request("GET", "api/terminals").status_code == 403
    finally:
        carol.kernel.close()


@pytest.mark.parametrize(
    ("field", "path", "status", "says"),
    [
        ("file", "view.parquet", 403, "leads outside the work folder"),
        ("file", "passwd", 403, "leads outside the work folder"),
        ("file", "../../../etc/passwd", 403, "leads outside the work folder"),
        ("file", "/data/views/health_records.parquet", 404, ""),
        ("notebook", "../../other/analysis.ipynb", 404, ""),
    ],
)
def test_the_export_page_takes_nothing_from_outside_the_work_folder(
    alice: Merchant, platform: Platform, field: str, path: str, status: int, says: str
) -> None:
    before = len(platform.audit_events("egress.create"))
    blocked = len(platform.audit_events("egress.blocked", actor="alice"))
    refused = alice.request(
        "POST",
        "shuyu/export",
        data={field: path, "cell": "0", "purpose": "try to take a raw file out"},
    )
    assert refused.status_code == status, refused.text[:300]
    assert says in refused.text
    assert len(platform.audit_events("egress.create")) == before  # nothing was filed
    if status == 403:
        records = platform.audit_events("egress.blocked", actor="alice")[blocked:]
        assert [r["detail"]["route"] for r in records] == ["shuyu/export"]
