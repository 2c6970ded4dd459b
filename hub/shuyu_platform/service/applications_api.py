"""Scenario applications over HTTP and as pages (R19, R20): apply, review, get grants.

``POST api/applications``
    A merchant applies for one scenario (:func:`..applications.parse` states the body).
``GET api/applications`` and ``GET api/applications/<id>``
    Merchants see their tenant's applications; compliance reviewers, administrators
    and auditors see all; a source reviewer sees those that touch its departments.
``POST api/applications/<id>/decision``
    ``{"action": "compliance_approve" | "source_approve" | "reject" | "extend" |
    "withdraw", "comment": "...", "department": "..."}``.
``/applications``, ``/applications/new``, ``/applications/<id>``
    The same as pages: the list, the application form, one application with its
    decisions and the decision form of whoever may act on it now.

An approval (also a deemed one, made by the service's sweep) issues the grants, and
the service builds the tenant's masked views of them at once, off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from tornado import web

from ..core.accounts import AccountStore
from ..core.db import session_scope
from ..core.models import Application
from ..core.roles import (
    APPLICATIONS_REVIEW,
    APPLICATIONS_SOURCE_REVIEW,
    APPLICATIONS_SUBMIT,
    AUDIT_READ,
    TENANTS_MANAGE,
)
from ..core.settings import Shuyu
from ..workflow import applications
from .base import ApiHandler, BaseHandler
from .request_models import (
    APPLICATION,
    APPLICATION_DECISION,
    ApplicationBody,
    ApplicationDecisionBody,
)

log = logging.getLogger("shuyu.service")


def build_views(settings: Shuyu, approved: list[tuple[str, list[str]]]) -> None:
    """Build the masked views of newly approved applications: (tenant, datasets) pairs."""
    from ..access.tenant_views import build_tenant
    from ..data.views import ViewBuildError

    for tenant, datasets in approved:
        try:
            build_tenant(settings, tenant, actor="platform", datasets=set(datasets))
        except ViewBuildError as err:  # audited by build_tenant; the sweep does not rebuild
            log.error("views of approved application for %s not built: %s", tenant, err)


def process_deadlines(settings: Shuyu, policies: dict[str, Any]) -> list[str]:
    """Deemed approvals past their deadline, then the views of those now approved."""
    with session_scope(settings.db_url) as session:
        changed = applications.process_deadlines(session, settings, policies)
        done = [
            (r.tenant, [d["dataset"] for d in json.loads(r.datasets)])
            for r in changed
            if r.status == "approved"
        ]
        ids = [r.id for r in changed]
    build_views(settings, done)
    return ids


class ApplicationHandler(BaseHandler):
    """What the application routes share: who sees what, and how a decision is made."""

    @functools.cached_property
    def departments(self) -> list[str]:
        """The departments the signed-in source reviewer speaks for (read once a request)."""
        if not self.has_scope(APPLICATIONS_SOURCE_REVIEW):
            return []
        account = AccountStore(self.shuyu.accounts_file).load().get(self.user["name"])
        return list(account.departments) if account else []

    def sees_all(self) -> bool:
        """Compliance reviewers, administrators and auditors see every application."""
        return any(self.has_scope(s) for s in (APPLICATIONS_REVIEW, TENANTS_MANAGE, AUDIT_READ))

    def visible(self, row: Application) -> bool:
        """Whether the caller may see ``row``."""
        if self.sees_all() or row.tenant == self.tenant:
            return True
        return bool(set(self.departments) & set(applications.departments(row)))

    def listing(self) -> list[dict[str, Any]]:
        """Every application the caller may see, newest first."""
        if not (self.sees_all() or self.tenant or self.departments):
            self.require_scope(APPLICATIONS_SUBMIT, "Scenario applications", "merchant")
        with session_scope(self.shuyu.db_url) as session:
            rows = session.scalars(
                select(Application).order_by(Application.created_at.desc()).limit(500)
            )
            return [applications.as_dict(r) for r in rows if self.visible(r)]

    def one(self, application_id: str) -> dict[str, Any]:
        """One application with its decisions, or a 404."""
        with session_scope(self.shuyu.db_url) as session:
            row = session.get(Application, application_id)
            if row is None or not self.visible(row):
                raise web.HTTPError(404, f"no application {application_id} that you may see")
            body = applications.as_dict(row, applications.decisions_of(session, row.id))
            body["pending_departments"] = applications.pending_departments(session, row)
        return body

    def submit(self, body: ApplicationBody) -> dict[str, Any]:
        """File a new application for the caller's tenant."""
        self.require_scope(APPLICATIONS_SUBMIT, "Applying for a scenario", "merchant")
        if self.tenant is None:
            raise web.HTTPError(403, f"{self.user['name']} belongs to no tenant.")
        try:
            content = applications.parse(
                body.model_dump(exclude_unset=True),
                self.settings["policies"],
                today=datetime.now(UTC).date(),
            )
            with session_scope(self.shuyu.db_url) as session:
                row = applications.submit(
                    session,
                    content,
                    tenant=self.tenant,
                    applicant=self.user["name"],
                    calendar=self.shuyu.calendar,
                    days=self.shuyu.compliance_review_days,
                )
                return applications.as_dict(row, applications.decisions_of(session, row.id))
        except applications.ApplicationError as err:
            raise web.HTTPError(err.status, err.message) from None

    async def decide(
        self, application_id: str, decision: ApplicationDecisionBody
    ) -> dict[str, Any]:
        """Record a person's decision; an approval's views are built before answering."""
        try:
            with session_scope(self.shuyu.db_url) as session:
                row = session.get(Application, application_id)
                if row is None or not self.visible(row):
                    raise web.HTTPError(404, f"no application {application_id} that you may see")
                applications.decide(
                    session,
                    row,
                    decision.action,
                    actor=self.user["name"],
                    actor_scopes=sorted(self.scopes),
                    actor_departments=self.departments,
                    actor_tenant=self.tenant,
                    comment=decision.comment,
                    department=decision.department,
                    settings=self.shuyu,
                    policies=self.settings["policies"],
                )
                approved = row.status == "approved"
                datasets = [d["dataset"] for d in json.loads(row.datasets)]
                tenant = row.tenant
        except applications.ApplicationError as err:
            raise web.HTTPError(err.status, err.message) from None
        if approved:
            await asyncio.to_thread(build_views, self.shuyu, [(tenant, datasets)])
        return self.one(application_id)


