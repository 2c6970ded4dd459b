"""Merchant registration (R18): an organisation applies to join; the operator decides.

An organisation files its name, unified social credit code (checked by its check
characters), a contact person and mobile number, the tenant name it wants, its
real-name users, and confirms it signed the platform agreement. The operator
(``tenants:manage``) answers within ``c.Shuyu.registration_review_days`` working days:
approval creates the tenant (the ``tenant-<slug>`` group appears at its users' first
login) and one merchant account per user, each with a one-time initial password
shown to the approving administrator only; a rejection states its reasons.

::

    submitted --approve--> approved
    submitted --reject (reasons)--> rejected
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import messages
from ..core import audit
from ..core.accounts import USERNAME, AccountError, AccountStore
from ..core.db import stamp
from ..core.models import Grant, Registration
from ..core.roles import TENANT_SLUG
from ..core.workdays import Calendar
from ..data.identifiers import is_mobile, is_valid_uscc
from . import transitions as workflow
from .transitions import WorkflowError

TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "submitted": {"approve": "approved", "reject": "rejected"},
    "approved": {},
    "rejected": {},
}
#: Most users one registration may name.
MAX_USERS: Final[int] = 50


class RegistrationError(WorkflowError):
    """A registration or decision that cannot be made; ``status`` is the HTTP status.

    ``errors`` maps each form field at fault (``uscc``, ``users.0.username``, ...) to
    what is wrong with it, in Chinese and English, so that a form shows every problem
    beside its field at once.
    """

    def __init__(self, message: str, status: int = 400, errors: dict[str, str] | None = None):
        super().__init__(message, status)
        self.errors: dict[str, str] = errors or {}


#: Most characters of each text field of a registration.
LIMITS: Final[dict[str, int]] = {
    "org_name": 200,
    "uscc": 18,
    "contact_name": 100,
    "contact_phone": 20,
    "tenant": 40,
}


def _text(body: Mapping[str, Any], key: str, errors: dict[str, str]) -> str:
    """``body[key]`` stripped; a missing, empty or too long value is noted in ``errors``."""
    value = body.get(key, "")
    if not isinstance(value, str) or not value.strip():
        errors[key] = messages.text("Required.")
        return ""
    if len(value.strip()) > LIMITS[key]:
        errors[key] = messages.text("At most {limit} characters.", limit=LIMITS[key])
    return value.strip()


def _users(raw: Any, existing: set[str], errors: dict[str, str]) -> list[dict[str, str]]:
    """The checked real-name users; each problem noted beside its row."""
    if not isinstance(raw, list) or not raw:
        errors["users"] = messages.text("Name at least one real-name user.")
        return []
    if len(raw) > MAX_USERS:
        errors["users"] = messages.text("At most {limit} users.", limit=MAX_USERS)
        return []
    seen: set[str] = set()
    clean = []
    for position, user in enumerate(raw):
        if not isinstance(user, Mapping):
            errors[f"users.{position}.username"] = messages.text("Required.")
            continue
        name = str(user.get("username", "")).strip()
        real_name = str(user.get("real_name", "")).strip()
        where = f"users.{position}"
        if not USERNAME.match(name):
            errors[f"{where}.username"] = messages.text(
                "2 to 63 lower-case letters, digits, '.', '_' or '-'."
            )
        elif name in seen:
            errors[f"{where}.username"] = messages.text("Listed twice.")
        elif name in existing:
            errors[f"{where}.username"] = messages.text("This user name is taken.")
        if not real_name:
            errors[f"{where}.real_name"] = messages.text("Real-name registration: required.")
        elif len(real_name) > 100:
            errors[f"{where}.real_name"] = messages.text("At most {limit} characters.", limit=100)
        seen.add(name)
        clean.append({"username": name, "real_name": real_name})
    return clean


def parse(body: Mapping[str, Any], store: AccountStore) -> dict[str, Any]:
    """The checked content of a registration; any problem is a 400 naming every field
    at fault (:attr:`RegistrationError.errors`)."""
    errors: dict[str, str] = {}
    org_name = _text(body, "org_name", errors)
    uscc = _text(body, "uscc", errors).upper()
    if uscc and "uscc" not in errors and not is_valid_uscc(uscc):
        errors["uscc"] = messages.text("Not a valid unified social credit code.")
    contact_name = _text(body, "contact_name", errors)
    phone = _text(body, "contact_phone", errors).replace(" ", "").replace("-", "")
    if phone and "contact_phone" not in errors and not is_mobile(phone):
        errors["contact_phone"] = messages.text("Not a mainland mobile number.")
    tenant = _text(body, "tenant", errors)
    if tenant and "tenant" not in errors and not TENANT_SLUG.match(tenant):
        errors["tenant"] = messages.text(
            "3 to 40 lower-case letters, digits or '-', starting with a letter."
        )
    if body.get("agreement_signed") is not True:
        errors["agreement_signed"] = messages.text("Sign the platform agreement first.")
    users = _users(body.get("users"), set(store.load()), errors)
    if errors:
        raise RegistrationError("；".join(errors.values()), errors=errors)
    return {
        "org_name": org_name,
        "uscc": uscc,
        "contact_name": contact_name,
        "contact_phone": phone,
        "tenant": tenant,
        "users": users,
    }


def tenant_exists(session: Session, store: AccountStore, slug: str) -> bool:
    """Whether a tenant of that name has accounts or grants already."""
    if any(a.tenant == slug for a in store.load().values()):
        return True
    granted = session.scalars(select(Grant.id).where(Grant.tenant == slug).limit(1)).first()
    return granted is not None


def submit(
    session: Session,
    content: Mapping[str, Any],
    *,
    store: AccountStore,
    calendar: Calendar,
    days: int,
    actor: str,
    now: datetime | None = None,
) -> tuple[Registration, str]:
    """Record a checked registration with the operator's deadline (audited); the row and
    the status token the applicant follows it with (shown once, stored hashed)."""
    moment = now or datetime.now(UTC)
    conflicts = duplicates(session, store, content)
    if conflicts:
        raise RegistrationError("；".join(conflicts.values()), 409, conflicts)
    token = secrets.token_urlsafe(24)
    row = Registration(
        id=uuid.uuid4().hex,
        org_name=content["org_name"],
        uscc=content["uscc"],
        contact_name=content["contact_name"],
        contact_phone=content["contact_phone"],
        tenant=content["tenant"],
        users=json.dumps(content["users"], ensure_ascii=False),
        status="submitted",
        deadline=stamp(calendar.deadline(moment, days)),
        decided_by="",
        reason="",
        status_token_sha256=token_hash(token),
        created_at=stamp(moment),
        updated_at=stamp(moment),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="registration.submit",
        target=f"registration:{row.id}",
        tenant=row.tenant,
        detail={"org_name": row.org_name, "uscc": row.uscc, "users": len(content["users"])},
    )
    return row, token


def token_hash(token: str) -> str:
    """What is stored of a registration's status token (SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def by_token(session: Session, registration_id: str, token: str) -> Registration | None:
    """The registration ``registration_id`` if ``token`` is its status token, else None."""
    row = session.get(Registration, registration_id)
    if row is None or not row.status_token_sha256:
        return None
    return row if hmac.compare_digest(row.status_token_sha256, token_hash(token)) else None


