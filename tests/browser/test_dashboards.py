"""Showcase dashboards end to end: released table → reviewed dashboard → Voila, in chromium.

A visitor sees the chart and no source; the dashboard's sandboxed kernel sees its own
released file and nothing else (no views, no work folders, no network); unpublishing
takes it off at once.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import requests

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]

SERVICE = "/services/shuyu"

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: Appended to the shipped dashboard: what its kernel can see and reach.
PROBE = textwrap.dedent(
    """\
    import os, socket
    seen = {"views": os.path.exists("/data/views"), "work": os.path.exists("/home"),
            "published": sorted(os.listdir("."))}
    try:
        socket.create_connection(("127.0.0.1", 8000), timeout=2)
        seen["network"] = "reached"
    except OSError as err:
        seen["network"] = type(err).__name__
    print("PROBE", seen)
    """
)


def _decide(platform: Platform, request_id: str) -> dict:
    seen = platform.service_get("rita", f"api/egress/requests/{request_id}").json()
    answer = platform.service_post(
        "rita",
        f"api/egress/requests/{request_id}/decision",
        {"action": "approve", "comment": "可以发布", "snapshot_sha256": seen["snapshot_sha256"]},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _publish(platform: Platform) -> str:
    """alice runs the shipped exploration notebook in her sandbox (it files an export of
    a DP table); rita approves; alice asks to publish the shipped dashboard of it."""
    exploration = (NOTEBOOKS / "underwriting_exploration.ipynb").read_text()
    dashboard = json.loads((NOTEBOOKS / "underwriting_dashboard.ipynb").read_text())
    dashboard["cells"].append(
        {"cell_type": "code", "id": "probe", "metadata": {}, "execution_count": None,
         "outputs": [], "source": PROBE}
    )  # fmt: skip
    run = platform.run_code(
        "alice",
        textwrap.dedent(
            f"""
            import json, nbformat, shuyu
            from nbclient import NotebookClient
            open("underwriting_exploration.ipynb", "w").write({exploration!r})
            open("showcase.ipynb", "w").write({json.dumps(dashboard)!r})
            notebook = nbformat.read("underwriting_exploration.ipynb", as_version=4)
            NotebookClient(notebook, timeout=180, kernel_name="python3").execute()
            nbformat.write(notebook, "underwriting_exploration.ipynb")
            mine = shuyu.egress.list()
            print(json.dumps(mine[mine["title"] == "区县医保结算均值 (DP)"].iloc[0]["id"]))
            """
        ),
    )
    assert run.ok, run.error
    table_id = json.loads(run.stdout)
    assert _decide(platform, table_id)["status"] == "released"
    run = platform.run_code(
        "alice",
        "import json, shuyu; print(json.dumps(shuyu.egress.publish('showcase.ipynb', "
        f"releases=[{table_id!r}], purpose='核保定价展示看板', title='区县医保结算看板')))",
    )
    assert run.ok, run.error
    request = json.loads(run.stdout)
    assert request["kind"] == "dashboard" and request["status"] == "submitted"
    published = _decide(platform, request["id"])
    assert published["status"] == "released", published
    assert published["release"]["dashboard"] == (
        f"{platform.dashboards_url}/services/dashboards/voila/render/{request['id']}/dashboard.ipynb"
    )
    return request["id"]


def test_a_visitor_sees_a_published_dashboard_until_it_is_unpublished(
    page, platform: Platform
) -> None:
    request_id = _publish(platform)
    folder = platform.home / "published" / request_id
    assert sorted(p.name for p in folder.iterdir()) == [
        "dashboard.ipynb",
        "provenance.json",
        "settlement_by_district.csv",
    ]
    url = f"{platform.dashboards_url}/services/dashboards/voila/render/{request_id}/dashboard.ipynb"

    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "victor")
    page.fill("#password_input", "victor-demo-2026")
    page.click("#login_submit")
    page.wait_for_load_state()
    page.goto(url)
    page.wait_for_selector("img", timeout=120_000)
    text = page.inner_text("body")
    assert "各区县医保结算均值" in text and "mean_settlement" in text
    assert "read_csv" not in page.content()  # sources stripped
    probe = re.search(r"PROBE (\{.*\})", text)
    assert probe, text[:2000]
    seen = probe.group(1)
    assert "'views': False" in seen and "'work': False" in seen
    assert "settlement_by_district.csv" in seen and "'network': 'reached'" not in seen
    image = page.query_selector("img")
    assert image is not None and image.bounding_box()["width"] > 100

    anonymous = requests.get(url, allow_redirects=False, timeout=30)
    assert anonymous.status_code in (302, 303)  # to the hub's login

    register = f"{platform.url}{SERVICE}/api/products"
    listed = {p["id"]: p for p in requests.get(register, timeout=30).json()["products"]}
    assert listed[request_id]["kind"] == "dashboard" and listed[request_id]["dashboard"]
    assert listed[request_id]["title"] == "区县医保结算看板"
    page_html = requests.get(f"{platform.url}{SERVICE}/products", timeout=30).text
    assert "区县医保结算看板" in page_html  # the register is public

    alice, xsrf = platform.service_session("alice")
    taken = alice.post(
        f"{platform.url}{SERVICE}/api/egress/requests/{request_id}/unpublish",
        json={},
        headers=xsrf,
        timeout=30,
    )
    assert taken.status_code == 200 and taken.json()["status"] == "unpublished"
    assert not folder.exists()
    gone = page.goto(url)
    assert gone is not None and gone.status == 404
    listed = {p["id"] for p in requests.get(register, timeout=30).json()["products"]}
    assert request_id not in listed
    events = [e["action"] for e in platform.audit_events("dashboard.")]
    assert events[-2:] == ["dashboard.publish", "dashboard.unpublish"]
