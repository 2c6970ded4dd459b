"""The JupyterLab extension inside a real sandbox: where it is loaded from, its labels, and
the server's ``shuyu/api/*`` routes it calls (with the merchant's own session, as the
browser sends them; the attacker-side cases are the merchant's too)."""

from __future__ import annotations

import base64
import json
import math
import re
import textwrap
import time
from collections.abc import Iterator

import pytest

from harness import Platform
from merchant import Merchant, start

pytestmark = pytest.mark.hub

#: JupyterLab plugins the extension replaces (its package.json's disabledExtensions).
REPLACED = {
    "@jupyterlab/docmanager-extension:download",
    "@jupyterlab/filebrowser-extension:download",
    "@jupyterlab/notebook-extension:export",
}


@pytest.fixture(scope="module")
def alice(platform: Platform) -> Iterator[Merchant]:
    merchant = start(platform, "alice")
    setup = merchant.kernel.run(
        textwrap.dedent(
            """
            import json, os
            cells = [
                {"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": i,
                 "source": f"print({i})", "outputs": [
                     {"output_type": "stream", "name": "stdout", "text": f"out {i}\\n"}]}
                for i in range(3)]
            notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}
            json.dump(notebook, open("lab-api.ipynb", "w"))
            open("lab-result.csv", "w").write("district,n\\n涪城区,12\\n")
            if not os.path.lexists("lab-passwd"):
                os.symlink("/etc/passwd", "lab-passwd")
            """
        )
    )
    assert setup.ok, setup.error
    yield merchant
    merchant.kernel.close()


def page_config(alice: Merchant) -> dict:
    """The page configuration JupyterLab's HTML page hands the browser."""
    page = alice.request("GET", "lab")
    assert page.status_code == 200, page.text[:300]
    match = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S
    )
    assert match, "no page config in the lab page"
    return json.loads(match.group(1))


def test_the_extension_loads_from_the_read_only_environment_and_the_tenant_cannot_swap_it(
    alice: Merchant,
) -> None:
    attempt = alice.kernel.run(
        textwrap.dedent(
            """
            import json, os, sys
            from jupyter_core.paths import jupyter_path
            # The tenant's attempts: its own lab extension and a page config disabling ours.
            for base in ("~/.local/share/jupyter/labextensions/evil-lab",
                         "~/.jupyter/labextensions/evil-lab"):
                folder = os.path.expanduser(base)
                os.makedirs(folder + "/static", exist_ok=True)
                json.dump({"name": "evil-lab", "version": "1.0.0", "jupyterlab": {
                    "_build": {"load": "static/remoteEntry.js", "extension": "./extension"},
                    "disabledExtensions": ["shuyu-lab:plugin"]}},
                    open(folder + "/package.json", "w"))
            os.makedirs(os.path.expanduser("~/.jupyter/labconfig"), exist_ok=True)
            json.dump({"disabledExtensions": {"shuyu-lab": True}},
                      open(os.path.expanduser("~/.jupyter/labconfig/page_config.json"), "w"))
            ours = os.path.join(sys.prefix, "share/jupyter/labextensions/shuyu-lab/package.json")
            try:
                open(ours, "a").close()
                print("writable")
            except OSError as err:
                print("refused", err.errno)
            print(json.dumps([p for p in jupyter_path("labextensions")
                              if p.startswith(os.path.expanduser("~"))]))
            """
        )
    )
    assert attempt.ok, attempt.error
    refused, home_paths = attempt.stdout.strip().split("\n")
    assert refused in {"refused 30", "refused 13"}  # EROFS or EACCES: the environment is root's
    assert json.loads(home_paths) == []

    config = page_config(alice)
    names = [e["name"] for e in config["federated_extensions"]]
    assert "shuyu-lab" in names and "evil-lab" not in names
    disabled = set(config["disabledExtensions"])
    assert disabled >= REPLACED
    assert not any(k.startswith("shuyu-lab") for k in disabled)

    (ours,) = [e for e in config["federated_extensions"] if e["name"] == "shuyu-lab"]
    entry = alice.request("GET", f"lab/extensions/shuyu-lab/{ours['load']}")
    assert entry.status_code == 200 and b"shuyu-lab" in entry.content


