"""Egress over HTTP: refused downloads, and export requests with their review (R10–R12).

``POST api/egress/blocked``
    A single-user server's egress guard (``shuyu_server.egress``) reports a refused
    download. The server authenticates with its own token, so the record's actor is the
    user whose server refused it: an ``egress.blocked`` audit event.
``POST api/egress/requests``
    A merchant files a request (chosen cell outputs, or a file, and a purpose); the
    content is frozen in ``outbox/`` and the request submitted (:mod:`..egress`).
``GET api/egress/requests[?status=]`` and ``GET api/egress/requests/<id>``
    A merchant sees its tenant's requests with status, check results (their public
    view: no matches against the raw data's names, see ``disclosure.public_view``) and
    reviewers' comments; a reviewer sees every request, the full checks, and the frozen
    content of one; the requester sees the frozen content of their own.
``POST api/egress/requests/<id>/decision``
    A reviewer approves, rejects or asks for changes, with a comment.
``POST api/egress/requests/<id>/resubmit``
    The merchant sends new content for a request sent back for changes.
``GET api/egress/requests/<id>/release``
    A released request's manifest and provenance (:mod:`..release`).
``GET exports`` and ``GET exports/<id>/<file>``
    The merchant's page of its tenant's requests (status, checks, reviewers' comments),
    and the download of a released file: only by the requester, checked against its
    SHA-256, audited as ``egress.download``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import pyarrow.parquet as pq
from sqlalchemy import select
from tornado import web

from .. import messages
from ..access import grants
from ..core.db import session_scope
from ..core.models import EgressRequest, Job
from ..core.roles import EGRESS_REQUEST, EGRESS_REVIEW, TENANTS_MANAGE
from ..core.settings import Shuyu
from ..dashboards import preview as dashboard_preview
from ..data.policy import DatasetPolicy, Disclosure
from ..dp import budget
from ..egress import disclosure, jailed, release
from ..egress import requests as egress
from ..isolation.jail import JailRefusal, Limits
from ..jobs import queue as jobs_queue
from .base import POLICY, ApiHandler, BaseHandler, content_security_policy
from .request_models import (
    BLOCKED,
    EGRESS_CONTENT,
    EGRESS_DECISION,
    EMPTY,
    NEW_EGRESS_REQUEST,
    EgressDecisionBody,
)
from .tenant_reports import SOURCE, ReportLimiter

#: Field titles of person names in the raw data (the names check looks for them).
NAME_TITLES = ("姓名", "法定代表人")


@functools.lru_cache(maxsize=16)
def _names(path: str, column: str, _mtime: int) -> frozenset[str]:
    """Distinct values of a raw name column, once per file version."""
    values = pq.read_table(path, columns=[column]).column(0).unique().to_pylist()
    return frozenset(v for v in values if isinstance(v, str) and v)


def check_context(
    settings: Shuyu, policies: dict[str, DatasetPolicy], tenant: str
) -> disclosure.Context:
    """What the disclosure checks need: thresholds, raw names, the tenant's DP numbers.

    Thresholds are the strictest the policies of the tenant's granted datasets set
    (of every policy when it holds no grant), over the defaults of ``disclosure.Rules``.
    """
    names: set[str] = set()
    prefixes: set[str] = set()
    for policy in policies.values():
        raw = settings.zone("raw") / policy.raw_file
        for field_name, field in policy.fields.items():
            prefix = getattr(field.masking, "prefix", None)
            if field.masking.rule == "pseudonymize" and prefix:
                prefixes.add(prefix)
            if field.identifier and field.title in NAME_TITLES and raw.is_file():
                names |= _names(str(raw), field_name, raw.stat().st_mtime_ns)
    with session_scope(settings.db_url) as session:
        granted = {g.dataset for g in grants.active(session, tenant=tenant)}
        numbers = frozenset(budget.answers_by_number(session, tenant))
    sections = [p.disclosure for name, p in policies.items() if name in granted]
    thresholds = Disclosure.strictest(sections or [p.disclosure for p in policies.values()])
    return disclosure.Context(
        rules=disclosure.Rules.from_dict(thresholds),
        known_names=frozenset(names),
        dp_numbers=numbers,
        pseudonym_prefixes=tuple(sorted(prefixes)),
    )


class EgressHandler(ApiHandler):
    """What the request routes share: the JSON body, who may see which request."""

    @property
    def outbox(self) -> Any:
        """The outbox zone."""
        return self.shuyu.zone("outbox")

    def fail(self, err: egress.EgressError) -> NoReturn:
        """Answer an :class:`~shuyu_platform.egress.requests.EgressError` as JSON."""
        raise web.HTTPError(err.status, err.message)

    async def check(self, content: dict[str, Any], tenant: str) -> disclosure.Report:
        """The automatic disclosure checks of new content, run in the parsing jail.

        Content the jail cannot read within its limits (a decompression bomb, a file that
        takes too long) is refused with 422 before anything is written, and audited.
        """
        context = check_context(self.shuyu, self.settings["policies"], tenant)
        limits = Limits.from_settings(self.shuyu)
        try:
            return await asyncio.to_thread(jailed.check_content, content, context, limits)
        except JailRefusal as refusal:
            self.audit(
                "egress.unreadable",
                egress.source_of(content),
                outcome="denied",
                detail={"reason": refusal.reason, "message": refusal.message},
            )
            raise web.HTTPError(422, f"The content was not accepted: {refusal.message}.") from None

    def visible(self, row: EgressRequest | None, request_id: str) -> EgressRequest:
        """The request if the caller may see it: its tenant's merchants and reviewers."""
        if row is not None and (self.has_scope(EGRESS_REVIEW) or row.tenant == self.tenant):
            return row
        raise web.HTTPError(404, f"no egress request {request_id} that you may see")


