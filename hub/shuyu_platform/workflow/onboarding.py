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

import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    """A registration or decision that cannot be made; ``status`` is the HTTP status."""


def _text(body: Mapping[str, Any], key: str, limit: int) -> str:
    return workflow.text_field(body, key, limit=limit, error=RegistrationError)


def parse(body: Mapping[str, Any], store: AccountStore) -> dict[str, Any]:
    """The checked content of a registration; every problem is a clear 400."""
    uscc = _text(body, "uscc", 18).upper()
    if not is_valid_uscc(uscc):
        raise RegistrationError(
            f"{uscc} is not a valid unified social credit code (its check characters fail)"
        )
    phone = _text(body, "contact_phone", 20).replace(" ", "").replace("-", "")
    if not is_mobile(phone):
        raise RegistrationError(f"{phone} is not a mainland mobile number")
    tenant = _text(body, "tenant", 40)
    if not TENANT_SLUG.match(tenant):
        raise RegistrationError(
            f"tenant {tenant!r} must be 3-40 lower-case letters, digits or '-', "
            "starting with a letter"
        )
    if body.get("agreement_signed") is not True:
        raise RegistrationError("the platform agreement must be signed before registering")
    users = body.get("users")
    if not isinstance(users, list) or not users or len(users) > MAX_USERS:
        raise RegistrationError(f"users must list 1 to {MAX_USERS} {{username, real_name}}")
    existing = store.load()
    seen: set[str] = set()
    clean = []
    for position, user in enumerate(users):
        if not isinstance(user, Mapping):
            raise RegistrationError(f"users[{position}] needs a username and a real_name")
        name = str(user.get("username", "")).strip()
        real_name = str(user.get("real_name", "")).strip()
        if not USERNAME.match(name):
            raise RegistrationError(
                f"user name {name!r} must be 2-63 lower-case letters, digits, '.', '_' or '-'"
            )
        if not real_name:
            raise RegistrationError(f"{name} needs a real name (real-name registration)")
        if name in seen:
            raise RegistrationError(f"{name} is listed twice")
        if name in existing:
            raise RegistrationError(f"the user name {name} is taken; choose another")
        seen.add(name)
        clean.append({"username": name, "real_name": real_name})
    return {
        "org_name": _text(body, "org_name", 200),
        "uscc": uscc,
        "contact_name": _text(body, "contact_name", 100),
        "contact_phone": phone,
        "tenant": tenant,
        "users": clean,
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
) -> Registration:
    """Record a checked registration with the operator's deadline (audited)."""
    moment = now or datetime.now(UTC)
    if tenant_exists(session, store, content["tenant"]):
        raise RegistrationError(f"a tenant named {content['tenant']} exists; choose another", 409)
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
    return row


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
