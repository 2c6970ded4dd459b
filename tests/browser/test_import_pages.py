"""The import pages in Debian's chromium: a merchant files a request (its form refuses
bad input with a sentence), a reviewer approves it, the merchant deletes it."""

from __future__ import annotations

import re

import pytest

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]

NAME = "browser_branches"  # carol's (kangning); deleted at the end
CSV = b"branch,revenue\nA,10\nB,20\nC,30\n"


def _sign_in(page, platform: Platform, name: str, path: str) -> None:
    """Sign in through the hub's login page, landing on the service's ``path``."""
    page.goto(f"{platform.url}/hub/login?next=/services/shuyu/{path}")
    page.fill("#username_input", name)
    page.fill("#password_input", f"{name}-demo-2026")
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf"/services/shuyu/{path}$"), timeout=60_000)


def _fill(page, *, name: str = NAME, sensitive: str = "revenue", identifiers: str = "") -> None:
    """The request form, filled in; the file is a small CSV of branches."""
    page.wait_for_selector("#import-form", timeout=30_000)
    page.fill("input[name=name]", name)
    page.set_input_files(
        "input[name=file]", files=[{"name": "branches.csv", "mimeType": "text/csv", "buffer": CSV}]
    )
    page.fill("textarea[name=lawful_source]", "公开年报")
    page.fill("textarea[name=authorisation]", "无需授权（公开信息）")
    page.fill("input[name=scenario]", "网点分布（浏览器测试）")
    page.fill("input[name=identifiers]", identifiers)
    page.fill("input[name=sensitive]", sensitive)


def test_merchant_files_an_import_and_a_reviewer_approves_it(
    page, browser, platform: Platform
) -> None:
    _sign_in(page, platform, "carol", "imports")

    # A name outside a-z0-9_: the browser does not send the form at all.
    _fill(page, name="Bad-Name")
    page.click("#submit-import")
    assert page.eval_on_selector("input[name=name]", "e => e.validity.patternMismatch")
    assert page.url.endswith("/services/shuyu/imports")

    # No column described: the platform refuses it with a sentence, nothing is filed.
    _fill(page, sensitive="")
    page.click("#submit-import")
    page.wait_for_selector("#error-message", timeout=60_000)
    assert "400" in page.inner_text("h1")
    assert "identifier or sensitive" in page.inner_text("#error-message")

    # A described column the file does not have: refused by the automatic checks.
    page.goto(f"{platform.url}/services/shuyu/imports")
    _fill(page, sensitive="salary")
    page.click("#submit-import")
    page.wait_for_selector("#error-message", timeout=120_000)
    assert "422" in page.inner_text("h1")
    assert "salary" in page.inner_text("#error-message")
    listed = platform.service_get("carol", "api/imports").json()["imports"]
    assert not [r for r in listed if r["name"] == NAME]

    # The good request: its page, submitted, with the checks' summary per column.
    page.goto(f"{platform.url}/services/shuyu/imports")
    _fill(page)
    page.click("#submit-import")
    page.wait_for_url(re.compile(r"/services/shuyu/imports/[0-9a-f]{32}$"), timeout=120_000)
    import_id = page.url.rsplit("/", 1)[-1]
    assert page.inner_text("#status") == "已提交 Submitted"
    assert "revenue" in page.inner_text("#columns")
    assert not page.query_selector("#decision-form")  # a merchant cannot decide

    # The reviewer finds it on the list and approves it on its page.
    reviewer = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    try:
        rita = reviewer.new_page()
        _sign_in(rita, platform, "rita", "imports")
        rita.click(f"#imports >> text={NAME}")
        rita.wait_for_selector("#decision-form", timeout=30_000)
        assert import_id in rita.url
        assert "sensitive" in rita.inner_text("#columns")
        rita.fill("textarea[name=reason]", "公开信息，用途明确")
        rita.click("#approve")
        rita.wait_for_selector("#status:has-text('Approved')", timeout=120_000)
        assert "公开信息，用途明确" in rita.inner_text("#status")
        assert f"/data/imports/{NAME}/{NAME}.parquet" in rita.inner_text("main")
        assert not rita.query_selector("#decision-form")  # decided: no form any more
    finally:
        reviewer.close()

    # carol sees it approved, and deletes it (the shared platform keeps no trace of it).
    page.reload()
    assert "Approved" in page.inner_text("#status")
    page.click("#delete")
    page.wait_for_selector("#status:has-text('Deleted')", timeout=60_000)
    steps = [
        e["action"]
        for e in platform.audit_events(tenant="kangning")
        if e["target"] == f"import:{import_id}"
    ]
    assert steps == ["import.submit", "import.approve", "import.delete"]