class BlockedApi(EgressHandler):
    """``POST api/egress/blocked``: audit one refused download, as the tenant reports it.

    The report comes from inside a sandbox (see :mod:`.tenant_reports`): it is recorded
    with ``source: tenant-reported`` and limited per user and minute.
    """

    def post(self) -> None:
        self.require_scope(EGRESS_REQUEST, "Reporting a refused download", "merchant")
        body = self.body(BLOCKED).model_dump()
        limiter: ReportLimiter = self.settings["tenant_reports"]
        admitted, first_refusal = limiter.admit(self.user["name"])
        if not admitted:
            if first_refusal:
                self.audit(
                    "report.rate_limited",
                    "egress.blocked",
                    outcome="denied",
                    detail={"source": SOURCE, "per_minute": limiter.per_minute},
                )
            raise web.HTTPError(
                429,
                f"Too many reported events: at most {limiter.per_minute} a minute per user; "
                "this one was not recorded.",
            )
        detail: dict[str, Any] = dict(body)
        detail["source"] = SOURCE
        self.audit(
            "egress.blocked", detail["path"] or detail["route"], outcome="denied", detail=detail
        )
        self.write_json({"recorded": True}, 201)


class RequestsApi(EgressHandler):
    """``GET``/``POST api/egress/requests``: list, or file a new request."""

    async def get(self) -> None:
        reviewer = self.has_scope(EGRESS_REVIEW)
        if not reviewer:
            self.require_scope(EGRESS_REQUEST, "Egress requests", "merchant")
        status = self.get_argument("status", "") or None
        rows = await asyncio.to_thread(self.listed, reviewer, status)
        self.write_json({"requests": rows})

    def listed(self, reviewer: bool, status: str | None) -> list[dict[str, Any]]:
        """The newest 500 requests a reviewer (all) or merchant (their tenant's) may see."""
        with session_scope(self.shuyu.db_url) as session:
            query = select(EgressRequest).order_by(EgressRequest.created_at.desc())
            if not reviewer:
                query = query.where(EgressRequest.tenant == self.tenant)
            if status:
                query = query.where(EgressRequest.status == status)
            return [egress.as_dict(r, reviewer=reviewer) for r in session.scalars(query.limit(500))]

    async def post(self) -> None:
        self.require_scope(EGRESS_REQUEST, "Filing an egress request", "merchant")
        if self.tenant is None:
            raise web.HTTPError(403, f"{self.user['name']} belongs to no tenant.")
        body = self.body(NEW_EGRESS_REQUEST).model_dump(exclude_unset=True)
        frozen: Path | None = None
        try:
            content = egress.parse_content(body)
            purpose = egress.text_field(body, "purpose", limit=4000)
            title = egress.text_field(
                body, "title", limit=200, required=False
            ) or egress.default_title(content)
            report = await self.check(content, self.tenant)
            with session_scope(self.shuyu.db_url) as session:
                if content["kind"] == "dashboard":
                    egress.released_inputs(session, self.tenant, content["releases"])
                row = egress.create(
                    session,
                    self.outbox,
                    tenant=self.tenant,
                    username=self.user["name"],
                    title=title,
                    purpose=purpose,
                    content=content,
                )
                frozen = egress.snapshot_path(self.outbox, row.id)
                egress.record_checks(session, row, report)
                egress.transition(session, row, "submit", actor=self.user["name"])
                answer = egress.as_dict(row, egress.decisions_of(session, row.id))
        except BaseException as err:
            if frozen is not None:  # the request was not recorded: no snapshot without a row
                frozen.unlink(missing_ok=True)
            if isinstance(err, egress.EgressError):
                self.fail(err)
            raise
        self.write_json(answer, 201)


