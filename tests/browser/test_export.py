"""The whole way out, in Debian's chromium: request export → review → watermarked download."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]


def _save_notebook(platform: Platform) -> None:
    """alice's kernel saves a notebook whose first code cell has a table and a chart."""
    run = platform.run_code(
        "alice",
        textwrap.dedent(
            """
            import base64, io, json
            from PIL import Image
            chart = io.BytesIO()
            Image.new("RGB", (320, 160), (30, 110, 190)).save(chart, "PNG")
            notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
                {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# 分析"},
                {"cell_type": "code", "id": "a", "metadata": {}, "execution_count": 1,
                 "source": "rates.plot()", "outputs": [
                     {"output_type": "stream", "name": "stdout",
                      "text": "district  claim_rate\\n涪城区  0.2513\\n游仙区  0.1877\\n"},
                     {"output_type": "display_data", "metadata": {}, "data": {
                         "image/png": base64.b64encode(chart.getvalue()).decode(),
                         "text/plain": "<Figure>"}}]},
                {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 2,
                 "source": "raw.head()", "outputs": [
                     {"output_type": "stream", "name": "stdout", "text": "not wanted\\n"}]}]}
            json.dump(notebook, open("browser-export.ipynb", "w"))
            """
        ),
    )
    assert run.ok, run.error


def _login(page, platform: Platform, name: str) -> None:
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", f"{name}-demo-2026")
    page.click("#login_submit")
    # Reviewers land on the platform's home, merchants with a running server in JupyterLab.
    page.wait_for_url(re.compile(r"/(services/shuyu/|user/[a-z]+/lab)"), timeout=60_000)


def test_merchant_requests_reviewer_approves_merchant_downloads_watermarked_release(
    page, browser, platform: Platform, tmp_path: Path
) -> None:
    _save_notebook(platform)

    # alice: the Request export page of her own server; downloads themselves are refused.
    _login(page, platform, "alice")
    refused = page.goto(f"{platform.url}/user/alice/files/browser-export.ipynb")
    assert refused is not None and refused.status == 403
    page.click("a:has-text('Request export')")  # the link on the refusal page
    page.wait_for_selector("#notebooks", timeout=60_000)
    page.click("text=browser-export.ipynb")
    page.wait_for_selector("#export", timeout=30_000)
    assert "涪城区  0.2513" in page.inner_text("#export")
    page.check("input[name=cell][value='1']")
    page.fill("input[name=title]", "理赔率图表")
    page.fill("textarea[name=purpose]", "理赔率汇总与图表，用于产品定价说明")
    page.click("#submit")
    page.wait_for_selector("#request-id", timeout=60_000)
    request_id = page.inner_text("#request-id")
    assert page.inner_text("#status") == "已提交 Submitted"

    # rita: sees the automatic checks (the chart needs a human look) and approves.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    try:
        reviewer = context.new_page()
        _login(reviewer, platform, "rita")
        reviewer.goto(f"{platform.url}/services/shuyu/review/{request_id}")
        reviewer.wait_for_selector("#checks", timeout=30_000)
        checks = reviewer.inner_text("#checks")
        assert "图片 Image" in checks and "需注意 Warning" in checks
        assert reviewer.query_selector("#content img") is not None
        assert "not wanted" not in reviewer.inner_text("#content")
        reviewer.check("input[value=approve]")
        reviewer.fill("textarea[name=comment]", "汇总数据与图表，可以发布")
        reviewer.click("#decide-submit")
        reviewer.wait_for_selector("#release", timeout=60_000)
        assert reviewer.inner_text("#status") == "已发布 Released"
    finally:
        context.close()

    # alice: her Exports page shows the comment and the release; she downloads it.
    page.goto(f"{platform.url}/services/shuyu/exports")
    row = page.locator(f"tr[data-id='{request_id}']")
    assert row.locator(".status").inner_text() == "已发布 Released"
    assert "汇总数据与图表，可以发布" in row.inner_text()
    # The chart also comes out as a PNG of its own, named by JupyterLab's [1].
    assert "browser-export-cell1-output2.png" in row.inner_text()
    with page.expect_download() as info:
        row.locator("a.download").first.click()
    download = info.value
    assert download.suggested_filename == "browser-export-release.ipynb"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    notebook = json.loads(saved.read_text())
    assert notebook["metadata"]["shuyu"]["request_id"] == request_id
    assert f"Shuyu release {request_id}" in "".join(notebook["cells"][-1]["source"])
    sources = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert sources == ["rates.plot()"]  # only the approved cell

    downloads = [
        e
        for e in platform.audit_events("egress.download", actor="alice")
        if e["target"].startswith(f"egress:{request_id}/")
    ]
    assert [e["outcome"] for e in downloads] == ["ok"]


