"""The administrators' accounts page: role and tenant of everyone, sandbox actions for
merchants only."""

from __future__ import annotations

import re

import pytest

from harness import Platform

pytestmark = [pytest.mark.hub]


def _row(page: str, name: str) -> str:
    found = re.search(rf'<tr data-name="{name}">(.*?)</tr>', page, re.S)
    assert found, name
    return found.group(1)


def test_accounts_show_role_and_tenant_and_offer_sandboxes_to_merchants_only(
    platform: Platform,
) -> None:
    page = platform.service_get("ada", "accounts")
    assert page.status_code == 200, page.text
    alice, rita = _row(page.text, "alice"), _row(page.text, "rita")
    assert "数据商 Data merchant" in alice and "kangning" in alice
    assert "运行中" in alice or "未运行" in alice
    assert "审核员 Reviewer" in rita and "无 none" in rita and "停止" not in rita

    ada, xsrf = platform.service_session("ada")
    refused = ada.post(
        f"{platform.url}/services/shuyu/accounts", data={"stop": "rita"}, headers=xsrf
    )
    assert refused.status_code == 400 and "只有数据商有沙箱" in refused.text
    assert platform.service_get("alice", "accounts").status_code == 403