def duplicates(session: Session, store: AccountStore, content: Mapping[str, Any]) -> dict[str, str]:
    """Fields of ``content`` that clash with an existing tenant or a pending registration:
    the same credit code or tenant name while one is waiting, or a user name another
    pending registration asks for (whose approval would then fail)."""
    clashes: dict[str, str] = {}
    pending = list(session.scalars(select(Registration).where(Registration.status == "submitted")))
    if any(r.uscc == content["uscc"] for r in pending):
        clashes["uscc"] = messages.text(
            "A registration with this credit code is waiting for a decision already."
        )
    if tenant_exists(session, store, content["tenant"]) or any(
        r.tenant == content["tenant"] for r in pending
    ):
        clashes["tenant"] = messages.text("This tenant name is taken; choose another.")
    asked = {u["username"] for r in pending for u in json.loads(r.users)}
    for position, user in enumerate(content["users"]):
        if user["username"] in asked:
            clashes[f"users.{position}.username"] = messages.text("This user name is taken.")
    return clashes


def decide(
    session: Session,
    row: Registration,
    action: str,
    *,
    actor: str,
    reason: str,
    store: AccountStore,
    now: datetime | None = None,
) -> dict[str, str]:
    """Approve (creating the tenant's accounts) or reject; returns initial passwords."""
    after = workflow.next_status(
        TRANSITIONS, row.status, action, f"registration {row.id}", RegistrationError
    )
    reason = reason.strip()
    if action == "reject" and not reason:
        raise RegistrationError("a rejection needs its reasons, for the organisation")
    passwords: dict[str, str] = {}
    if action == "approve":
        if tenant_exists(session, store, row.tenant):
            raise RegistrationError(f"a tenant named {row.tenant} exists meanwhile", 409)
        users = json.loads(row.users)
        taken = [u["username"] for u in users if u["username"] in store.load()]
        if taken:
            raise RegistrationError(f"user name(s) {', '.join(taken)} taken meanwhile", 409)
        for user in users:
            password = secrets.token_urlsafe(12)
            try:
                store.add(
                    user["username"],
                    real_name=user["real_name"],
                    role="merchant",
                    password=password,
                    tenant=row.tenant,
                    initial=True,  # changed by its holder at first login
                )
            except AccountError as err:
                raise RegistrationError(str(err), 409) from None
            passwords[user["username"]] = password
    before = row.status
    row.status = after
    row.decided_by = actor
    row.reason = reason
    row.updated_at = stamp(now)
    audit.record(
        session,
        actor=actor,
        action=f"registration.{action}",
        target=f"registration:{row.id}",
        tenant=row.tenant,
        detail={
            "from": before,
            "to": row.status,
            "reason": reason,
            "accounts": sorted(passwords),
        },
    )
    return passwords


def as_dict(row: Registration) -> dict[str, Any]:
    """A registration as JSON."""
    return {
        "id": row.id,
        "org_name": row.org_name,
        "uscc": row.uscc,
        "contact_name": row.contact_name,
        "contact_phone": row.contact_phone,
        "tenant": row.tenant,
        "users": json.loads(row.users),
        "status": row.status,
        "deadline": row.deadline,
        "decided_by": row.decided_by,
        "reason": row.reason,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
