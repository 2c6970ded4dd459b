"""Accounts: validated, stored as bcrypt hashes only, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shuyu_platform.core.accounts import AccountError, AccountStore


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
