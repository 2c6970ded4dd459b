"""JSON routes of the single-user server for the Shuyu JupyterLab extension (``labextension/``).

Everything the extension shows or does goes through these routes of the merchant's own
server, under ``<server>/shuyu/api/``; the server relays to the platform service with its
own hub token (:mod:`.platform`), so the browser needs no new network path:

====================================  ====================================================
route                                 what it does
====================================  ====================================================
``GET context``                       the sandbox's tenant, user and the Exports page URL
``GET grants``                        the tenant's granted views (``api/grants``)
``GET budget``                        DP budget per grant (``api/dp/budget``)
``GET exports``                       the tenant's export requests, with reviewers'
                                      comments and, for the requester, download links
``POST exports/preview``              what a request would send, read from disk as saved
``POST exports``                      file the request (``api/egress/requests``)
``GET jobs``                          the tenant's sealed jobs (``api/jobs``) with their
                                      export request's status, comments, downloads
``GET volume``                        the user's own output today and the daily cap
                                      (``api/egress/volume``)
``POST budget/preview``               the platform's dry run of a DP query
                                      (``api/dp/query`` with ``dry_run``): ε and what
                                      would remain; nothing is spent
====================================  ====================================================

A request body is ``{"notebook": path, "cells": [indices]}`` or ``{"file": path}``, plus
``purpose`` (required) and ``title`` for filing. What is previewed and what is sent are
read by the same code as the Request export page (:class:`.export.WorkFolderHandler`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from . import platform
from .export import WorkFolderHandler
from .pages import EXPORTS_URL, refusal

#: Most export requests whose reviewers' comments the panel fetches (newest first).
DETAILED_REQUESTS = 20
#: Longest purpose statement and title accepted (the platform's limits).
PURPOSE_CHARS = 4000
TITLE_CHARS = 200
#: What the panel shows of a sealed job (never its purpose, parameters or inputs).
JOB_FIELDS = (
    "id",
    "username",
    "entry",
    "status",
    "exit_code",
    "reason",
    "created_at",
    "started_at",
    "ended_at",
    "request_id",
)


def downloads(request: dict[str, Any]) -> list[dict[str, str]]:
    """The released files of ``request`` as Exports page links: for its requester only."""
    user = os.environ.get("JUPYTERHUB_USER", "")
    if request.get("username") != user or request.get("status") != "released":
        return []
    return [
        {"name": f["name"], "url": f"{EXPORTS_URL}/{request['id']}/{f['name']}"}
        for f in (request.get("release") or {}).get("files", [])
    ]


class LabApiHandler(WorkFolderHandler, APIHandler):
    """A JSON route of the extension: errors as ``{"message": ...}``, platform errors relayed."""

    async def relay(self, method: str, path: str, body: Any = None) -> Any:
        """Call the platform; its refusal becomes this route's answer, with its status."""
        try:
            return await platform.call(method, path, body)
        except platform.PlatformError as err:
            status = err.status if 400 <= err.status < 600 else 502
            raise web.HTTPError(status, err.message) from None

    async def reviewed(self, requests: list[dict[str, Any]]) -> None:
        """Add each request's reviewers' steps (``decisions``), fetched side by side."""
        details = await asyncio.gather(
            *(self.relay("GET", f"api/egress/requests/{r['id']}") for r in requests)
        )
        for row, detail in zip(requests, details, strict=True):
            row["decisions"] = detail.get("decisions", [])
            for key in ("username", "status", "release"):
                row.setdefault(key, detail.get(key))

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 saying what is wrong with it."""
        try:
            body = json.loads(self.request.body or b"")
        except ValueError:
            raise web.HTTPError(400, refusal("The body is not JSON.")) from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, refusal("The body must be a JSON object."))
        return body

    async def content(self, body: dict[str, Any]) -> dict[str, Any]:
        """The cells or the file ``body`` names, as the platform would receive them."""
        notebook, file = body.get("notebook"), body.get("file")
        if notebook is not None and file is not None:
            raise web.HTTPError(400, refusal("Name a notebook or a file, not both."))
        if isinstance(notebook, str) and notebook:
            cells = body.get("cells")
            if not isinstance(cells, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cells
            ):
                raise web.HTTPError(
                    400, refusal("cells must be a list of cell indices (0, 1, ...).")
                )
            return await self._cells(notebook, [str(c) for c in dict.fromkeys(cells)])
        if isinstance(file, str) and file:
            return await self._file(file)
        raise web.HTTPError(400, refusal("Choose cells of a notebook or a file."))


class ContextApi(LabApiHandler):
    """``GET shuyu/api/context``: whose sandbox this is, for the status bar and the panel."""

    @web.authenticated
    @authorized
    def get(self) -> None:
        self.finish(
            {
                "tenant": os.environ.get("SHUYU_TENANT", ""),
                "user": os.environ.get("JUPYTERHUB_USER", ""),
                "exports_url": EXPORTS_URL,
            }
        )


class GrantsApi(LabApiHandler):
    """``GET shuyu/api/grants``: the tenant's active grants and their views' state."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(await self.relay("GET", "api/grants"))


