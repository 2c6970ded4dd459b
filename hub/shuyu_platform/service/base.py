"""What every platform-service handler shares: identity, scope checks, audit, errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthenticated, check_scopes
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from tornado import httputil, web

from .. import messages
from ..core import audit, roles
from ..core.db import session_scope
from ..core.settings import Shuyu
from . import json_body
from .request_models import Declared

T = TypeVar("T")
Q = TypeVar("Q", bound=BaseModel)


def message_of(err: web.HTTPError) -> str:
    """The sentence an :class:`~tornado.web.HTTPError` carries for a person."""
    if not err.log_message:
        return err.reason or ""
    return err.log_message % err.args if err.args else err.log_message


#: The Content-Security-Policy of the platform service, directive by directive. No
#: script runs on platform pages at all (they need none), nothing merchant-supplied is
#: rendered as anything but text or a data: image, and no other origin may frame them.
POLICY: dict[str, str] = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "form-action": "'self'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}


def content_security_policy(policy: dict[str, str], **changes: str) -> str:
    """``policy`` as a header value, with the directives in ``changes`` (``frame_src``
    for ``frame-src``) added or replaced; a bare directive (``sandbox``) has value ''."""
    merged = {**policy, **{k.replace("_", "-"): v for k, v in changes.items()}}
    return "; ".join(f"{name} {value}".strip() for name, value in merged.items())


#: Security headers of every page, API answer and static file of the platform service.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": content_security_policy(POLICY),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
#: ``Sec-Fetch-Site`` values of requests a browser sends from another origin.
FOREIGN_SITES = frozenset({"cross-site", "same-site"})


def refuse_cross_origin(request: httputil.HTTPServerRequest) -> None:
    """Refuse (403) a state-changing request a browser sent from a page of another origin.

    Browsers name the page's origin in ``Origin`` and ``Sec-Fetch-Site`` on every POST,
    and a page's script cannot change either: a published dashboard (its own origin) or
    any other site cannot make a signed-in reviewer's browser approve, decide or file
    anything here, whatever cookies the browser holds. Clients that are not browsers
    (the kernel client, the CLI) send neither header.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    site = request.headers.get("Sec-Fetch-Site", "")
    origin = request.headers.get("Origin", "")
    if site in FOREIGN_SITES or (origin and urlparse(origin).netloc != request.host):
        raise web.HTTPError(
            403,
            "%s",
            "平台只接受来自本平台页面的修改。"
            f"This request came from a page of another origin ({origin or site}); the "
            "platform accepts changes only from its own pages.",
        )