class RequestApi(EgressHandler):
    """``GET api/egress/requests/<id>``: one request, its decisions (and content, for reviewers)."""

    def get(self, request_id: str) -> None:
        with session_scope(self.shuyu.db_url) as session:
            row = self.visible(session.get(EgressRequest, request_id), request_id)
            answer = egress.as_dict(
                row, egress.decisions_of(session, row.id), reviewer=self.has_scope(EGRESS_REVIEW)
            )
        # Reviewers read the frozen content; so does its requester when they ask for it
        # (it came from their sandbox), to resubmit it beside the reviewer's comments.
        asked = self.get_argument("content", "") == "1" and row.username == self.user["name"]
        if self.has_scope(EGRESS_REVIEW) or asked:
            try:
                answer["content"] = egress.read_snapshot(self.outbox, row)
            except egress.EgressError as err:
                answer["content_error"] = err.message
            self.audit("egress.read", f"egress:{request_id}", detail={"status": row.status})
        self.write_json(answer)


class DecisionApi(EgressHandler):
    """``POST api/egress/requests/<id>/decision``: a reviewer's approve, reject or changes."""

    async def post(self, request_id: str) -> None:
        self.require_scope(EGRESS_REVIEW, "Deciding egress requests", "reviewer")
        self.write_json(await decide(self, request_id, self.body(EGRESS_DECISION)))


class ResubmitApi(EgressHandler):
    """``POST api/egress/requests/<id>/resubmit``: new content after a request for changes."""

    async def post(self, request_id: str) -> None:
        self.require_scope(EGRESS_REQUEST, "Resubmitting an egress request", "merchant")
        body = self.body(EGRESS_CONTENT).model_dump(exclude_unset=True)
        try:
            content = egress.parse_content(body)
            with session_scope(self.shuyu.db_url) as session:
                tenant = self.visible(session.get(EgressRequest, request_id), request_id).tenant
            report = await self.check(content, tenant)
            with session_scope(self.shuyu.db_url) as session:
                row = self.visible(session.get(EgressRequest, request_id), request_id)
                egress.resubmit(session, self.outbox, row, content, actor=self.user["name"])
                egress.record_checks(session, row, report)
                answer = egress.as_dict(row, egress.decisions_of(session, row.id))
        except egress.EgressError as err:
            self.fail(err)
        self.write_json(answer)


#: Statuses a reviewer can decide on (the queue lists them first).
WAITING = tuple(
    s for s, actions in egress.TRANSITIONS.items() if set(actions) & set(egress.DECISIONS)
)
#: Most characters of one text output shown on the review page.
SHOWN_TEXT = 200_000


