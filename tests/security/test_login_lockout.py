"""Repeated wrong passwords against the real hub's login form, over HTTP.

The attacker guesses a password through the public proxy. After
``c.Shuyu.login_lockout_failures`` (5) wrong passwords in a row the account refuses
every login for ``login_lockout_minutes`` (15), its right password included; the lock
is audited (``auth.lockout``, and each refused attempt as ``auth.login``), other
accounts still sign in, and the hub answers a locked account exactly as it answers a
wrong password or an unknown name (one message for all three: no way to tell which
accounts exist or are locked). The accounts are the test's own, so no other test's
account is ever locked.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import requests

from harness import Platform
from shuyu_platform.core.accounts import AccountStore

pytestmark = pytest.mark.hub

FAILURES = 5  # c.Shuyu.login_lockout_failures, default
MINUTES = 15  # c.Shuyu.login_lockout_minutes, default


def _attempt(platform: Platform, username: str, password: str) -> requests.Response:
    """One login through the hub's form, as a browser sends it."""
    session = requests.Session()
    page = session.get(f"{platform.url}/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert xsrf, "login form has no _xsrf field"
    return session.post(
        f"{platform.url}/hub/login",
        data={"username": username, "password": password, "_xsrf": xsrf.group(1)},
        allow_redirects=False,
        timeout=60,
    )


def _page(response: requests.Response) -> tuple[int, str, list[str]]:
    """The refusal as a person sees it: status, the error shown, the form's fields."""
    error = re.search(r'<p class="login_error">(.*?)</p>', response.text, re.S)
    fields = sorted(re.findall(r'<input[^>]*name="([^"]+)"', response.text))
    return response.status_code, error.group(1).strip() if error else "", fields


def test_wrong_passwords_lock_the_account_for_everyone_audited_without_an_oracle(
    platform: Platform,
) -> None:
    store = AccountStore(platform.home / "hub" / "accounts.json")
    suffix = secrets.token_hex(3)
    target, bystander = f"lockprobe-{suffix}", f"lockpeer-{suffix}"
    password = secrets.token_urlsafe(16)
    for name in (target, bystander):
        store.add(name, real_name="锁定测试", role="visitor", password=password)

    refusals = []
    for i in range(FAILURES):
        response = _attempt(platform, target, f"guess-{i}")
        assert response.status_code == 403, response.status_code
        refusals.append(_page(response))
    until = datetime.fromisoformat(store.load()[target].locked_until)
    expected = datetime.now(UTC) + timedelta(minutes=MINUTES)
    assert abs((until - expected).total_seconds()) < 120, until

    # locked: the right password opens nothing, and the page says what a wrong one says
    locked = _attempt(platform, target, password)
    assert locked.status_code == 403 and "hub/home" not in locked.headers.get("Location", "")
    assert not any(c.name.startswith("jupyterhub-session") for c in locked.cookies)
    unknown = _attempt(platform, f"nobody-{suffix}", password)
    assert _page(locked) == refusals[0] == _page(unknown)
    assert refusals[0][1], "the refusal says why"

    # another account, same password, same client address: unaffected
    assert _attempt(platform, bystander, password).status_code == 302

    lockouts = platform.audit_events("auth.lockout", actor=target)
    assert len(lockouts) == 1 and lockouts[0]["outcome"] == "denied"
    assert lockouts[0]["detail"]["failures"] == FAILURES
    reasons = [
        r["detail"].get("reason")
        for r in platform.audit_events("auth.login", actor=target)
        if r["outcome"] == "denied"
    ]
    assert reasons == ["wrong password"] * FAILURES + ["account locked"]
    assert not platform.audit_events("auth.lockout", actor=bystander)
