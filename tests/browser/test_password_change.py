"""Chromium: an initial password leads to the password-change page, not into the
platform; a weak new password is refused with the rules; the chosen one signs in."""

from __future__ import annotations

import re

import pytest

from harness import Platform
from shuyu_platform.core.accounts import AccountStore

pytestmark = [pytest.mark.hub, pytest.mark.browser]


def test_an_initial_password_must_be_changed_at_first_login(page, platform: Platform) -> None:
    store = AccountStore(platform.home / "hub" / "accounts.json")
    store.add("wenjun", real_name="文君", role="visitor", password="Initial-Pw-0412",
              initial=True)  # fmt: skip

    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "wenjun")
    page.fill("#password_input", "Initial-Pw-0412")
    page.click("#login_submit")
    page.wait_for_selector("#forced")
    assert "初始密码" in page.inner_text("#forced")
    assert page.input_value("#cp-username") == "wenjun"
    hub_api = page.request.get(f"{platform.url}/hub/api/user")
    assert hub_api.status in (401, 403)  # no session from the initial password

    page.fill("#cp-current", "Initial-Pw-0412")
    page.fill("#cp-new", "weakpassword")
    page.fill("#cp-confirm", "weakpassword")
    page.click("#cp-submit")
    page.wait_for_selector("#change-error")
    assert "至少三类" in page.inner_text("#change-error")

    page.fill("#cp-current", "Initial-Pw-0412")
    page.fill("#cp-new", "Wenjiang-Tea-88")
    page.fill("#cp-confirm", "Wenjiang-Tea-88")
    page.click("#cp-submit")
    page.wait_for_url(re.compile(r"/services/shuyu/catalogue$"), timeout=30_000)  # signed in

    account = store.load()["wenjun"]
    assert not account.must_change_password and account.check_password("Wenjiang-Tea-88")
    changes = platform.audit_events("auth.password_change", actor="wenjun")
    assert [e["outcome"] for e in changes] == ["ok"] and changes[0]["detail"]["initial"]
    refused = platform.audit_events("auth.login", actor="wenjun")
    assert refused[0]["detail"]["reason"] == "initial password must be changed"
    # The initial password is spent.
    page.context.clear_cookies()
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "wenjun")
    page.fill("#password_input", "Initial-Pw-0412")
    page.click("#login_submit")
    page.wait_for_selector(".login_error", timeout=30_000)
