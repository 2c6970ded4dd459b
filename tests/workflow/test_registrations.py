"""Merchant registration (R18): checked on arrival, decided by an administrator."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from harness import Platform
from shuyu_platform.core import audit, db
from shuyu_platform.core.accounts import AccountStore
from shuyu_platform.core.models import Registration
from shuyu_platform.core.workdays import Calendar
from shuyu_platform.workflow import onboarding

USCC = "91510703MA6CQ2X14A"  # check characters valid
OTHER_USCC = "91510104MA6CQ3X17A"
BODY: dict[str, Any] = {
    "org_name": "蜀道健康数据科技有限公司",
    "uscc": USCC,
    "contact_name": "刘洋",
    "contact_phone": "138-1234-5678",
    "tenant": "shudao",
    "agreement_signed": True,
    "users": [{"username": "liu", "real_name": "刘洋"}, {"username": "he", "real_name": "何佳"}],
}


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore(tmp_path / "accounts.json")


def _file(db_url: str, store: AccountStore, body: dict[str, Any] = BODY) -> str:
    with db.session_scope(db_url) as session:
        row, _ = onboarding.submit(
            session, onboarding.parse(body, store), store=store, calendar=Calendar(), days=5,
            actor="anonymous", now=datetime(2026, 11, 23, 2, tzinfo=UTC),
        )  # fmt: skip
        return row.id


def _decide(db_url: str, store: AccountStore, rid: str, action: str, reason: str = "") -> dict:
    with db.session_scope(db_url) as session:
        row = session.get(Registration, rid)
        assert row is not None
        passwords = onboarding.decide(session, row, action, actor="ada", reason=reason, store=store)
        return {**onboarding.as_dict(row), "passwords": passwords}


def test_approval_creates_the_tenants_merchant_accounts(db_url: str, store: AccountStore) -> None:
    rid = _file(db_url, store)
    decided = _decide(db_url, store, rid, "approve")
    assert decided["status"] == "approved" and sorted(decided["passwords"]) == ["he", "liu"]
    accounts = store.load()
    assert accounts["liu"].role == "merchant" and accounts["liu"].tenant == "shudao"
    assert accounts["liu"].real_name == "刘洋"
    assert accounts["liu"].check_password(decided["passwords"]["liu"])
    assert decided["deadline"].startswith("2026-11-30T15:59:59")  # 5 working days
    with db.session_scope(db_url) as session:
        events = audit.query(session, action="registration.")
    assert [e["action"] for e in events] == ["registration.submit", "registration.approve"]
    assert events[1]["detail"]["accounts"] == ["he", "liu"]
    assert all(p not in str(events) for p in decided["passwords"].values())

    with pytest.raises(onboarding.RegistrationError, match="is not allowed"):
        _decide(db_url, store, rid, "reject", "too late")
    with pytest.raises(onboarding.RegistrationError, match="用户名已被占用"):
        onboarding.parse(BODY, store)  # the user names are taken now


def test_a_rejection_needs_reasons_and_creates_nothing(db_url: str, store: AccountStore) -> None:
    rid = _file(db_url, store)
    with pytest.raises(onboarding.RegistrationError, match="needs its reasons"):
        _decide(db_url, store, rid, "reject")
    decided = _decide(db_url, store, rid, "reject", "营业执照经营范围不含数据服务")
    assert decided["status"] == "rejected" and decided["reason"].startswith("营业执照")
    assert store.load() == {}


def test_a_tenant_name_in_use_is_refused(db_url: str, store: AccountStore) -> None:
    store.add("li", real_name="李", role="merchant", password="a-long-password", tenant="shudao")
    with pytest.raises(onboarding.RegistrationError, match="租户名已被占用") as caught:
        _file(db_url, store)
    assert caught.value.status == 409 and list(caught.value.errors) == ["tenant"]


def test_the_same_credit_code_is_refused_while_one_is_pending(
    db_url: str, store: AccountStore
) -> None:
    _file(db_url, store)
    again = {**BODY, "tenant": "shudao2", "users": [{"username": "liu2", "real_name": "刘"}]}
    with pytest.raises(onboarding.RegistrationError) as caught:
        _file(db_url, store, again)
    assert caught.value.status == 409 and list(caught.value.errors) == ["uscc"]
    assert "待审核" in caught.value.errors["uscc"]
    other = {**again, "uscc": OTHER_USCC, "users": BODY["users"]}  # names a pending one asks for
    with pytest.raises(onboarding.RegistrationError) as caught:
        _file(db_url, store, other)
    assert sorted(caught.value.errors) == ["users.0.username", "users.1.username"]


def test_the_status_token_finds_its_registration_and_nothing_else(
    db_url: str, store: AccountStore
) -> None:
    with db.session_scope(db_url) as session:
        row, token = onboarding.submit(
            session, onboarding.parse(BODY, store), store=store, calendar=Calendar(), days=5,
            actor="anonymous",
        )  # fmt: skip
        rid = row.id
        assert token not in row.status_token_sha256
    with db.session_scope(db_url) as session:
        assert onboarding.by_token(session, rid, token) is not None
        assert onboarding.by_token(session, rid, token[:-1] + "x") is None
        assert onboarding.by_token(session, "0" * 32, token) is None


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"uscc": USCC[:-1] + "B"}, "uscc", "不是有效的统一社会信用代码"),
        ({"contact_phone": "12345"}, "contact_phone", "手机号码"),
        ({"tenant": "Shu Dao"}, "tenant", "租户名须为"),
        ({"agreement_signed": False}, "agreement_signed", "签署平台数据安全协议"),
        ({"users": []}, "users", "至少填写一名"),
        ({"users": [{"username": "liu", "real_name": ""}]}, "users.0.real_name", "真实姓名"),
        ({"users": [{"username": "Liu", "real_name": "刘"}]}, "users.0.username", "小写字母"),
        ({"users": [{"username": "liu", "real_name": "刘"}] * 2}, "users.1.username", "重复"),
        ({"org_name": " "}, "org_name", "必填"),
    ],
)
def test_a_malformed_registration_is_refused_clearly(
    store: AccountStore, change: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(onboarding.RegistrationError) as caught:
        onboarding.parse({**BODY, **change}, store)
    assert list(caught.value.errors) == [field]
    assert message in caught.value.errors[field]


def test_every_problem_of_a_registration_is_named_at_once(store: AccountStore) -> None:
    bad = {**BODY, "uscc": "123", "contact_phone": "1", "tenant": "X", "org_name": ""}
    with pytest.raises(onboarding.RegistrationError) as caught:
        onboarding.parse(bad, store)
    assert sorted(caught.value.errors) == ["contact_phone", "org_name", "tenant", "uscc"]


@pytest.mark.hub
def test_an_organisation_registers_and_its_user_logs_in_as_merchant(platform: Platform) -> None:
    page = requests.get(f"{platform.url}/services/shuyu/join", timeout=30)
    assert page.status_code == 200 and 'name="uscc"' in page.text  # open to anyone
    url = f"{platform.url}/services/shuyu/api/onboarding/registrations"
    body = {**BODY, "tenant": "minjiang", "users": [{"username": "min", "real_name": "闵江"}]}
    filed = requests.post(url, json=body, timeout=30)  # anonymous: no account yet
    assert filed.status_code == 201, filed.text
    rid = filed.json()["id"]
    assert requests.get(url, timeout=30).status_code == 401

    alice, alice_xsrf = platform.service_session("alice")
    refused = alice.post(
        f"{url}/{rid}/decision", json={"action": "approve"}, headers=alice_xsrf, timeout=30
    )
    assert refused.status_code == 403
    ada, xsrf = platform.service_session("ada")
    assert rid in [r["id"] for r in ada.get(url, timeout=30).json()["registrations"]]
    approved = ada.post(f"{url}/{rid}/decision", json={"action": "approve"}, headers=xsrf)
    assert approved.status_code == 200, approved.text
    password = approved.json()["initial_passwords"]["min"]

    # The initial password only leads to the password-change form.
    first = requests.Session()
    form = first.get(f"{platform.url}/hub/login", timeout=30)
    xsrf_token = re.search(r'name="_xsrf" value="([^"]+)"', form.text).group(1)
    login = {"username": "min", "password": password, "_xsrf": xsrf_token}
    shown = first.post(f"{platform.url}/hub/login", data=login, allow_redirects=False)
    assert shown.status_code == 200 and 'id="forced"' in shown.text
    changed = first.post(
        f"{platform.url}/hub/change-password",
        data={"username": "min", "current_password": password, "new_password": "Chengdu-Park-2026!",
              "confirm_password": "Chengdu-Park-2026!", "forced": "yes", "_xsrf": xsrf_token},
        allow_redirects=False,
    )  # fmt: skip
    assert changed.status_code == 302, changed.text
    session = platform.login("min", "Chengdu-Park-2026!")
    me = platform.hub_api(session, "GET", "user").json()
    assert "tenant-minjiang" in me["groups"] and "merchant" in me["roles"]
    assert platform.audit_events("registration.submit")[-1]["actor"] == "anonymous"