class BudgetApi(LabApiHandler):
    """``GET shuyu/api/budget``: the tenant's DP budget per active grant."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(await self.relay("GET", "api/dp/budget"))


class ExportsApi(LabApiHandler):
    """``GET``/``POST shuyu/api/exports``: the tenant's requests, or file a new one."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        listing = await self.relay("GET", "api/egress/requests")
        requests = listing.get("requests", [])
        await self.reviewed(requests[:DETAILED_REQUESTS])
        for row in requests:
            row.setdefault("decisions", [])
            row["downloads"] = downloads(row)
        self.finish({"requests": requests, "exports_url": EXPORTS_URL})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        purpose, title = body.get("purpose"), body.get("title", "")
        if not isinstance(purpose, str) or not purpose.strip():
            raise web.HTTPError(400, refusal("An export request needs a purpose statement."))
        if len(purpose) > PURPOSE_CHARS:
            raise web.HTTPError(
                400, refusal("The purpose has more than {limit} characters.", limit=PURPOSE_CHARS)
            )
        if not isinstance(title, str) or len(title) > TITLE_CHARS:
            raise web.HTTPError(
                400,
                refusal("The title must be text of at most {limit} characters.", limit=TITLE_CHARS),
            )
        content = await self.content(body)
        answer = await self.relay(
            "POST",
            "api/egress/requests",
            {**content, "purpose": purpose.strip(), "title": title.strip()},
        )
        self.set_status(201)
        self.finish(answer)


class PreviewApi(LabApiHandler):
    """``POST shuyu/api/exports/preview``: exactly what filing would send, nothing filed."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        content = await self.content(self.json_body())
        if content["kind"] == "file":  # its size, not its bytes: the browser has the file
            size = len(base64.b64decode(content["data_b64"]))
            content = {"kind": "file", "path": content["path"], "bytes": size}
        self.finish(content)


class JobsApi(LabApiHandler):
    """``GET shuyu/api/jobs``: the tenant's sealed jobs, each with its export request's
    status, reviewers' comments and (for the submitter, once released) download links."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        jobs = (await self.relay("GET", "api/jobs")).get("jobs", [])[:DETAILED_REQUESTS]
        requests = [{"id": job["request_id"]} for job in jobs if job.get("request_id")]
        await self.reviewed(requests)
        by_id = {r["id"]: r for r in requests}
        self.finish({"jobs": [job_row(job, by_id.get(job.get("request_id"))) for job in jobs]})


def job_row(job: dict[str, Any], request: dict[str, Any] | None) -> dict[str, Any]:
    """What the panel shows of a job: no purpose, parameters or inputs (they stay short)."""
    row = {key: job.get(key) for key in JOB_FIELDS}
    if request is not None:
        row["request"] = {
            "id": request["id"],
            "status": request.get("status"),
            "decisions": request.get("decisions", []),
            "downloads": downloads(request),
        }
    return row


class VolumeApi(LabApiHandler):
    """``GET shuyu/api/volume``: the user's own output today and the daily cap."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(await self.relay("GET", "api/egress/volume"))


class QueryPreviewApi(LabApiHandler):
    """``POST shuyu/api/budget/preview``: the platform's dry run of a DP query (spends
    nothing): the ε it would cost and what would remain of the grant's budget."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        answer = await self.relay("POST", "api/dp/query", {**body, "dry_run": True})
        epsilon, remaining = answer.get("epsilon"), answer.get("remaining_epsilon")
        self.finish(
            {
                "dataset": answer.get("dataset"),
                "epsilon": epsilon,
                "remaining_epsilon": remaining,
                "after_epsilon": max(0.0, remaining - epsilon)
                if isinstance(epsilon, int | float) and isinstance(remaining, int | float)
                else None,
            }
        )


def handlers() -> list[tuple[str, type]]:
    """The extension's routes, relative to the server's base URL."""
    return [
        (r"shuyu/api/context/?", ContextApi),
        (r"shuyu/api/grants/?", GrantsApi),
        (r"shuyu/api/budget/?", BudgetApi),
        (r"shuyu/api/exports/?", ExportsApi),
        (r"shuyu/api/exports/preview/?", PreviewApi),
        (r"shuyu/api/jobs/?", JobsApi),
        (r"shuyu/api/volume/?", VolumeApi),
        (r"shuyu/api/budget/preview/?", QueryPreviewApi),
    ]
