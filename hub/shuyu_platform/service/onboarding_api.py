"""Merchant registration over HTTP and as pages (R18).

``/join`` and ``POST api/onboarding/registrations``
    Open to anyone (an organisation has no account before it joins): the registration
    form and its JSON twin. A filed registration is audited with the actor
    ``anonymous`` (or the signed-in user).
``GET api/onboarding/registrations`` and ``/onboarding``
    Administrators (``tenants:manage``) see every registration with its deadline.
``POST api/onboarding/registrations/<id>/decision`` and the ``/onboarding`` form
    ``{"action": "approve" | "reject", "reason": "..."}``; an approval answers with the
    new accounts' one-time initial passwords, shown to the administrator only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from tornado import web

from ..core.accounts import AccountStore
from ..core.db import session_scope
from ..core.models import Registration
from ..core.roles import TENANTS_MANAGE
from ..workflow import onboarding
from .base import ApiHandler, BaseHandler, message_of, refuse_cross_origin
from .request_models import (
    REGISTRATION,
    REGISTRATION_DECISION,
    RegistrationBody,
    RegistrationDecisionBody,
)


class RegistrationHandler(BaseHandler):
    """What the registration routes share."""

    @property
    def store(self) -> AccountStore:
        """The hub's accounts file, where approved users are created."""
        return AccountStore(self.shuyu.accounts_file)

    def file(self, body: RegistrationBody) -> dict[str, Any]:
        """Check and record a registration; the registration as JSON."""
        try:
            content = onboarding.parse(body.model_dump(), self.store)
            with session_scope(self.shuyu.db_url) as session:
                row = onboarding.submit(
                    session,
                    content,
                    store=self.store,
                    calendar=self.shuyu.calendar,
                    days=self.shuyu.registration_review_days,
                    actor=self.current_user["name"] if self.current_user else "anonymous",
                )
                return onboarding.as_dict(row)
        except onboarding.RegistrationError as err:
            raise web.HTTPError(err.status, err.message) from None

    def listing(self) -> list[dict[str, Any]]:
        """Every registration, newest first (administrators only)."""
        self.require_scope(TENANTS_MANAGE, "Merchant registrations", "admin")
        with session_scope(self.shuyu.db_url) as session:
            rows = session.scalars(
                select(Registration).order_by(Registration.created_at.desc()).limit(500)
            )
            return [onboarding.as_dict(r) for r in rows]

    def decide(self, registration_id: str, decision: RegistrationDecisionBody) -> dict[str, Any]:
        """An administrator's decision; with an approval, the initial passwords."""
        self.require_scope(TENANTS_MANAGE, "Deciding registrations", "admin")
        try:
            with session_scope(self.shuyu.db_url) as session:
                row = session.get(Registration, registration_id)
                if row is None:
                    raise web.HTTPError(404, f"no registration {registration_id}")
                passwords = onboarding.decide(
                    session,
                    row,
                    decision.action,
                    actor=self.user["name"],
                    reason=decision.reason,
                    store=self.store,
                )
                return {**onboarding.as_dict(row), "initial_passwords": passwords}
        except onboarding.RegistrationError as err:
            raise web.HTTPError(err.status, err.message) from None


class RegistrationsApi(RegistrationHandler, ApiHandler):
    """``POST`` (anyone) / ``GET`` (administrators) ``api/onboarding/registrations``."""

    def prepare(self) -> None:
        """Filing is open to anyone; listing needs a signed-in administrator."""
        if self.request.method != "POST":
            super().prepare()
        else:
            refuse_cross_origin(self.request)

    def get(self) -> None:
        self.write_json({"registrations": self.listing()})

    def post(self) -> None:
        self.write_json(self.file(self.body(REGISTRATION)), 201)


class RegistrationDecisionApi(RegistrationHandler, ApiHandler):
    """``POST api/onboarding/registrations/<id>/decision``."""

    def post(self, registration_id: str) -> None:
        self.write_json(self.decide(registration_id, self.body(REGISTRATION_DECISION)))


class JoinPage(RegistrationHandler):
    """``/join``: the public registration form."""

    def get(self) -> None:
        self.render_page("join.html", filed=None, error="", xsrf_form_html=self.xsrf_form_html())

    def post(self) -> None:
        names = self.get_body_arguments("username")
        real_names = self.get_body_arguments("real_name")
        body = {
            key: self.get_body_argument(key, "")
            for key in ("org_name", "uscc", "contact_name", "contact_phone", "tenant")
        }
        body["agreement_signed"] = self.get_body_argument("agreement_signed", "") == "yes"
        body["users"] = [
            {"username": n, "real_name": r} for n, r in zip(names, real_names, strict=False) if n
        ]
        try:
            filed = self.file(self.declared(REGISTRATION, body))
        except web.HTTPError as err:
            self.set_status(err.status_code)
            self.render_page(
                "join.html",
                filed=None,
                error=message_of(err),
                xsrf_form_html=self.xsrf_form_html(),
            )
            return
        self.set_status(201)
        self.render_page("join.html", filed=filed, error="", xsrf_form_html="")


class OnboardingPage(RegistrationHandler):
    """``/onboarding``: the registrations, and the administrator's decision forms."""

    @web.authenticated
    def get(self) -> None:
        self.render_page(
            "onboarding.html",
            registrations=self.listing(),
            decided=None,
            xsrf_form_html=self.xsrf_form_html(),
        )

    @web.authenticated
    def post(self) -> None:
        decision = {key: self.get_body_argument(key, "") for key in ("action", "reason")}
        decided = self.decide(
            self.get_body_argument("registration", ""),
            self.declared(REGISTRATION_DECISION, decision),
        )
        self.render_page(
            "onboarding.html",
            registrations=self.listing(),
            decided=decided,
            xsrf_form_html=self.xsrf_form_html(),
        )


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"api/onboarding/registrations/?", RegistrationsApi),
        (r"api/onboarding/registrations/([0-9a-f]{32})/decision/?", RegistrationDecisionApi),
        (r"join/?", JoinPage),
        (r"onboarding/?", OnboardingPage),
    ]
