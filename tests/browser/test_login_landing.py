"""Each demo account signs in through the real login page and lands where its role should."""

from __future__ import annotations

import re

import pytest

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]


def _sign_in(page, platform: Platform, name: str) -> None:
    page.goto(f"{platform.url}/hub/login")
    assert "数域 Shuyu" in page.inner_text("#shuyu-banner")
    page.fill("#username_input", name)
    page.fill("#password_input", f"{name}-demo-2026")
    page.click("#login_submit")


@pytest.mark.parametrize(
    ("name", "url", "selector", "text"),
    [
        ("audrey", r"/services/shuyu/audit$", "#verification", "OK:"),
        ("rita", r"/services/shuyu/$", "#roles", "审核员 Reviewer"),
        ("sam", r"/services/shuyu/$", "#roles", "数源部门审核员 Source-department reviewer"),
        ("victor", r"/services/shuyu/catalogue$", "#catalogue", "居民健康档案"),
        ("ada", r"/hub/admin", "body", "Admin"),
    ],
)
def test_role_lands_on_its_page(
    page, platform: Platform, name: str, url: str, selector: str, text: str
) -> None:
    _sign_in(page, platform, name)
    page.wait_for_url(re.compile(url), timeout=30_000)
    page.wait_for_selector(selector, timeout=30_000)
    assert text in page.inner_text(selector)


def test_merchant_lands_in_jupyterlab(page, platform: Platform) -> None:
    _sign_in(page, platform, "bob")
    page.wait_for_url(re.compile(r"/user/bob/lab"), timeout=90_000)
    page.wait_for_selector("#jp-main-dock-panel", timeout=90_000)
    assert page.title().endswith("JupyterLab")


def test_wrong_password_is_refused_on_the_page(page, platform: Platform) -> None:
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", "rita")
    page.fill("#password_input", "not-the-password")
    page.click("#login_submit")
    page.wait_for_selector(".login_error", timeout=30_000)
    assert "/hub/login" in page.url