def test_labels_come_in_chinese_through_jupyterlabs_translations(alice: Merchant) -> None:
    answer = alice.request("GET", "lab/api/translations/zh_CN").json()
    assert answer["message"] == ""
    assert answer["data"]["shuyu_lab"]["Request export"] == ["申请导出"]
    assert answer["data"]["shuyu_lab"]["Shuyu sandbox · tenant %1"] == ["数域沙箱 · 租户 %1"]
    assert answer["data"]["jupyterlab"][""]["language"] == "zh-CN"  # JupyterLab's own pack


def test_the_panel_reads_context_views_and_budget_through_the_server(alice: Merchant) -> None:
    context = alice.request("GET", "shuyu/api/context").json()
    assert context["tenant"] == "kangning" and context["user"] == "alice"
    assert context["exports_url"].endswith("/services/shuyu/exports")
    grants = alice.request("GET", "shuyu/api/grants").json()["grants"]
    assert "health_records" in {g["dataset"] for g in grants}
    assert all(g["fields"] for g in grants)
    budgets = alice.request("GET", "shuyu/api/budget").json()["budgets"]
    (health,) = [b for b in budgets if b["dataset"] == "health_records"]
    assert health["remaining_epsilon"] <= health["budget_epsilon"]


def test_preview_shows_exactly_the_chosen_cells_and_filing_sends_them(
    alice: Merchant, platform: Platform
) -> None:
    choice = {"notebook": "lab-api.ipynb", "cells": [2, 0, 2]}
    preview = alice.request("POST", "shuyu/api/exports/preview", json=choice)
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert [c["index"] for c in shown["cells"]] == [2, 0]
    assert [c["source"] for c in shown["cells"]] == ["print(2)", "print(0)"]
    assert shown["cells"][0]["outputs"][0]["text"] == "out 2\n"

    file_preview = alice.request(
        "POST", "shuyu/api/exports/preview", json={"file": "lab-result.csv"}
    ).json()
    assert file_preview == {"kind": "file", "path": "lab-result.csv", "bytes": 24}

    filed = alice.request(
        "POST", "shuyu/api/exports", json={**choice, "purpose": "汇总结果", "title": "两格"}
    )
    assert filed.status_code == 201, filed.text
    request = filed.json()
    assert request["status"] == "submitted" and request["title"] == "两格"
    listing = alice.request("GET", "shuyu/api/exports").json()
    (row,) = [r for r in listing["requests"] if r["id"] == request["id"]]
    assert row["downloads"] == [] and row["decisions"][0]["action"] == "submit"
    seen = platform.service_get("rita", f"api/egress/requests/{request['id']}").json()
    sent = seen["content"]["cells"]
    assert [c["source"] for c in sent] == ["print(2)", "print(0)"]


BAD = [
    ({"notebook": "lab-api.ipynb", "cells": [0]}, 400, "purpose statement"),
    ({"notebook": "lab-api.ipynb", "cells": [0], "purpose": " "}, 400, "purpose statement"),
    ({"notebook": "lab-api.ipynb", "cells": "0", "purpose": "p"}, 400, "list of cell indices"),
    ({"notebook": "lab-api.ipynb", "cells": [True], "purpose": "p"}, 400, "list of cell indices"),
    ({"notebook": "lab-api.ipynb", "cells": [-1], "purpose": "p"}, 400, "list of cell indices"),
    ({"notebook": "lab-api.ipynb", "cells": [99], "purpose": "p"}, 400, "has no cell 99"),
    ({"notebook": "lab-api.ipynb", "cells": [], "purpose": "p"}, 400, "at least one cell"),
    ({"notebook": "lab-api.ipynb", "file": "lab-result.csv", "purpose": "p"}, 400, "not both"),
    ({"purpose": "p"}, 400, "cells of a notebook or a file"),
    ({"file": "lab-result.csv", "purpose": "p", "title": 5}, 400, "title"),
    ({"file": "lab-result.csv", "purpose": "p" * 4001}, 400, "more than 4000"),
    ({"file": "lab-passwd", "purpose": "p"}, 403, "outside the work folder"),
    ({"file": "../../etc/passwd", "purpose": "p"}, 403, "outside the work folder"),
    ({"file": ".lab-hidden", "purpose": "p"}, 404, ""),
]


