"""The Shuyu JupyterLab extension in Debian's chromium: a merchant's way out from JupyterLab.

alice selects two cells and requests their export from the notebook toolbar, follows the
request in the Shuyu panel, rita approves it on the platform's review page (her own
browser session), and the panel shows the release; File ▸ Download leads to Request
export; the status bar shows the day's output against the cap; the budget bar's cost
preview is the platform's dry run and a DP query moves the bar; sealed jobs are listed.
"""

from __future__ import annotations

import base64
import json
import re
import textwrap
import time

import pytest

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]

NOTEBOOK = "lab-ext.ipynb"


def _save_notebook(platform: Platform) -> None:
    """alice's kernel saves a notebook of three code cells with their outputs."""
    run = platform.run_code(
        "alice",
        textwrap.dedent(
            f"""
            import json
            cells = [
                {{"cell_type": "code", "id": f"c{{i}}", "metadata": {{}}, "execution_count": i,
                  "source": f"summary_{{i}}()", "outputs": [
                      {{"output_type": "stream", "name": "stdout", "text": f"result {{i}}\\n"}}]}}
                for i in range(3)]
            kernel = {{"name": "python3", "display_name": "Python 3", "language": "python"}}
            json.dump({{"nbformat": 4, "nbformat_minor": 5, "cells": cells,
                        "metadata": {{"kernelspec": kernel}}}}, open("{NOTEBOOK}", "w"))
            """
        ),
    )
    assert run.ok, run.error


def _login(page, platform: Platform, name: str = "alice", landing: str | None = None) -> None:
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", f"{name}-demo-2026")
    page.click("#login_submit")
    page.wait_for_url(re.compile(landing or rf"/user/{name}/lab"), timeout=90_000)


def _refresh_panel(page) -> None:
    before = page.get_attribute("#jp-Shuyu-panel", "data-refreshed")
    page.click(".jp-ShuyuPanel-refresh")
    page.wait_for_function(
        "before => document.querySelector('#jp-Shuyu-panel').dataset.refreshed !== before"
        " && document.querySelector('#jp-Shuyu-panel').dataset.loading === 'false'",
        arg=before,
        timeout=60_000,
    )


def _approve_on_the_review_page(page, platform: Platform, request_id: str, comment: str) -> None:
    """rita signs in in a browser context of her own and approves on the review page."""
    context = page.context.browser.new_context(locale="zh-CN")
    try:
        rita = context.new_page()
        _login(rita, platform, "rita", landing=r"/services/shuyu/$")
        rita.goto(f"{platform.url}/services/shuyu/review/{request_id}")
        rita.wait_for_selector("#content", timeout=30_000)
        shown = rita.inner_text("#content")  # the frozen cells' outputs, as reviewed
        assert "result 1" in shown and "result 2" in shown and "result 0" not in shown
        rita.check("input[value=approve]")
        rita.fill("textarea[name=comment]", comment)
        rita.click("#decide-submit")
        rita.wait_for_function(
            "() => document.querySelector('#status').textContent.includes('Released')",
            timeout=30_000,
        )
        assert comment in rita.inner_text("#decisions")
    finally:
        context.close()


def _spent(page) -> float:
    bar = page.locator(".jp-Shuyu-budget[data-dataset='health_records'] .jp-Shuyu-bar")
    return float(bar.get_attribute("aria-valuenow"))