def render_content(content: dict[str, Any]) -> list[dict[str, Any]]:
    """The frozen content as the review page shows it: text and PNG/JPEG images only.

    Nothing a merchant sent is rendered as HTML (an HTML or SVG output could carry
    script into the reviewer's browser): HTML outputs show their plain-text form.
    """
    items: list[dict[str, Any]] = []
    if content.get("kind") == "file":
        return [_file_item(str(content.get("path", "")), content.get("data_b64", ""))]
    if content.get("kind") == "job":
        discarded = ", ".join(content.get("discarded", [])) or "none"
        items.append({"label": "undeclared files, discarded", "text": discarded})
        items.append(
            {
                "label": "provenance",
                "text": json.dumps(content.get("provenance", {}), ensure_ascii=False, indent=1),
            }
        )
        items += [_file_item(str(f["path"]), f["data_b64"]) for f in content.get("files", [])]
        return items
    cells = content.get("cells", [])
    if content.get("kind") == "dashboard":
        releases = ", ".join(content.get("releases", [])) or "none"
        items.append({"label": "reads the released files of", "text": releases})
        cells = [
            {
                "index": i,
                "execution_count": c.get("execution_count"),
                "source": "".join(c.get("source", "")),
                "outputs": c.get("outputs", []),
            }
            for i, c in enumerate(content.get("document", {}).get("cells", []))
            if c.get("cell_type") == "code"
        ]
        for cell in cells:
            name = messages.cell_name(cell["index"], cell["execution_count"])
            items.append({"label": f"{name} · 代码 source", "text": cell["source"]})
    for cell in cells:
        for number, output in enumerate(cell.get("outputs", [])):
            label = messages.place(
                {
                    "cell": cell.get("index"),
                    "execution_count": cell.get("execution_count"),
                    "output": number,
                }
            )
            kind = output.get("output_type")
            data = output.get("data", {})
            if kind == "stream":
                text = output.get("text", "")
                items.append(
                    {"label": label, "text": "".join(text) if isinstance(text, list) else text}
                )
            elif kind == "error":
                items.append(
                    {"label": label, "text": f"{output.get('ename')}: {output.get('evalue')}"}
                )
            elif "image/png" in data or "image/jpeg" in data:
                mime = "image/png" if "image/png" in data else "image/jpeg"
                image = data[mime]
                items.append(
                    {
                        "label": label,
                        "image": "".join(image) if isinstance(image, list) else image,
                        "mime": mime,
                    }
                )
            else:
                text = data.get("text/plain", "(no plain-text form: needs a manual look)")
                items.append(
                    {
                        "label": label,
                        "text": ("".join(text) if isinstance(text, list) else text)[:SHOWN_TEXT],
                    }
                )
    return items


def _file_item(path: str, data_b64: str) -> dict[str, Any]:
    """One file as the review page shows it: a PNG/JPEG image, or its text."""
    data = base64.b64decode(data_b64)
    mime = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}.get(
        path.rsplit(".", 1)[-1].lower()
    )
    if mime:
        return {"label": path, "image": data_b64, "mime": mime}
    try:
        text = data.decode("utf-8")[:SHOWN_TEXT]
    except UnicodeDecodeError:
        text = f"(binary file, {len(data):,} bytes: needs a manual look)"
    return {"label": path, "text": text}


async def decide(
    handler: BaseHandler, request_id: str, decision: EgressDecisionBody
) -> dict[str, Any]:
    """Record a reviewer's decision (API and review page alike); the request as JSON.

    The decision names the snapshot it was made on; it is refused (409) if the request
    changed since. A decision that approves the request releases it at once (off the
    event loop); a release that fails leaves it approved for the service's sweep to retry.
    """
    settings = handler.shuyu
    try:
        with session_scope(settings.db_url) as session:
            row = session.get(EgressRequest, request_id)
            if row is None:
                raise web.HTTPError(404, f"no egress request {request_id}")
            egress.decide(
                session,
                settings.zone("outbox"),
                row,
                decision.action,
                actor=handler.user["name"],
                actor_tenant=handler.tenant,
                comment=decision.comment,
                approvals_required=settings.egress_approvals_required,
                seen_sha256=decision.snapshot_sha256,
            )
            approved = row.status == "approved"
    except egress.EgressError as err:
        raise web.HTTPError(err.status, err.message) from None
    if approved:
        await asyncio.to_thread(release.release_pending, settings, [request_id])
    with session_scope(settings.db_url) as session:
        row = session.get(EgressRequest, request_id)
        return egress.as_dict(row, egress.decisions_of(session, request_id), reviewer=True)


class ReviewQueuePage(BaseHandler):
    """``/review``: every export request, those waiting for a decision first."""

    @web.authenticated
    def get(self) -> None:
        self.require_scope(EGRESS_REVIEW, "The review queue", "reviewer")
        with session_scope(self.shuyu.db_url) as session:
            rows = [
                egress.as_dict(r, reviewer=True)
                for r in session.scalars(
                    select(EgressRequest).order_by(EgressRequest.created_at.desc()).limit(500)
                )
            ]
        rows.sort(key=lambda r: r["status"] not in WAITING)  # stable: newest first within
        self.render_page("review_queue.html", requests=rows)


