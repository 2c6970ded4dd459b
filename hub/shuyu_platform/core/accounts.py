"""Real-name accounts of the embedded deployment, and the hub authenticator over them.

R16 asks that everyone who processes data be real-name registered. In the embedded
deployment the hub keeps its accounts in one JSON file under ``<home>/hub/``, each with
a bcrypt hash (never a password), the person's real name, their Shuyu role and, for
merchants, their tenant. A production deployment swaps the authenticator for the
operator's identity provider (OAuthenticator, LDAP) and keeps the same role and
tenant model.

The authenticator manages JupyterHub roles and groups: at every login it hands the
hub the account's role and ``tenant-<slug>`` group, so a change of account takes
effect at the next login without a hub restart.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from dataclasses import replace as replaced
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
from jupyterhub.auth import Authenticator
from traitlets import Integer, Unicode, default

from . import audit, roles

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,62}$")
MIN_PASSWORD_LENGTH = 10


class AccountError(ValueError):
    """An account operation that cannot be done, with the reason for a person."""


@dataclass(frozen=True)
class Account:
    """One person who may log in."""

    name: str
    real_name: str
    role: str
    password_hash: str
    tenant: str | None = None
    disabled: bool = False
    departments: list[str] = field(default_factory=list)
    """Source departments a source-reviewer speaks for (as policies name them)."""
    must_change_password: bool = False
    """The password is an initial one (handed over by the operator): it opens no session,
    only the password-change page, where its holder chooses their own."""
    failed_logins: int = 0
    """Wrong passwords since the last successful login."""
    locked_until: str = ""
    """UTC ISO moment until which the account refuses every login (after repeated
    failures); empty if not locked."""

    def locked(self, now: datetime | None = None) -> bool:
        """Whether the account is locked at ``now``."""
        if not self.locked_until:
            return False
        return datetime.fromisoformat(self.locked_until) > (now or datetime.now(UTC))

    def check_password(self, password: str) -> bool:
        """Whether ``password`` matches the stored bcrypt hash."""
        try:
            return bcrypt.checkpw(password.encode("utf-8"), self.password_hash.encode("ascii"))
        except ValueError:
            return False


def password_problems(password: str, name: str = "") -> list[str]:
    """What a newly chosen password lacks (empty if it is acceptable), for a person:
    at least :data:`MIN_PASSWORD_LENGTH` characters and at most 72 bytes, three of the
    four kinds of character (lower case, upper case, digits, others), and not the user
    name."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(
            f"至少 {MIN_PASSWORD_LENGTH} 个字符 at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password.encode("utf-8")) > 72:
        problems.append("最多 72 字节 at most 72 bytes")
    kinds = sum(
        any(test(c) for c in password)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )
    if kinds < 3:
        problems.append(
            "小写字母、大写字母、数字、其他符号中至少三类 "
            "three of: lower case, upper case, digits, other characters"
        )
    if name and name.lower() in password.lower():
        problems.append("不能包含用户名 must not contain the user name")
    return problems


#: bcrypt cost of new hashes unless the operator sets ``Shuyu.password_hash_cost``.
DEFAULT_HASH_COST = 12


