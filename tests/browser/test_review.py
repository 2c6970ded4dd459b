"""A reviewer decides an export request in the review app, in Debian's chromium."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]


def _file_request(platform: Platform) -> str:
    """alice files an export request of one cell from her sandboxed kernel."""
    run = platform.run_code(
        "alice",
        textwrap.dedent(
            """
            import json, shuyu
            notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
                {"cell_type": "code", "id": "a", "metadata": {}, "execution_count": 1,
                 "source": "summary", "outputs": [
                     {"output_type": "stream", "name": "stdout",
                      "text": "district claims\\n涪城区 128\\n<script>alert(1)</script>\\n"}]}]}
            json.dump(notebook, open("browser-review.ipynb", "w"))
            r = shuyu.egress.request("browser-review.ipynb", [0], purpose="理赔汇总",
                                     title="浏览器审核测试")
            print(json.dumps(r))
            """
        ),
    )
    assert run.ok, run.error
    return json.loads(run.stdout)["id"]


def test_reviewer_reads_and_approves_a_request(page, platform: Platform) -> None:
    request_id = _file_request(platform)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "rita")
    page.fill("#password_input", "rita-demo-2026")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/services/shuyu/$"), timeout=30_000)
    page.click("text=导出审核 Export review")
    page.wait_for_selector("#queue", timeout=30_000)
    page.click("text=浏览器审核测试")
    page.wait_for_selector("#content", timeout=30_000)
    assert request_id in page.url
    assert "涪城区 128" in page.inner_text("#content")
    assert "<script>alert(1)</script>" in page.inner_text("#content")  # shown, never run
    assert page.inner_text("#status") == "已提交 Submitted"
    page.check("input[value=approve]")
    page.fill("textarea[name=comment]", "汇总层级，可以发布")
    page.click("#decide-submit")
    page.wait_for_selector("#decisions li:nth-child(3)", timeout=30_000)
    assert page.inner_text("#status") == "已发布 Released"  # approval releases at once
    assert "汇总层级，可以发布" in page.inner_text("#decisions")
    assert not page.query_selector("#decide")  # decided: no form any more
    assert dialogs == []
    approvals = [
        e for e in platform.audit_events("egress.approve", actor="rita")
        if e["target"] == f"egress:{request_id}"
    ]  # fmt: skip
    assert approvals and approvals[-1]["detail"]["to"] == "approved"


def test_reviewer_previews_a_dashboard_before_approving(page, platform: Platform) -> None:
    document = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# 区县理赔看板预览"},
        {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 4,
         "source": "show_table()", "outputs": [
             {"output_type": "execute_result", "execution_count": 4, "metadata": {}, "data": {
                 "text/html": "<table><tr><th>区县</th><th>人数</th></tr>"
                              "<tr><td>涪城区</td><td>128</td></tr></table>"
                              "<script>alert('preview')</script>",
                 "text/plain": "table"}}]}]}  # fmt: skip
    filed = platform.file_dashboard("alice", document, "看板预览测试")
    assert filed["title"] == "区县理赔看板预览"  # its heading, not its file name
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "rita")
    page.fill("#password_input", "rita-demo-2026")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/services/shuyu/$"), timeout=30_000)
    page.goto(f"{platform.url}/services/shuyu/review/{filed['id']}")
    assert page.get_attribute("#preview", "sandbox") == ""  # see test_dashboard_origin
    preview = page.frame_locator("#preview").locator("body")
    preview.locator("td").first.wait_for(timeout=30_000)
    assert preview.locator("h1").inner_text() == "区县理赔看板预览"
    assert preview.locator("td").nth(0).inner_text() == "涪城区"  # a table, rendered
    assert "show_table" not in preview.inner_text()  # no code, as on the dashboard
    assert page.query_selector("#decide") is not None  # the decision form is beside it
    assert dialogs == []