def _frozen(shuyu: Shuyu, row: EgressRequest) -> tuple[dict[str, Any], str]:
    """A request's frozen content and '', or {} and why it cannot be read."""
    try:
        return egress.read_snapshot(shuyu.zone("outbox"), row), ""
    except egress.EgressError as err:
        return {}, err.message


class ReviewRequestPage(BaseHandler):
    """``/review/<id>``: one request's content, checks and decisions, and the decision form.

    A dashboard's preview is framed from :class:`ReviewPreviewPage`, the only frame the
    page's policy allows."""

    def set_default_headers(self) -> None:
        """The platform's headers; frames only from the platform itself (the preview)."""
        super().set_default_headers()
        self.set_header(
            "Content-Security-Policy", content_security_policy(POLICY, frame_src="'self'")
        )

    @web.authenticated
    def get(self, request_id: str) -> None:
        self.require_scope(EGRESS_REVIEW, "Reviewing export requests", "reviewer")
        with session_scope(self.shuyu.db_url) as session:
            row = session.get(EgressRequest, request_id)
            if row is None:
                raise web.HTTPError(404, f"no egress request {request_id}")
            body = egress.as_dict(row, egress.decisions_of(session, row.id), reviewer=True)
            job = session.scalars(select(Job).where(Job.request_id == row.id)).first()
            job_view = jobs_queue.as_dict(job) if job is not None else None
        content, content_error = _frozen(self.shuyu, row)
        self.audit("egress.read", f"egress:{request_id}", detail={"status": row.status})
        self.render_page(
            "review_request.html",
            r=body,
            job=job_view,
            rendered=render_content(content) if content else [],
            content_error=content_error,
            can_decide=egress.can_decide(row, self.user["name"], self.tenant),
            xsrf_form_html=self.xsrf_form_html(),
        )

    @web.authenticated
    async def post(self, request_id: str) -> None:
        self.require_scope(EGRESS_REVIEW, "Deciding export requests", "reviewer")
        if self.get_body_argument("action", "") not in egress.DECISIONS:
            raise web.HTTPError(400, "Choose approve, ask for changes or reject.")
        decision = {
            key: self.get_body_argument(key, "") for key in ("action", "comment", "snapshot_sha256")
        }
        await decide(self, request_id, self.declared(EGRESS_DECISION, decision))
        self.redirect(f"{self.settings['templates'].globals['prefix']}review/{request_id}")


#: The policy of a dashboard preview: a sandbox of its own even when opened outside its
#: frame (an opaque origin, no script, no form, no plugin, no navigation of another
#: page), nothing loaded but the service's stylesheet and data: images, and framed only
#: by the platform's own review page.
PREVIEW_POLICY: str = content_security_policy(
    {"sandbox": "", "default-src": "'none'"},
    style_src="'self'",
    img_src="data:",
    base_uri="'none'",
    form_action="'none'",
    frame_ancestors="'self'",
)


class ReviewPreviewPage(BaseHandler):
    """``/review/<id>/preview``: a dashboard request's frozen content laid out as visitors
    will see it (:mod:`..dashboards.preview`), for the review page's sandboxed frame.

    Whatever the merchant's outputs carry, the document cannot act as the reviewer: the
    frame's ``sandbox`` and the document's own ``sandbox`` policy give it an opaque
    origin (no cookie, no access to the review page, and the platform refuses its
    writes as another origin's), and neither lets a script run or a form be sent.
    """

    def set_default_headers(self) -> None:
        """The platform's headers, with :data:`PREVIEW_POLICY` and framing by itself."""
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PREVIEW_POLICY)
        self.set_header("X-Frame-Options", "SAMEORIGIN")

    @web.authenticated
    def get(self, request_id: str) -> None:
        self.require_scope(EGRESS_REVIEW, "Reviewing export requests", "reviewer")
        with session_scope(self.shuyu.db_url) as session:
            row = session.get(EgressRequest, request_id)
            if row is None or row.kind != "dashboard":
                raise web.HTTPError(404, f"no dashboard request {request_id}")
            title = row.title
        content, error = _frozen(self.shuyu, row)
        if error:
            raise web.HTTPError(409, "%s", error)
        self.render_page(
            "dashboard_preview.html",
            title=title,
            blocks=dashboard_preview.preview(content.get("document", {})),
        )


