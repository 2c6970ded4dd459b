"""Merchant registration (R18): checked on arrival, decided by an administrator."""

from __future__ import annotations

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
        row = onboarding.submit(
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
    with pytest.raises(onboarding.RegistrationError, match="taken"):
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
    with pytest.raises(onboarding.RegistrationError, match="exists") as caught:
        _file(db_url, store)
    assert caught.value.status == 409


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"uscc": USCC[:-1] + "B"}, "not a valid unified social credit code"),
        ({"contact_phone": "12345"}, "not a mainland mobile number"),
        ({"tenant": "Shu Dao"}, "must be 3-40 lower-case"),
        ({"agreement_signed": False}, "agreement must be signed"),
        ({"users": []}, "users must list"),
        ({"users": [{"username": "liu", "real_name": ""}]}, "needs a real name"),
        ({"users": [{"username": "Liu", "real_name": "刘"}]}, "user name 'Liu'"),
        ({"users": [{"username": "liu", "real_name": "刘"}] * 2}, "listed twice"),
        ({"org_name": " "}, "org_name must be a non-empty text"),
    ],
)
def test_a_malformed_registration_is_refused_clearly(
    store: AccountStore, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(onboarding.RegistrationError, match=message):
        onboarding.parse({**BODY, **change}, store)


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

    session = platform.login("min", password)
    me = platform.hub_api(session, "GET", "user").json()
    assert "tenant-minjiang" in me["groups"] and "merchant" in me["roles"]
    assert platform.audit_events("registration.submit")[-1]["actor"] == "anonymous"