def hash_password(password: str, cost: int = DEFAULT_HASH_COST) -> str:
    """A bcrypt hash of ``password`` at ``cost`` (bcrypt reads at most 72 bytes of it)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode("utf-8")) > 72:
        raise AccountError("a password may have at most 72 bytes (bcrypt ignores the rest)")
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=cost)).decode("ascii")


class AccountStore:
    """The accounts file: read whole, written whole and atomically."""

    def __init__(self, path: Path, hash_cost: int = DEFAULT_HASH_COST) -> None:
        self.path = Path(path)
        self.hash_cost = hash_cost

    def load(self) -> dict[str, Account]:
        """Every account by user name (empty if the file does not exist yet)."""
        if not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            return {name: Account(name=name, **spec) for name, spec in raw["users"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise AccountError(f"{self.path}: not a valid accounts file ({exc})") from exc

    def save(self, accounts: dict[str, Account]) -> None:
        """Replace the file atomically (a crash leaves the old file or the new one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "version": 1,
            "users": {
                name: {k: v for k, v in asdict(acc).items() if k != "name"}
                for name, acc in sorted(accounts.items())
            },
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".accounts-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(body, fh, ensure_ascii=False, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add(
        self,
        name: str,
        *,
        real_name: str,
        role: str,
        password: str,
        tenant: str | None = None,
        departments: Sequence[str] = (),
        replace: bool = False,
        initial: bool = False,
    ) -> Account:
        """Create (or, with ``replace``, overwrite) one account after validating it; an
        ``initial`` password must be changed at first login."""
        if not USERNAME.match(name):
            raise AccountError(
                f"user name {name!r} must be 2-63 lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter"
            )
        if role not in roles.ROLES:
            raise AccountError(f"unknown role {role!r}; roles are {', '.join(roles.ROLES)}")
        if role == "merchant" and not tenant:
            raise AccountError("a merchant account needs a tenant")
        if role != "merchant" and tenant:
            raise AccountError(f"only merchants belong to a tenant, not a {role}")
        if tenant and not roles.TENANT_SLUG.match(tenant):
            raise AccountError(
                f"tenant {tenant!r} must be 3-40 lower-case letters, digits or '-', "
                "starting with a letter"
            )
        if role == "source-reviewer" and not departments:
            raise AccountError("a source-reviewer account needs the department(s) it speaks for")
        if role != "source-reviewer" and departments:
            raise AccountError(f"only source reviewers speak for departments, not a {role}")
        if not real_name.strip():
            raise AccountError("a real name is required (real-name registration, R16)")
        accounts = self.load()
        if name in accounts and not replace:
            raise AccountError(f"account {name!r} exists already")
        account = Account(
            name=name,
            real_name=real_name.strip(),
            role=role,
            password_hash=hash_password(password, self.hash_cost),
            tenant=tenant,
            departments=[d.strip() for d in departments if d.strip()],
            must_change_password=initial,
        )
        accounts[name] = account
        self.save(accounts)
        return account

    def update(self, name: str, **changes: Any) -> Account:
        """Change fields of account ``name`` (read, changed and written whole)."""
        accounts = self.load()
        if name not in accounts:
            raise AccountError(f"no account {name!r}")
        accounts[name] = replaced(accounts[name], **changes)
        self.save(accounts)
        return accounts[name]

    def set_password(self, name: str, password: str) -> Account:
        """Give ``name`` a password they chose (checked against :func:`password_problems`);
        it is no longer an initial one, and any lock is lifted."""
        problems = password_problems(password, name)
        if problems:
            raise AccountError("；".join(problems))
        return self.update(
            name,
            password_hash=hash_password(password, self.hash_cost),
            must_change_password=False,
            failed_logins=0,
            locked_until="",
        )

    def members_by_role(self) -> dict[str, list[str]]:
        """User names of every enabled account, grouped by role."""
        members: dict[str, list[str]] = {}
        for account in self.load().values():
            if not account.disabled:
                members.setdefault(account.role, []).append(account.name)
        return members


@functools.cache
def _timing_decoy(cost: int) -> Account:
    """An account no one has, checked instead of an unknown name's: a hash of ``cost``
    takes as long to check as a real account's."""
    decoy = bcrypt.hashpw(b"decoy-password", bcrypt.gensalt(rounds=cost)).decode("ascii")
    return Account(name="decoy", real_name="decoy", role="visitor", password_hash=decoy)