def test_request_export_from_jupyterlab_review_release_and_the_download_menu(
    page, platform: Platform
) -> None:
    _save_notebook(platform)
    _login(page, platform)
    page.goto(f"{platform.url}/user/alice/lab/tree/{NOTEBOOK}")
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.nth(2).wait_for(timeout=60_000)

    # The status bar says whose sandbox this is and how much output left it today.
    status = page.locator(".jp-ShuyuStatus")
    status.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('.jp-ShuyuStatus').textContent.includes('kangning')",
        timeout=30_000,
    )
    volume = page.locator(".jp-ShuyuStatus-volume")
    page.wait_for_function(
        "() => (document.querySelector('.jp-ShuyuStatus-volume') || {}).dataset?.bytes",
        timeout=30_000,
    )
    own = platform.service_get("alice", "api/egress/volume").json()
    assert re.fullmatch(r" · Output today [\d.]+ k?M?G?B / [\d.]+ [kMG]?B", volume.inner_text())
    assert volume.inner_text().endswith(f"/ {own['cap_bytes'] / 1e6:.1f} MB")
    assert 0 < int(volume.get_attribute("data-bytes")) <= own["bytes"]

    # Select the second and third cells, then Request export on the notebook toolbar.
    cells.nth(1).locator(".jp-InputPrompt").click()
    cells.nth(2).locator(".jp-InputPrompt").click(modifiers=["Shift"])
    page.click(".jp-ShuyuRequestExportButton")
    form = page.locator(".jp-ShuyuExportForm")
    previewed = form.locator(".jp-ShuyuExportForm-cell")
    previewed.nth(1).wait_for(timeout=30_000)
    assert previewed.count() == 2
    assert [previewed.nth(i).get_attribute("data-index") for i in range(2)] == ["1", "2"]
    assert "result 1" in form.inner_text() and "result 0" not in form.inner_text()
    form.locator("input[name=title]").fill("两格汇总")
    form.locator("textarea[name=purpose]").fill("汇总结果，用于产品说明")
    page.click(".jp-Dialog .jp-mod-accept")

    # The Shuyu panel opens with the new request.
    request = page.locator("#jp-Shuyu-exports .jp-Shuyu-request").first
    request.wait_for(timeout=60_000)
    assert "两格汇总" in request.inner_text()
    assert request.locator(".jp-Shuyu-status").inner_text() == "submitted"
    request_id = request.get_attribute("data-id")

    # rita approves on the platform's review page, in her own browser session.
    _approve_on_the_review_page(page, platform, request_id, "两格可以发布")
    seen = platform.service_get("rita", f"api/egress/requests/{request_id}").json()
    assert [c["source"] for c in seen["content"]["cells"]] == ["summary_1()", "summary_2()"]
    assert seen["status"] == "released"

    # The panel shows the release: status, rita's comment, the download link.
    _refresh_panel(page)
    row = page.locator(f"#jp-Shuyu-exports .jp-Shuyu-request[data-id='{request_id}']")
    assert row.locator(".jp-Shuyu-status").inner_text() == "released"
    assert "rita: 两格可以发布" in row.locator(".jp-Shuyu-comment").inner_text()
    link = row.locator("a.jp-Shuyu-download").first
    assert link.get_attribute("href").endswith(
        f"/services/shuyu/exports/{request_id}/lab-ext-release.ipynb"
    )

    # File ▸ Download leads to Request export, for the whole notebook.
    page.click(".lm-MenuBar-item:has-text('File')")
    items = page.locator(".lm-Menu-item[data-command='docmanager:download']")
    assert items.count() == 1  # once: JupyterLab's own Download entry is gone with its plugin
    assert "Request export" in items.inner_text()
    assert page.locator(".lm-Menu-item[data-command='notebook:export-to-format']").count() == 0
    items.click()
    form = page.locator(".jp-ShuyuExportForm")
    form.locator(".jp-ShuyuExportForm-cell").nth(2).wait_for(timeout=30_000)
    assert "Request export" in page.locator(".jp-Dialog-header").inner_text()
    page.click(".jp-Dialog .jp-mod-reject")

    # Right-clicking a cell offers the selected cells; right-clicking a file, the file.
    cells.nth(0).locator(".jp-InputPrompt").click(button="right")
    page.locator(".lm-Menu-item[data-command='shuyu:request-export-cells']").wait_for()
    page.keyboard.press("Escape")
    listed = page.locator(".jp-DirListing-item", has_text=NOTEBOOK).first
    listed.click(button="right")
    page.locator(".lm-Menu-item[data-command='shuyu:request-export-file']").click()
    form.locator(".jp-ShuyuExportForm-cell").nth(2).wait_for(timeout=30_000)  # all its cells
    page.click(".jp-Dialog .jp-mod-reject")