class ReleaseApi(EgressHandler):
    """``GET api/egress/requests/<id>/release``: a released request's manifest and provenance."""

    def get(self, request_id: str) -> None:
        with session_scope(self.shuyu.db_url) as session:
            row = self.visible(session.get(EgressRequest, request_id), request_id)
            try:
                path, _ = release.open_released(self.shuyu, row, release.PROVENANCE)
            except release.ReleaseError as err:
                self.fail(err)
            manifest = release.manifest_of(row)
        record = json.loads(path.read_text(encoding="utf-8"))
        self.write_json({**manifest, "provenance": record})


class UnpublishApi(EgressHandler):
    """``POST api/egress/requests/<id>/unpublish``: take a dashboard off at once.

    Its requester or an administrator (``tenants:manage``) may.
    """

    def post(self, request_id: str) -> None:
        administrator = self.has_scope(TENANTS_MANAGE)
        if not administrator:
            self.require_scope(EGRESS_REQUEST, "Unpublishing a dashboard", "merchant")
        self.body(EMPTY)
        try:
            with session_scope(self.shuyu.db_url) as session:
                row = session.get(EgressRequest, request_id)
                if row is None or not (administrator or row.tenant == self.tenant):
                    raise web.HTTPError(404, f"no egress request {request_id} that you may see")
                release.unpublish(
                    self.shuyu,
                    session,
                    row,
                    actor=self.user["name"],
                    administrator=administrator,
                )
                answer = egress.as_dict(row, egress.decisions_of(session, row.id))
        except egress.EgressError as err:
            self.fail(err)
        self.write_json(answer)


class ExportsPage(BaseHandler):
    """``/exports``: the merchant's view of its tenant's export requests and releases."""

    @web.authenticated
    def get(self) -> None:
        self.require_scope(EGRESS_REQUEST, "Export requests", "merchant")
        with session_scope(self.shuyu.db_url) as session:
            rows = session.scalars(
                select(EgressRequest)
                .where(EgressRequest.tenant == self.tenant)
                .order_by(EgressRequest.created_at.desc())
                .limit(500)
            )
            requests = [
                {
                    **egress.as_dict(r, egress.decisions_of(session, r.id)),
                    "files": release.manifest_of(r).get("files", []),
                }
                for r in rows
            ]
        self.render_page("exports.html", requests=requests)


class DownloadHandler(BaseHandler):
    """``/exports/<id>/<file>``: the requester downloads a released file (audited)."""

    @web.authenticated
    def get(self, request_id: str, name: str) -> None:
        self.require_scope(EGRESS_REQUEST, "Downloading a release", "merchant")
        target = f"egress:{request_id}/{name}"
        with session_scope(self.shuyu.db_url) as session:
            row = session.get(EgressRequest, request_id)
            if row is None or row.username != self.user["name"]:
                self.audit("egress.download", target, outcome="denied", detail={"file": name})
                raise web.HTTPError(
                    404, f"no release {request_id} of yours: only its requester downloads it"
                )
            try:
                path, entry = release.open_released(self.shuyu, row, name)
            except release.ReleaseError as err:
                self.audit(
                    "egress.download", target, outcome="denied", detail={"error": err.message}
                )
                raise web.HTTPError(err.status, err.message) from None
        data = path.read_bytes()
        self.audit(
            "egress.download",
            target,
            detail={"file": name, "bytes": len(data), "sha256": entry.get("sha256", "")},
        )
        # Always an attachment of an opaque type: released HTML or SVG must never render
        # (and run script) on the platform's origin.
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(name)}")
        self.set_header("Cache-Control", "no-store")
        self.finish(data)


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"api/egress/blocked/?", BlockedApi),
        (r"api/egress/requests/?", RequestsApi),
        (r"api/egress/requests/([0-9a-f]{32})/?", RequestApi),
        (r"api/egress/requests/([0-9a-f]{32})/decision/?", DecisionApi),
        (r"api/egress/requests/([0-9a-f]{32})/resubmit/?", ResubmitApi),
        (r"review/?", ReviewQueuePage),
        (r"review/([0-9a-f]{32})/?", ReviewRequestPage),
        (r"review/([0-9a-f]{32})/preview", ReviewPreviewPage),
        (r"api/egress/requests/([0-9a-f]{32})/release/?", ReleaseApi),
        (r"api/egress/requests/([0-9a-f]{32})/unpublish/?", UnpublishApi),
        (r"exports/?", ExportsPage),
        (r"exports/([0-9a-f]{32})/([^/]+)", DownloadHandler),
    ]