@pytest.mark.parametrize(("body", "status", "says"), BAD)
def test_bad_export_requests_are_refused_and_nothing_is_filed(
    alice: Merchant, platform: Platform, body: dict, status: int, says: str
) -> None:
    before = len(platform.audit_events("egress.create"))
    refused = alice.request("POST", "shuyu/api/exports", json=body)
    assert refused.status_code == status, refused.text[:300]
    assert says in refused.json()["message"]
    assert len(platform.audit_events("egress.create")) == before


@pytest.mark.parametrize(("raw", "says"), [(b"not json", "not JSON"), (b"[1, 2]", "a JSON object")])
def test_a_body_that_is_not_a_json_object_is_refused(
    alice: Merchant, raw: bytes, says: str
) -> None:
    for route in ("shuyu/api/exports", "shuyu/api/exports/preview", "shuyu/api/budget/preview"):
        refused = alice.session.post(
            f"{alice.base}/{route}",
            data=raw,
            headers={**alice.headers, "Content-Type": "application/json"},
            timeout=30,
        )
        assert refused.status_code == 400 and says in refused.json()["message"]


def test_writes_need_the_xsrf_token_and_another_merchants_server_is_closed(
    alice: Merchant, platform: Platform
) -> None:
    forged = alice.session.post(
        f"{alice.base}/shuyu/api/exports",
        json={"file": "lab-result.csv", "purpose": "p"},
        timeout=30,
    )
    assert forged.status_code == 403
    other = alice.session.get(
        f"{platform.url}/user/bob/shuyu/api/grants", allow_redirects=False, timeout=30
    )
    assert other.status_code in {302, 403, 404}
    assert "grants" not in other.text


# ------------------------------------------------------------ sealed jobs, volume, cost
JOB_CODE = (
    "from pathlib import Path\nPath('out').mkdir()\nPath('out/n.csv').write_text('n\\n3\\n')\n"
)


