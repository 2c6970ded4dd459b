"""The registration form in Chromium: every error beside its field, in Chinese, with
what was typed kept; a duplicate refused; the applicant's status page by its link."""

from __future__ import annotations

import pytest
import requests

from harness import Platform

pytestmark = [pytest.mark.hub, pytest.mark.browser]

JOIN = "/services/shuyu/join"
USCC = "91510105MA6C1Q4X0P"  # valid check characters; no other test uses it


def _fill(page, **fields: str) -> None:
    for name, value in fields.items():
        page.fill(f"input[name={name}]", value)


def test_errors_beside_fields_values_kept_duplicate_refused_status_by_link(
    page, platform: Platform
) -> None:
    page.goto(f"{platform.url}{JOIN}")
    _fill(
        page,
        org_name="岷江数据服务有限公司",
        uscc=USCC[:-1] + "Q",  # check character wrong
        contact_phone="12345",
        tenant="Min Jiang",
    )
    page.locator("input[name=username]").nth(0).fill("Wang")
    page.locator("input[name=real_name]").nth(0).fill("王芳")
    page.locator("input[name=real_name]").nth(1).fill("李雷")  # a real name without a user name
    page.click("#join-submit")
    page.wait_for_selector("#error")

    errors = {
        key: page.inner_text(f"#error-{key}")
        for key in (
            "uscc",
            "contact_name",
            "contact_phone",
            "tenant",
            "agreement_signed",
            "users-0-username",
            "users-1-username",
        )
    }
    assert "统一社会信用代码" in errors["uscc"] and "必填" in errors["contact_name"]
    assert "手机号码" in errors["contact_phone"] and "租户名" in errors["tenant"]
    assert "协议" in errors["agreement_signed"] and "小写字母" in errors["users-0-username"]
    assert page.query_selector("#error-org_name") is None  # a good field has no error
    # Everything typed is still there.
    assert page.input_value("input[name=org_name]") == "岷江数据服务有限公司"
    assert page.input_value("input[name=tenant]") == "Min Jiang"
    assert page.locator("input[name=real_name]").nth(1).input_value() == "李雷"

    _fill(
        page, uscc=USCC, contact_name="王芳", contact_phone="139-0000-1111", tenant="minjiang-data"
    )
    page.locator("input[name=username]").nth(0).fill("wangfang")
    page.locator("input[name=username]").nth(1).fill("lilei")
    page.check("input[name=agreement_signed]")
    page.click("#join-submit")
    page.wait_for_selector("#filed")
    assert "北京时间" in page.inner_text("#deadline")
    status_url = page.get_attribute("#status-link", "href")
    assert status_url and "token=" in status_url

    # The same credit code again, while the first waits: refused beside the field.
    page.goto(f"{platform.url}{JOIN}")
    _fill(page, org_name="岷江数据服务有限公司", uscc=USCC, contact_name="王芳",
          contact_phone="13900001111", tenant="minjiang-two")  # fmt: skip
    page.locator("input[name=username]").nth(0).fill("wangfang2")
    page.locator("input[name=real_name]").nth(0).fill("王芳")
    page.check("input[name=agreement_signed]")
    page.click("#join-submit")
    page.wait_for_selector("#error-uscc")
    assert "待审核" in page.inner_text("#error-uscc")

    page.goto(status_url)
    assert page.inner_text("#status") == "已提交 Submitted"
    assert "北京时间" in page.inner_text("#deadline")
    forged = requests.get(status_url[:-2] + "xx", timeout=30)
    assert forged.status_code == 404 and "岷江" not in forged.text
