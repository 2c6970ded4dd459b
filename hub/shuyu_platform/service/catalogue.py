"""The public dataset catalogue (R17), as JSON and as pages, and the service home.

The catalogue is built from the validated dataset policies: name, providing
department, summary, fields with their classification grade, update frequency and
provision modes, the attacker model its views are protected against, and the worst
re-identification risk over its current views (``view_risk``, naming no tenant), and
the current raw version with the time it was supplied (``raw_version``). It
describes data; it never contains any. Every read is audited.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.orm import Session
from tornado import web

from ..access import suspension
from ..access.tenant_views import dataset_risk
from ..core.db import session_scope
from ..core.roles import CATALOGUE_READ, ROLES
from ..data import supply
from ..data.policy import DatasetPolicy
from ..dp import budget
from .base import ApiHandler, BaseHandler


def _with_supply(
    handler: BaseHandler, policies: list[DatasetPolicy], session: Session
) -> list[dict[str, Any]]:
    """Catalogue entries with the supply status: ``active``, or ``suspended`` and why (R23),
    and the current raw version's number and time (``None``: never supplied as a version);
    the database is read in ``session`` (one query each for suspensions and versions)."""
    stopped = suspension.suspended(session, "dataset")
    versions = supply.current_rows(session)
    return [
        {
            **p.catalogue_entry(),
            "supply": {"status": "suspended", "reason": stopped[p.dataset]}
            if p.dataset in stopped
            else {"status": "active"},
            "view_risk": dataset_risk(handler.shuyu, p.dataset),
            "raw_version": _version(versions.get(p.dataset)),
        }
        for p in policies
    ]


def _version(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A raw version's number and time, as the catalogue shows it."""
    if row is None:
        return None
    return {"version": row["version"], "supplied_at": row["supplied_at"]}


def _entries(handler: BaseHandler, session: Session) -> list[dict[str, Any]]:
    policies = [p for _, p in sorted(handler.settings["policies"].items())]
    return _with_supply(handler, policies, session)


def _entry(handler: BaseHandler, dataset: str, session: Session) -> dict[str, Any]:
    policy = handler.settings["policies"].get(dataset)
    if policy is None:
        known = ", ".join(sorted(handler.settings["policies"]))
        raise web.HTTPError(404, f"No dataset named {dataset!r} in the catalogue; it has {known}.")
    return _with_supply(handler, [policy], session)[0]


class CatalogueApi(ApiHandler):
    """``GET api/catalogue[/<dataset>]``: the catalogue, or one entry, as JSON."""

    async def get(self, dataset: str | None = None) -> None:
        self.require_scope(CATALOGUE_READ, "Reading the catalogue", "any signed-in")
        self.write_json(await asyncio.to_thread(self.read, dataset))

    def read(self, dataset: str | None) -> dict[str, Any]:
        """The catalogue or one entry, read off the event loop; the read is audited."""
        with session_scope(self.shuyu.db_url) as session:
            if dataset:
                body: dict[str, Any] = _entry(self, dataset, session)
            else:
                body = {"datasets": _entries(self, session)}
            self.audit_in(session, "catalogue.read", dataset or "*", detail={"format": "json"})
        return body


class CataloguePage(BaseHandler):
    """``GET catalogue[/<dataset>]``: the catalogue as pages."""

    @web.authenticated
    def get(self, dataset: str | None = None) -> None:
        self.require_scope(CATALOGUE_READ, "Reading the catalogue", "any signed-in")
        self.audit("catalogue.read", dataset or "*", detail={"format": "html"})
        # A merchant sees which datasets their tenant is granted: fields, expiry, ε left.
        granted = (
            {b["dataset"]: b for b in budget.balances(self.shuyu.db_url, self.tenant)}
            if self.tenant
            else {}
        )
        with session_scope(self.shuyu.db_url) as session:
            if dataset:
                entry = _entry(self, dataset, session)
            else:
                entries = _entries(self, session)
        if dataset:
            self.render_page("dataset.html", entry=entry, grant=granted.get(dataset))
        else:
            self.render_page("catalogue.html", entries=entries, granted=granted)


class HomePage(BaseHandler):
    """``GET /``: who you are and what your role can do here."""

    @web.authenticated
    def get(self) -> None:
        held = [name for name, spec in ROLES.items() if set(spec["scopes"]) & self.scopes]
        self.render_page("home.html", roles=held, role_specs=ROLES)


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"", HomePage),
        (r"catalogue/?", CataloguePage),
        (r"catalogue/([a-z][a-z0-9_]*)/?", CataloguePage),
        (r"api/catalogue/?", CatalogueApi),
        (r"api/catalogue/([a-z][a-z0-9_]*)/?", CatalogueApi),
    ]