class StaticHandler(web.StaticFileHandler):
    """The service's static files, with the same security headers as its pages."""

    def set_default_headers(self) -> None:
        """The headers of :data:`SECURITY_HEADERS`."""
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """A page of the service: signed-in through the hub, rendered from templates."""

    def set_default_headers(self) -> None:
        """The headers of :data:`SECURITY_HEADERS` on every answer."""
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    async def prepare(self) -> None:
        """Refuse writes sent from another origin's page (:func:`refuse_cross_origin`), then
        ask the hub who sent the request without blocking the event loop.

        The hub's answer (usually from the token cache, otherwise an HTTP call to the hub)
        is kept on the handler, where ``current_user`` then finds it: called on its own,
        ``current_user`` would wait for it with the whole service stopped.
        """
        refuse_cross_origin(self.request)
        await self.hub_auth.get_user(self, sync=False)

    @property
    def shuyu(self) -> Shuyu:
        """The installation's settings."""
        return self.settings["shuyu"]

    @property
    def user(self) -> dict[str, Any]:
        """The hub's model of the signed-in user or service (never None after auth)."""
        return self.current_user

    @property
    def scopes(self) -> set[str]:
        """Scopes of the token this request came with."""
        return set(self.user.get("scopes", [])) if self.current_user else set()

    @property
    def tenant(self) -> str | None:
        """The signed-in merchant's tenant, if any."""
        return roles.tenant_of_groups(self.user.get("groups", [])) if self.current_user else None

    def has_scope(self, scope: str) -> bool:
        """Whether the token holds ``scope``."""
        return bool(check_scopes({scope}, self.scopes))

    def require_scope(self, scope: str, what: str, role: str) -> None:
        """Refuse (403, audited) unless the token holds ``scope``."""
        if not self.has_scope(scope):
            self.audit(
                "access.denied",
                self.request.path,
                outcome="denied",
                detail={"needs": scope, "method": self.request.method},
            )
            raise web.HTTPError(
                403,
                "%s",
                f"权限不足：此操作需要“{messages.zh(role)}”角色。"
                f"{what} needs the {role} role (scope {scope}); {self.user['name']} lacks it.",
            )

    def audit(
        self,
        action: str,
        target: str,
        *,
        outcome: audit.Outcome = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record one event on behalf of the signed-in user, in a transaction of its own."""
        with session_scope(self.shuyu.db_url) as session:
            self.audit_in(session, action, target, outcome=outcome, detail=detail)

    def audit_in(
        self,
        session: Session,
        action: str,
        target: str,
        *,
        outcome: audit.Outcome = "ok",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record one event on behalf of the signed-in user within ``session``'s
        transaction (a read and its audit record: one round of the database, not two)."""
        audit.record(
            session,
            actor=self.user["name"],
            actor_kind="service" if self.user.get("kind") == "service" else "user",
            action=action,
            target=target,
            tenant=self.tenant,
            outcome=outcome,
            detail=detail,
        )

    def declared(self, declared: Declared[T], value: Any) -> T:
        """``value`` (a body built from a form) checked as ``declared``, or a 400."""
        try:
            json_body.check_tree(value)
            return json_body.validate(value, declared.adapter)
        except json_body.BodyError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None

    def query_model(self, model: type[Q]) -> Q:
        """The query string as ``model`` (each argument once), or a 400."""
        args: dict[str, str] = {}
        for key in self.request.query_arguments:
            values = self.get_query_arguments(key)
            if len(values) > 1:
                raise web.HTTPError(400, "%s", f"give {key!r} at most once")
            args[key] = values[0]
        try:
            return model.model_validate(args)
        except ValidationError as err:
            raise web.HTTPError(400, "%s", json_body.describe(err)) from None

    def render_page(self, template: str, **context: Any) -> None:
        """Render a Jinja2 template with the signed-in user in its context."""
        page = self.settings["templates"].get_template(template)
        self.finish(
            page.render(
                user=self.current_user,
                tenant=self.tenant,
                scopes=self.scopes,
                has_scope=self.has_scope,
                **context,
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """An HTTP status with a sentence a person can act on."""
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = message_of(exc)
        title = messages.status_text(status_code)
        page = self.settings["templates"].get_template("error.html")
        self.finish(
            page.render(
                user=None,
                status=status_code,
                title=title,
                message=messages.text(message) if message else title,
            )
        )


class ApiHandler(BaseHandler):
    """A JSON endpoint: 401 instead of a login redirect, errors as JSON."""

    async def prepare(self) -> None:
        """Refuse requests that carry neither a hub token nor a hub OAuth cookie."""
        await super().prepare()
        if self.current_user is None:
            raise web.HTTPError(
                401, "Sign in through the hub, or send 'Authorization: token <hub API token>'."
            )

    def body(self, declared: Declared[T]) -> T:
        """The request body read as ``declared`` (:mod:`.json_body`), or a 4xx saying why."""
        try:
            raw = self.request.body
            if declared.may_be_empty and not raw.strip():
                raw = b"{}"
            return json_body.read(raw, declared.adapter, max_bytes=declared.max_bytes)
        except json_body.BodyError as err:
            raise web.HTTPError(err.status, "%s", err.message) from None

    def write_json(self, body: Any, status: int = 200) -> None:
        """Send ``body`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body, ensure_ascii=False, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as ``{"status": ..., "message": ...}``, the message Chinese first
        (:func:`~shuyu_platform.messages.refusal`); clients match on ``status``."""
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = message_of(exc)
        self.write_json(
            {"status": status_code, "message": messages.refusal(message, status_code)},
            status_code,
        )


class NotFoundApi(ApiHandler):
    """Any other path under ``api/``: a JSON 404, so that no API answer is an HTML page."""

    def prepare(self) -> None:
        """Signed in or not, the path does not exist."""
        raise web.HTTPError(404, "%s", f"no API endpoint {self.request.path}; see api/openapi.json")