class ApplicationsApi(ApplicationHandler, ApiHandler):
    """``GET``/``POST api/applications``."""

    def get(self) -> None:
        self.write_json({"applications": self.listing()})

    def post(self) -> None:
        self.write_json(self.submit(self.body(APPLICATION)), 201)


class ApplicationApi(ApplicationHandler, ApiHandler):
    """``GET api/applications/<id>``."""

    def get(self, application_id: str) -> None:
        self.write_json(self.one(application_id))


class ApplicationDecisionApi(ApplicationHandler, ApiHandler):
    """``POST api/applications/<id>/decision``."""

    async def post(self, application_id: str) -> None:
        self.write_json(await self.decide(application_id, self.body(APPLICATION_DECISION)))


class ApplicationsPage(ApplicationHandler):
    """``/applications``: the list, and for merchants a link to apply."""

    @web.authenticated
    def get(self) -> None:
        self.render_page(
            "applications.html",
            applications=self.listing(),
            can_apply=self.has_scope(APPLICATIONS_SUBMIT) and self.tenant is not None,
        )


class NewApplicationPage(ApplicationHandler):
    """``/applications/new``: the application form."""

    @web.authenticated
    def get(self) -> None:
        self.require_scope(APPLICATIONS_SUBMIT, "Applying for a scenario", "merchant")
        policies = self.settings["policies"]
        datasets = [
            {
                "name": name,
                "title": p.catalogue.title,
                "department": p.catalogue.department,
                "epsilon": p.privacy.default_budget_epsilon,
                "fields": [(f, spec.title) for f, spec in p.fields.items() if spec.visible],
            }
            for name, p in sorted(policies.items())
        ]
        self.render_page(
            "application_new.html", datasets=datasets, xsrf_form_html=self.xsrf_form_html()
        )

    @web.authenticated
    def post(self) -> None:
        chosen = self.get_body_arguments("dataset")
        body: dict[str, Any] = {
            key: self.get_body_argument(key, "")
            for key in (
                "scenario",
                "purpose",
                "method",
                "security_measures",
                "nature",
                "period_start",
                "period_end",
            )
        }
        body["datasets"] = [
            {"dataset": name, "fields": self.get_body_arguments(f"fields:{name}") or None}
            for name in chosen
        ]
        created = self.submit(self.declared(APPLICATION, body))
        self.redirect(f"{self.settings['templates'].globals['prefix']}applications/{created['id']}")


class ApplicationPage(ApplicationHandler):
    """``/applications/<id>``: one application, its decisions, and the decision form."""

    @web.authenticated
    def get(self, application_id: str) -> None:
        body = self.one(application_id)
        mine = self.departments
        actions: list[str] = []
        if body["status"] in applications.STAGES and body["tenant"] != self.tenant:
            if body["status"] == "compliance_review" and self.has_scope(APPLICATIONS_REVIEW):
                actions = ["compliance_approve", "reject"]
            elif body["status"] == "source_review" and set(mine) & set(body["pending_departments"]):
                actions = ["source_approve", "reject"]
            if actions and not body["extended"]:
                actions.append("extend")
        if body["status"] in applications.STAGES and body["applicant"] == self.user["name"]:
            actions.append("withdraw")
        self.render_page(
            "application.html",
            a=body,
            actions=actions,
            departments=[d for d in mine if d in body["pending_departments"]],
            xsrf_form_html=self.xsrf_form_html(),
        )

    @web.authenticated
    async def post(self, application_id: str) -> None:
        decision = {
            key: self.get_body_argument(key, "") for key in ("action", "comment", "department")
        }
        await self.decide(application_id, self.declared(APPLICATION_DECISION, decision))
        self.redirect(
            f"{self.settings['templates'].globals['prefix']}applications/{application_id}"
        )


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"api/applications/?", ApplicationsApi),
        (r"api/applications/([0-9a-f]{32})/?", ApplicationApi),
        (r"api/applications/([0-9a-f]{32})/decision/?", ApplicationDecisionApi),
        (r"applications/?", ApplicationsPage),
        (r"applications/new/?", NewApplicationPage),
        (r"applications/([0-9a-f]{32})/?", ApplicationPage),
    ]