def test_the_jobs_section_shows_a_job_its_review_and_the_released_download(
    alice: Merchant, platform: Platform
) -> None:
    submitted = platform.service_post(
        "alice",
        "api/jobs",
        {
            "entry": "lab_job.py",
            "files": {"lab_job.py": base64.b64encode(JOB_CODE.encode()).decode()},
            "parameters": {},
            "outputs": ["out/*.csv"],
            "purpose": "面板上的作业",
        },
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    queued = alice.request("GET", "shuyu/api/jobs").json()["jobs"]
    assert job_id in {j["id"] for j in queued}
    assert not any("purpose" in j or "parameters" in j for j in queued)  # kept short

    deadline = time.monotonic() + 180
    job = submitted.json()
    while time.monotonic() < deadline and job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = platform.service_get("alice", f"api/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["request_id"], job
    seen = platform.service_get("rita", f"api/egress/requests/{job['request_id']}").json()
    decided = platform.service_post(
        "rita",
        f"api/egress/requests/{job['request_id']}/decision",
        {"action": "approve", "comment": "可以发布", "snapshot_sha256": seen["snapshot_sha256"]},
    )
    assert decided.status_code == 200, decided.text

    (row,) = [j for j in alice.request("GET", "shuyu/api/jobs").json()["jobs"] if j["id"] == job_id]
    assert (row["status"], row["exit_code"], row["entry"]) == ("succeeded", 0, "lab_job.py")
    assert row["started_at"] and row["ended_at"]
    request = row["request"]
    assert request["id"] == job["request_id"] and request["status"] == "released"
    assert any(d["comment"] == "可以发布" and d["actor"] == "rita" for d in request["decisions"])
    (link,) = [d for d in request["downloads"] if d["name"] == "out__n.csv"]
    assert link["url"].endswith(f"/services/shuyu/exports/{job['request_id']}/out__n.csv")

    # Another tenant's merchant sees none of it through its own server.
    bob = start(platform, "bob")
    try:
        assert job_id not in bob.request("GET", "shuyu/api/jobs").text
    finally:
        bob.kernel.close()


def _volume(platform: Platform, user: str, query: str = "") -> dict:
    answer = platform.service_get(user, f"api/egress/volume{query}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_status_bar_reads_the_users_own_output_today_and_the_cap(
    alice: Merchant, platform: Platform
) -> None:
    deadline = time.monotonic() + 20  # the gateway's meter flushes every 2 s
    volume = alice.request("GET", "shuyu/api/volume").json()
    while time.monotonic() < deadline and volume["bytes"] == 0:
        time.sleep(1)
        volume = alice.request("GET", "shuyu/api/volume").json()
    assert volume["username"] == "alice" and volume["bytes"] > 0
    assert volume["cap_bytes"] == _volume(platform, "alice")["cap_bytes"] > 0
    assert volume["bytes"] <= _volume(platform, "alice")["bytes"]  # only grows


def test_bob_cannot_read_alices_output_volume(alice: Merchant, platform: Platform) -> None:
    alices = _volume(platform, "alice")["bytes"]
    for query in ("", "?username=alice", "?user=alice&tenant=kangning"):
        bobs = _volume(platform, "bob", query)
        assert bobs["username"] == "bob"
        assert bobs["bytes"] != alices or alices == 0
    assert platform.service_get("bob", "api/egress/volumes").status_code == 403


def _spent(alice: Merchant) -> float:
    budgets = alice.request("GET", "shuyu/api/budget").json()["budgets"]
    return next(b["spent_epsilon"] for b in budgets if b["dataset"] == "health_records")


def test_the_budget_bar_asks_the_platforms_dry_run_and_nothing_is_spent(
    alice: Merchant,
) -> None:
    before = _spent(alice)
    # The session's platform is shared: ask about at most half of what earlier tests left.
    budgets = alice.request("GET", "shuyu/api/budget").json()["budgets"]
    left = next(b["remaining_epsilon"] for b in budgets if b["dataset"] == "health_records")
    epsilon = min(0.05, math.floor(left / 2 * 1000) / 1000)
    assert epsilon >= 0.001, f"kangning has {left} ε of health_records left"
    query = {"dataset": "health_records", "epsilon": epsilon, "statistics": {"n": {"fn": "count"}}}
    for body in (query, {**query, "dry_run": False}):  # the route always dry-runs
        answer = alice.request("POST", "shuyu/api/budget/preview", json=body)
        assert answer.status_code == 200, answer.text
        preview = answer.json()
        assert preview["dataset"] == "health_records" and preview["epsilon"] == epsilon
        assert preview["after_epsilon"] == pytest.approx(preview["remaining_epsilon"] - epsilon)
    assert _spent(alice) == before


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {"dataset": "health_records", "epsilon": 999, "statistics": {"n": {"fn": "count"}}},
            "per-query cap",
        ),
        ({"dataset": "no_such", "epsilon": 0.1, "statistics": {"n": {"fn": "count"}}}, "no_such"),
        ({"dataset": "health_records", "epsilon": 0.1}, "statistics"),
    ],
)
def test_a_cost_preview_the_platform_refuses_says_why(
    alice: Merchant, body: dict, says: str
) -> None:
    refused = alice.request("POST", "shuyu/api/budget/preview", json=body)
    assert 400 <= refused.status_code < 500, refused.text
    assert says in refused.json()["message"]