def test_the_budget_bar_moves_after_a_dp_query(page, platform: Platform) -> None:
    _login(page, platform)
    page.locator(".jp-ShuyuStatus").click()  # opens the panel
    bar = page.locator(".jp-Shuyu-budget[data-dataset='health_records'] .jp-Shuyu-bar")
    bar.wait_for(timeout=60_000)
    page.wait_for_selector("#jp-Shuyu-panel[data-loading='false']", timeout=60_000)
    before = _spent(page)
    # The query-cost field asks the platform's dry run what a query of that ε would cost
    # and what would remain; asking spends nothing.
    budget = page.locator(".jp-Shuyu-budget[data-dataset='health_records']")
    budget.locator("input").fill("0.01")
    page.wait_for_function(
        "() => { const n = document.querySelector("
        "\".jp-Shuyu-budget[data-dataset='health_records'] .jp-Shuyu-barNote\");"
        " return n.dataset.state === 'ok' && n.textContent.includes('ε 0.01 '); }",
        timeout=30_000,
    )
    note = budget.locator(".jp-Shuyu-barNote")
    left = platform.service_get("alice", "api/dp/budget").json()["budgets"]
    remaining = next(b["remaining_epsilon"] for b in left if b["dataset"] == "health_records")
    shown = re.fullmatch(r"A query of ε 0\.01 would leave ε ([\d.]+)\.", note.inner_text())
    assert shown and float(shown[1]) == pytest.approx(remaining - 0.01)
    assert float(budget.locator(".jp-Shuyu-bar").get_attribute("data-preview")) > 0
    budget.locator("input").fill("500")  # over the per-query limit: the platform says no
    page.wait_for_selector(
        ".jp-Shuyu-budget[data-dataset='health_records'] .jp-Shuyu-barNote[data-state=refused]",
        timeout=30_000,
    )
    assert "The platform refuses this query" in note.inner_text()
    assert budget.locator(".jp-Shuyu-barPreview.jp-mod-over").count() == 1
    _refresh_panel(page)
    assert _spent(page) == pytest.approx(before)  # previews spent nothing

    query = platform.run_code(
        "alice",
        'from shuyu import dp\ndp.query("health_records", epsilon=0.01)'
        '.group_by("sex").agg(n=dp.count()).run()',
    )
    assert query.ok, query.error
    _refresh_panel(page)
    assert _spent(page) == pytest.approx(before + 0.01)


def test_labels_follow_jupyterlabs_language_setting(page, platform: Platform) -> None:
    # carol (same tenant), so the language chosen here stays out of alice's pages.
    _login(page, platform, "carol")
    page.locator(".jp-ShuyuStatus").wait_for(timeout=60_000)
    xsrf = next(
        c["value"]
        for c in page.context.cookies()
        if c["name"] == "_xsrf" and c["path"].startswith("/user/carol")
    )
    chosen = page.request.put(
        f"{platform.url}/user/carol/lab/api/settings/@jupyterlab/translation-extension:plugin",
        data=json.dumps({"raw": json.dumps({"locale": "zh_CN"})}),
        headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"},
    )
    assert chosen.status == 204, chosen.text()
    page.reload()
    page.wait_for_function(
        "() => (document.querySelector('.jp-ShuyuStatus-tenant') || {}).textContent"
        " === '数域沙箱 · 租户 kangning'"
        " && document.querySelector('.jp-ShuyuStatus-volume').textContent.includes('今日输出')",
        timeout=60_000,
    )
    page.locator(".jp-ShuyuStatus").click()
    page.wait_for_selector("#jp-Shuyu-panel[data-loading='false']", timeout=60_000)
    assert page.locator("#jp-Shuyu-views h3").inner_text() == "已授权视图"
    assert page.locator(".jp-ShuyuPanel-refresh").inner_text() == "刷新"


JOB_CODE = (
    "from pathlib import Path\nPath('out').mkdir()\nPath('out/n.csv').write_text('n\\n3\\n')\n"
)


def test_the_panel_lists_sealed_jobs_with_status_exit_code_and_review(
    page, platform: Platform
) -> None:
    submitted = platform.service_post(
        "alice",
        "api/jobs",
        {
            "entry": "panel_job.py",
            "files": {"panel_job.py": base64.b64encode(JOB_CODE.encode()).decode()},
            "parameters": {},
            "outputs": ["out/*.csv"],
            "purpose": "面板作业",
        },
    )
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and job["status"] in ("queued", "running"):
        time.sleep(0.5)
        job = platform.service_get("alice", f"api/jobs/{job['id']}").json()
    assert job["status"] == "succeeded" and job["request_id"], job

    _login(page, platform)
    page.locator(".jp-ShuyuStatus").click()  # opens the panel
    row = page.locator(f"#jp-Shuyu-jobs .jp-Shuyu-job[data-id='{job['id']}']")
    row.wait_for(timeout=60_000)
    assert row.get_attribute("data-status") == "succeeded"
    assert "panel_job.py" in row.locator(".jp-Shuyu-itemTitle").inner_text()
    meta = row.locator(".jp-Shuyu-meta").inner_text()
    assert "exit code 0" in meta and re.search(r"ran \d+ s", meta), meta
    assert (
        row.locator(".jp-Shuyu-jobRequest .jp-Shuyu-status").get_attribute("data-status")
        == "submitted"
    )
    assert row.locator("a.jp-Shuyu-download").count() == 0  # not released yet
