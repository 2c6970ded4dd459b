"""Accounts: validated, stored as bcrypt hashes only, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import run_async
from shuyu_platform.core import audit, db
from shuyu_platform.core.accounts import (
    AccountError,
    AccountStore,
    ShuyuAuthenticator,
    password_problems,
)


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore(tmp_path / "hub" / "accounts.json")


def test_password_is_never_stored(store: AccountStore) -> None:
    store.add(
        "alice",
        real_name="李明",
        role="merchant",
        tenant="kangning",
        password="correct horse battery",
    )
    raw = store.path.read_text("utf-8")
    assert "correct horse" not in raw
    assert json.loads(raw)["users"]["alice"]["password_hash"].startswith("$2b$")
    assert store.path.stat().st_mode & 0o777 == 0o600
    account = store.load()["alice"]
    assert account.check_password("correct horse battery")
    assert not account.check_password("correct horse batter")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Alice"}, "lower-case"),
        ({"role": "superuser"}, "unknown role 'superuser'"),
        ({"tenant": None}, "a merchant account needs a tenant"),
        ({"role": "auditor"}, "only merchants belong to a tenant"),
        ({"tenant": "Bad_Slug"}, "tenant 'Bad_Slug'"),
        ({"password": "short"}, "at least 10 characters"),
        ({"real_name": "  "}, "real name is required"),
    ],
)
def test_invalid_accounts_are_refused_with_a_reason(
    store: AccountStore, kwargs: dict, message: str
) -> None:
    spec = {
        "name": "alice",
        "real_name": "李明",
        "role": "merchant",
        "tenant": "kangning",
        "password": "long enough password",
    } | kwargs
    name = spec.pop("name")
    with pytest.raises(AccountError, match=message):
        store.add(name, **spec)
    assert not store.path.exists()


def test_duplicate_needs_replace(store: AccountStore) -> None:
    store.add("rita", real_name="赵丽", role="reviewer", password="long enough password")
    with pytest.raises(AccountError, match="exists already"):
        store.add("rita", real_name="赵丽", role="reviewer", password="another long one")
    store.add("rita", real_name="赵丽", role="reviewer", password="another long one", replace=True)
    assert store.load()["rita"].check_password("another long one")


def test_corrupt_file_is_reported_not_overwritten(store: AccountStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json", "utf-8")
    with pytest.raises(AccountError, match="not a valid accounts file"):
        store.add("rita", real_name="赵丽", role="reviewer", password="long enough password")
    assert store.path.read_text("utf-8") == "{not json"


@pytest.mark.parametrize(
    ("password", "lacks"),
    [
        ("Short-1", "至少 10 个字符"),
        ("alllowercaseletters", "至少三类"),
        ("Liu-Strong-2026", "用户名"),
    ],
)
def test_a_chosen_password_follows_the_rules(password: str, lacks: str) -> None:
    assert any(lacks in p for p in password_problems(password, "liu"))
    assert password_problems("Qingcheng-Shan-9", "liu") == []


def _authenticator(store: AccountStore, tmp_path: Path) -> ShuyuAuthenticator:
    url = f"sqlite:///{tmp_path / 'shuyu.sqlite'}"
    db.upgrade(url)
    return ShuyuAuthenticator(
        accounts_file=str(store.path), db_url=url, lockout_failures=3, lockout_minutes=10
    )


def test_repeated_wrong_passwords_lock_the_account_audited(
    store: AccountStore, tmp_path: Path
) -> None:
    store.add("liu", real_name="刘洋", role="visitor", password="Qingcheng-Shan-9")
    auth = _authenticator(store, tmp_path)
    for _ in range(3):
        assert run_async(auth.authenticate(None, {"username": "liu", "password": "wrong"})) is None
    assert store.load()["liu"].locked()
    right = {"username": "liu", "password": "Qingcheng-Shan-9"}
    assert run_async(auth.authenticate(None, right)) is None  # locked: even the right one
    with db.session_scope(auth.db_url) as session:
        events = audit.query(session, action="auth.", limit=100)
    assert [e["action"] for e in events].count("auth.lockout") == 1
    assert events[-1]["detail"]["reason"] == "account locked"

    store.update("liu", locked_until="2000-01-01T00:00:00+00:00")  # the lock ran out
    assert run_async(auth.authenticate(None, right))["name"] == "liu"
    assert store.load()["liu"].failed_logins == 0


def test_an_initial_password_opens_no_session_until_changed(
    store: AccountStore, tmp_path: Path
) -> None:
    store.add("he", real_name="何佳", role="merchant", tenant="shudao",
              password="initial-Pass-1", initial=True)  # fmt: skip
    auth = _authenticator(store, tmp_path)
    initial = {"username": "he", "password": "initial-Pass-1"}
    assert run_async(auth.authenticate(None, initial)) is None
    with pytest.raises(AccountError, match="至少三类"):
        store.set_password("he", "onlylowercase")
    store.set_password("he", "Minjiang-River-7")
    assert not store.load()["he"].must_change_password
    chosen = {"username": "he", "password": "Minjiang-River-7"}
    assert run_async(auth.authenticate(None, chosen))["groups"] == ["tenant-shudao"]


def test_the_hash_cost_is_the_operators_and_old_hashes_keep_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shuyu_platform.core.accounts import _timing_decoy
    from shuyu_platform.core.settings import Shuyu

    assert Shuyu().password_hash_cost == 12
    monkeypatch.setenv("SHUYU_PASSWORD_HASH_COST", "5")
    settings = Shuyu()
    assert settings.password_hash_cost == 5
    assert settings.service_environment()["SHUYU_PASSWORD_HASH_COST"] == "5"
    for wrong in (3, 32):
        with pytest.raises(ValueError, match="between 4 and 31"):
            Shuyu(password_hash_cost=wrong)

    path = tmp_path / "accounts.json"
    AccountStore(path).add("liu", real_name="刘洋", role="visitor", password="Qingcheng-Shan-9")
    cheap = AccountStore(path, hash_cost=4)
    cheap.add("he", real_name="何佳", role="visitor", password="Emei-Shan-Gold-7")
    hashes = {name: account.password_hash for name, account in cheap.load().items()}
    assert hashes["liu"].startswith("$2b$12$") and hashes["he"].startswith("$2b$04$")
    assert cheap.load()["liu"].check_password("Qingcheng-Shan-9")  # checked at its own cost
    # An unknown name costs what a known one does: the decoy has the configured cost.
    assert _timing_decoy(4).password_hash.startswith("$2b$04$")
    assert _timing_decoy(12).password_hash.startswith("$2b$12$")
