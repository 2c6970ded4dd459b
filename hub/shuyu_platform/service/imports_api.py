"""Merchants' import requests over HTTP and as pages (R21); see :mod:`..ingress.imports`.

``POST api/imports``
    A merchant files an import (:class:`.request_models.ImportRequestBody`: the file in
    base64, lawful source, authorisation, scenario, fields). Needs ``imports:request``,
    which a sandbox's own token never carries: imports come from the platform, never
    through the sandbox.
``GET api/imports[/<id>]``
    Merchants see their tenant's imports; reviewers and auditors see all.
``POST api/imports/<id>/decision``
    A reviewer's ``{"action": "approve" | "reject", "reason": "..."}``.
``DELETE api/imports/<id>``
    The merchant deletes its import (audited, irreversible).
``/imports``, ``/imports/<id>``
    The same as pages: the list with the request form (a file upload), one import with
    its check report and the reviewer's or merchant's buttons.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from tornado import web

from ..core.roles import AUDIT_READ, IMPORTS_REQUEST, IMPORTS_REVIEW
from ..ingress import imports
from .base import ApiHandler, BaseHandler
from .request_models import IMPORT_DECISION, IMPORT_REQUEST, ImportRequestBody


class ImportHandler(BaseHandler):
    """What the import routes share: who may see what, and the steps themselves."""

    def is_reviewer(self) -> bool:
        return self.has_scope(IMPORTS_REVIEW) or self.has_scope(AUDIT_READ)

    def merchant_tenant(self) -> str:
        self.require_scope(IMPORTS_REQUEST, "Importing data", "merchant")
        if self.tenant is None:
            raise web.HTTPError(403, f"{self.user['name']} belongs to no tenant.")
        return self.tenant

    def visible(self) -> list[dict[str, Any]]:
        if self.is_reviewer():
            return imports.listing(self.shuyu)
        return imports.listing(self.shuyu, tenant=self.merchant_tenant())

    def one(self, import_id: str) -> dict[str, Any]:
        try:
            row = imports.get(self.shuyu, import_id)
        except imports.IngressError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None
        if not self.is_reviewer() and row["tenant"] != self.merchant_tenant():
            raise web.HTTPError(404, f"no import {import_id}")
        return row

    async def file(self, body: ImportRequestBody) -> dict[str, Any]:
        tenant = self.merchant_tenant()
        try:
            return await asyncio.to_thread(
                imports.submit,
                self.shuyu,
                tenant=tenant,
                username=self.user["name"],
                name=body.name,
                filename=body.filename,
                content_base64=body.content_base64,
                lawful_source=body.lawful_source,
                authorisation=body.authorisation,
                scenario=body.scenario,
                fields={k: v.model_dump() for k, v in body.fields.items()},
            )
        except imports.IngressError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None

    async def decide(self, import_id: str, action: str, reason: str) -> dict[str, Any]:
        self.require_scope(IMPORTS_REVIEW, "Reviewing imports", "reviewer")
        try:
            return await asyncio.to_thread(
                imports.decide,
                self.shuyu,
                import_id,
                reviewer=self.user["name"],
                action=action,
                reason=reason,
            )
        except imports.IngressError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None

    async def remove(self, import_id: str) -> dict[str, Any]:
        tenant = self.merchant_tenant()
        try:
            return await asyncio.to_thread(
                imports.delete, self.shuyu, import_id, username=self.user["name"], tenant=tenant
            )
        except imports.IngressError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None


class ImportsApi(ImportHandler, ApiHandler):
    """``GET`` and ``POST api/imports``."""

    def get(self) -> None:
        self.write_json({"imports": self.visible()})

    async def post(self) -> None:
        self.merchant_tenant()
        self.write_json(await self.file(self.body(IMPORT_REQUEST)), 201)


class ImportApi(ImportHandler, ApiHandler):
    """``GET`` and ``DELETE api/imports/<id>``."""

    def get(self, import_id: str) -> None:
        self.write_json(self.one(import_id))

    async def delete(self, import_id: str) -> None:
        self.write_json(await self.remove(import_id))


class ImportDecisionApi(ImportHandler, ApiHandler):
    """``POST api/imports/<id>/decision``."""

    async def post(self, import_id: str) -> None:
        self.require_scope(IMPORTS_REVIEW, "Reviewing imports", "reviewer")
        body = self.body(IMPORT_DECISION)
        self.write_json(await self.decide(import_id, body.action, body.reason))


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.replace("，", ",").split(",") if c.strip()]


class ImportsPage(ImportHandler):
    """``/imports``: the tenant's imports (all, for reviewers) and the request form."""

    @web.authenticated
    def get(self) -> None:
        self.render_page(
            "imports.html",
            rows=self.visible(),
            can_request=self.has_scope(IMPORTS_REQUEST) and self.tenant is not None,
            xsrf_form_html=self.xsrf_form_html(),
        )

    @web.authenticated
    async def post(self) -> None:
        self.merchant_tenant()
        uploads = self.request.files.get("file") or []
        if len(uploads) != 1:
            raise web.HTTPError(400, "choose one file to import")
        fields: dict[str, dict[str, bool]] = {}
        for name in _columns(self.get_body_argument("identifiers", "")):
            fields.setdefault(name, {"identifier": False, "sensitive": False})["identifier"] = True
        for name in _columns(self.get_body_argument("sensitive", "")):
            fields.setdefault(name, {"identifier": False, "sensitive": False})["sensitive"] = True
        body = {
            "name": self.get_body_argument("name", ""),
            "filename": uploads[0]["filename"],
            "content_base64": base64.b64encode(uploads[0]["body"]).decode(),
            "lawful_source": self.get_body_argument("lawful_source", ""),
            "authorisation": self.get_body_argument("authorisation", ""),
            "scenario": self.get_body_argument("scenario", ""),
            "fields": fields or {},
        }
        if not fields:
            raise web.HTTPError(400, "name at least one column as an identifier or sensitive")
        created = await self.file(self.declared(IMPORT_REQUEST, body))
        self.redirect(f"{self.settings['templates'].globals['prefix']}imports/{created['id']}")


class ImportPage(ImportHandler):
    """``/imports/<id>``: one import, its checks, and the buttons of whoever may act."""

    @web.authenticated
    def get(self, import_id: str) -> None:
        self.render_page(
            "import.html",
            row=self.one(import_id),
            can_review=self.has_scope(IMPORTS_REVIEW),
            can_delete=self.has_scope(IMPORTS_REQUEST) and self.tenant is not None,
            xsrf_form_html=self.xsrf_form_html(),
        )

    @web.authenticated
    async def post(self, import_id: str) -> None:
        action = self.get_body_argument("action", "")
        if action == "delete":
            await self.remove(import_id)
        else:
            await self.decide(import_id, action, self.get_body_argument("reason", ""))
        self.redirect(f"{self.settings['templates'].globals['prefix']}imports/{import_id}")


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"api/imports/?", ImportsApi),
        (r"api/imports/([0-9a-f]{32})", ImportApi),
        (r"api/imports/([0-9a-f]{32})/decision", ImportDecisionApi),
        (r"imports/?", ImportsPage),
        (r"imports/([0-9a-f]{32})", ImportPage),
    ]