class ShuyuAuthenticator(Authenticator):
    """Password login against the accounts file; every attempt is audited."""

    accounts_file = Unicode(
        help="JSON file of real-name accounts with bcrypt hashes (see `shuyu accounts`).",
    ).tag(config=True)

    db_url = Unicode(help="Platform database URL, where login events are recorded.").tag(
        config=True
    )

    lockout_failures = Integer(
        5, help="Wrong passwords in a row after which an account is locked (see Shuyu)."
    ).tag(config=True)

    lockout_minutes = Integer(
        15, help="Minutes a locked account refuses every login (see Shuyu)."
    ).tag(config=True)

    hash_cost = Integer(
        DEFAULT_HASH_COST, help="bcrypt cost of new password hashes (see Shuyu)."
    ).tag(config=True)

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        """The login page that sends an initial password to the password-change page,
        and that page (:mod:`.password_pages`)."""
        from .password_pages import ChangePasswordHandler, ShuyuLoginHandler

        return [("/login", ShuyuLoginHandler), ("/change-password", ChangePasswordHandler)]

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    @default("manage_roles")
    def _default_manage_roles(self) -> bool:
        return True

    @default("reset_managed_roles_on_startup")
    def _default_reset_roles(self) -> bool:
        return True

    @default("allow_all")
    def _default_allow_all(self) -> bool:
        # Only holders of an enabled account can authenticate at all.
        return True

    @property
    def store(self) -> AccountStore:
        """The accounts file."""
        return AccountStore(Path(self.accounts_file), self.hash_cost)

    async def check(self, handler: Any, name: str, password: str) -> Account | None:
        """The account if ``password`` is its password and it may log in; else None.

        Every attempt is audited (``auth.login``); wrong passwords are counted, and the
        :attr:`lockout_failures`-th in a row locks the account for :attr:`lockout_minutes`
        (``auth.lockout``). A locked account refuses even its right password.
        """
        account = self.store.load().get(name)
        remote = handler.request.remote_ip if handler is not None else ""
        # bcrypt is slow on purpose: keep it off the hub's event loop, and spend the same
        # time on unknown names so that timing does not reveal which accounts exist.
        checked = account or _timing_decoy(self.hash_cost)
        password_ok = await asyncio.to_thread(checked.check_password, password)
        reason = (
            "unknown account"
            if account is None
            else "account disabled"
            if account.disabled
            else "account locked"
            if account.locked()
            else ""
            if password_ok
            else "wrong password"
        )
        if account is not None and reason == "wrong password":
            failures = account.failed_logins + 1
            locked = ""
            if failures >= self.lockout_failures:
                until = datetime.now(UTC) + timedelta(minutes=self.lockout_minutes)
                locked = until.isoformat(timespec="seconds")
            self.store.update(name, failed_logins=failures, locked_until=locked)
            if locked:
                await self.record(
                    name, "denied", {"failures": failures, "until": locked}, action="auth.lockout"
                )
        if reason:
            await self.record(name or "(empty)", "denied", {"reason": reason, "remote_ip": remote})
            return None
        assert account is not None
        if account.failed_logins or account.locked_until:
            account = self.store.update(name, failed_logins=0, locked_until="")
        return account

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        """Check the password; hand the hub the account's role and tenant group.

        An initial password opens no session: its holder must choose their own first
        (the login page sends them to the password-change page)."""
        name = self.normalize_username(data.get("username", ""))
        account = await self.check(handler, name, data.get("password", ""))
        if account is None:
            return None
        remote = handler.request.remote_ip if handler is not None else ""
        if account.must_change_password:
            await self.record(
                name, "denied", {"reason": "initial password must be changed", "remote_ip": remote}
            )
            return None
        await self.record(
            name, "ok", {"role": account.role, "remote_ip": remote}, tenant=account.tenant
        )
        return {
            "name": name,
            "admin": False,  # Shuyu's admins hold the narrower shuyu-admin role instead
            "groups": [roles.tenant_group(account.tenant)] if account.tenant else [],
            "roles": [roles.role_definition(account.role)],
        }

    async def load_managed_roles(self) -> list[dict[str, Any]]:
        """Shuyu's roles with their current members, loaded at hub start-up."""
        _, managed = roles.hub_roles(self.store.members_by_role())
        return managed

    async def record(
        self,
        name: str,
        outcome: audit.Outcome,
        detail: dict[str, Any],
        tenant: str | None = None,
        action: str = "auth.login",
    ) -> None:
        """Append one account event to the audit chain (``auth.login`` unless named)."""
        if self.db_url:
            await asyncio.to_thread(
                audit.append,
                self.db_url,
                actor=name,
                action=action,
                target="hub",
                outcome=outcome,
                tenant=tenant,
                detail=detail,
            )
