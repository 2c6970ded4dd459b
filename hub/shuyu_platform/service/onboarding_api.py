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
``/join/<id>?token=...``
    The applicant's status page, by the link (and token) given at submission.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from tornado import web

from .. import messages
from ..core.accounts import AccountStore
from ..core.db import session_scope
from ..core.models import Registration
from ..core.roles import TENANTS_MANAGE
from ..workflow import onboarding
from .base import ApiHandler, BaseHandler, refuse_cross_origin
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
        return AccountStore(self.shuyu.accounts_file, self.shuyu.password_hash_cost)

    def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Check and record a registration (:class:`onboarding.RegistrationError` if it
        cannot be): the registration as JSON, with the applicant's status link."""
        content = onboarding.parse(body, self.store)
        with session_scope(self.shuyu.db_url) as session:
            row, token = onboarding.submit(
                session,
                content,
                store=self.store,
                calendar=self.shuyu.calendar,
                days=self.shuyu.registration_review_days,
                actor=self.current_user["name"] if self.current_user else "anonymous",
            )
            status_path = f"join/{row.id}?token={token}"
            return {
                **onboarding.as_dict(row),
                "status_token": token,
                "status_url": f"{self.request.protocol}://{self.request.host}"
                f"{self.settings['service_prefix']}{status_path}",
            }

    def file(self, body: RegistrationBody) -> dict[str, Any]:
        """:meth:`submit`, its refusal an HTTP error."""
        try:
            return self.submit(body.model_dump())
        except onboarding.RegistrationError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None

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

    async def prepare(self) -> None:
        """Filing is open to anyone; listing needs a signed-in administrator."""
        if self.request.method != "POST":
            await super().prepare()
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
    """``/join``: the public registration form.

    A refused form comes back with what was typed and every problem beside its field
    (:attr:`onboarding.RegistrationError.errors`); a filed one gives the applicant the
    link, with its token, to their registration's status page.
    """

    def get(self) -> None:
        self.render_page("join.html", **self._form_context({}, {}))

    def _form_context(self, values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
        users = list(values.get("users", []))
        users += [{"username": "", "real_name": ""}] * max(0, FORM_USER_ROWS - len(users))
        return {
            "filed": None,
            "values": values,
            "users": users,
            "errors": errors,
            "xsrf_form_html": self.xsrf_form_html(),
        }

    def post(self) -> None:
        names = self.get_body_arguments("username")
        real_names = self.get_body_arguments("real_name")
        values: dict[str, Any] = {
            key: self.get_body_argument(key, "")
            for key in ("org_name", "uscc", "contact_name", "contact_phone", "tenant")
        }
        values["agreement_signed"] = self.get_body_argument("agreement_signed", "") == "yes"
        values["users"] = [
            {"username": n.strip(), "real_name": r.strip()}
            for n, r in zip(names, real_names, strict=False)
            if n.strip() or r.strip()
        ]
        try:
            filed = self.submit(values)
        except onboarding.RegistrationError as err:
            self.set_status(err.status)
            errors = err.errors or {"form": err.message}
            self.render_page("join.html", **self._form_context(values, errors))
            return
        self.set_status(201)
        self.render_page("join.html", filed=filed, values={}, users=[], errors={})


class JoinStatusPage(RegistrationHandler):
    """``/join/<id>?token=...``: the applicant's view of their registration, by the link
    given at submission (the token is the only key; nothing else is shown without it)."""

    def _request_summary(self) -> str:
        """The access log's line without the query string, which holds the token."""
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    def get(self, registration_id: str) -> None:
        token = self.get_query_argument("token", "")
        with session_scope(self.shuyu.db_url) as session:
            row = onboarding.by_token(session, registration_id, token) if token else None
            registration = onboarding.as_dict(row) if row is not None else None
        if registration is None:
            raise web.HTTPError(
                404,
                "%s",
                messages.text("No registration with this link; check the address you were given."),
            )
        self.render_page("join_status.html", r=registration)


#: Rows of user fields an empty registration form offers.
FORM_USER_ROWS = 3


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
        (r"join/([0-9a-f]{32})/?", JoinStatusPage),
        (r"onboarding/?", OnboardingPage),
    ]