def _notebook_with(platform: Platform, text: str) -> None:
    """alice's kernel saves resubmit.ipynb: one code cell, run as [3], printing ``text``."""
    cell = {
        "cell_type": "code", "id": "c", "metadata": {}, "execution_count": 3,
        "source": "summary", "outputs": [{"output_type": "stream", "name": "stdout",
                                          "text": text}],
    }  # fmt: skip
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]}
    code = f"import json; json.dump({notebook!r}, open('resubmit.ipynb', 'w'))"
    run = platform.run_code("alice", code)
    assert run.ok, run.error


def test_merchant_resubmits_beside_the_reviewers_comment(page, platform: Platform) -> None:
    _notebook_with(platform, "区县  人数\n涪城区  3\n")
    _login(page, platform, "alice")
    page.goto(f"{platform.url}/user/alice/shuyu/export?notebook=resubmit.ipynb")
    page.wait_for_selector("#export", timeout=60_000)
    assert "单元格 [3] cell [3]" in page.inner_text("#export")  # JupyterLab's [3]
    page.fill("textarea[name=purpose]", "区县人数汇总")
    page.click("#submit")  # nothing chosen: a page saying what to do, not "400 : Bad Request"
    page.wait_for_selector("#error", timeout=60_000)
    assert "请至少勾选一个带输出的单元格" in page.inner_text("#error")
    assert page.query_selector("link[href$='static/shuyu.css']") is not None  # platform style
    page.go_back()
    page.wait_for_selector("#export", timeout=60_000)
    page.check("input[name=cell][value='0']")
    page.fill("textarea[name=purpose]", "区县人数汇总")
    page.click("#submit")
    page.wait_for_selector("#request-id", timeout=60_000)
    request_id = page.inner_text("#request-id")
    sent_back = platform.service_post(
        "rita",
        f"api/egress/requests/{request_id}/decision",
        {
            "action": "request_changes",
            "comment": "涪城区计数小于10，请合并区县",
            "snapshot_sha256": platform.service_get(
                "rita", f"api/egress/requests/{request_id}"
            ).json()["snapshot_sha256"],
        },
    )
    assert sent_back.status_code == 200, sent_back.text

    # The Exports page says what next, and links to the resubmit page in the sandbox.
    page.goto(f"{platform.url}/services/shuyu/exports")
    row = page.locator(f"tr[data-id='{request_id}']")
    assert row.locator(".status").inner_text() == "退回修改 Changes requested"
    assert "涪城区计数小于10" in row.inner_text()
    _notebook_with(platform, "区县  人数\n合计  128\n")  # alice fixes her analysis
    row.locator("a.resubmit").click()
    page.wait_for_selector("#comments", timeout=60_000)
    assert "涪城区计数小于10，请合并区县" in page.inner_text("#comments")
    assert "涪城区  3" in page.inner_text("#frozen")  # what the reviewer saw, beside it
    assert "合计  128" in page.inner_text("#export")  # what is saved now
    assert page.is_checked("input[name=cell][value='0']")
    page.click("#submit")
    page.wait_for_selector("#request-id", timeout=60_000)
    assert page.inner_text("#request-id") == request_id
    assert page.inner_text("#status") == "已重新提交 Resubmitted"
    answer = platform.service_get("rita", f"api/egress/requests/{request_id}").json()
    assert [d["action"] for d in answer["decisions"]][-1] == "resubmit"
    assert "合计" in json.dumps(answer["content"], ensure_ascii=False)
