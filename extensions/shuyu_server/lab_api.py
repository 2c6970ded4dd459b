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
from .pages import EXPORTS_URL

#: Most export requests whose reviewers' comments the panel fetches (newest first).
DETAILED_REQUESTS = 20
#: Longest purpose statement and title accepted (the platform's limits).
PURPOSE_CHARS = 4000
TITLE_CHARS = 200


class LabApiHandler(WorkFolderHandler, APIHandler):
    """A JSON route of the extension: errors as ``{"message": ...}``, platform errors relayed."""

    async def relay(self, method: str, path: str, body: Any = None) -> Any:
        """Call the platform; its refusal becomes this route's answer, with its status."""
        try:
            return await platform.call(method, path, body)
        except platform.PlatformError as err:
            status = err.status if 400 <= err.status < 600 else 502
            raise web.HTTPError(status, err.message) from None

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 saying what is wrong with it."""
        try:
            body = json.loads(self.request.body or b"")
        except ValueError:
            raise web.HTTPError(400, "The body is not JSON.") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The body must be a JSON object.")
        return body

    async def content(self, body: dict[str, Any]) -> dict[str, Any]:
        """The cells or the file ``body`` names, as the platform would receive them."""
        notebook, file = body.get("notebook"), body.get("file")
        if notebook is not None and file is not None:
            raise web.HTTPError(400, "Name a notebook or a file, not both.")
        if isinstance(notebook, str) and notebook:
            cells = body.get("cells")
            if not isinstance(cells, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cells
            ):
                raise web.HTTPError(400, "cells must be a list of cell indices (0, 1, ...).")
            return await self._cells(notebook, [str(c) for c in dict.fromkeys(cells)])
        if isinstance(file, str) and file:
            return await self._file(file)
        raise web.HTTPError(400, "Choose cells of a notebook or a file.")


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
        user = os.environ.get("JUPYTERHUB_USER", "")
        requests = listing.get("requests", [])
        details = await asyncio.gather(
            *(
                self.relay("GET", f"api/egress/requests/{r['id']}")
                for r in requests[:DETAILED_REQUESTS]
            )
        )
        for row, detail in zip(requests, details, strict=False):
            row["decisions"] = detail.get("decisions", [])
        for row in requests:
            row["downloads"] = (
                [
                    {"name": f["name"], "url": f"{EXPORTS_URL}/{row['id']}/{f['name']}"}
                    for f in (row.get("release") or {}).get("files", [])
                ]
                if row.get("username") == user and row.get("status") == "released"
                else []
            )
        self.finish({"requests": requests, "exports_url": EXPORTS_URL})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        purpose, title = body.get("purpose"), body.get("title", "")
        if not isinstance(purpose, str) or not purpose.strip():
            raise web.HTTPError(400, "An export request needs a purpose statement.")
        if len(purpose) > PURPOSE_CHARS:
            raise web.HTTPError(400, f"The purpose has more than {PURPOSE_CHARS} characters.")
        if not isinstance(title, str) or len(title) > TITLE_CHARS:
            raise web.HTTPError(400, f"The title must be text of at most {TITLE_CHARS} characters.")
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


def handlers() -> list[tuple[str, type]]:
    """The extension's routes, relative to the server's base URL."""
    return [
        (r"shuyu/api/context/?", ContextApi),
        (r"shuyu/api/grants/?", GrantsApi),
        (r"shuyu/api/budget/?", BudgetApi),
        (r"shuyu/api/exports/?", ExportsApi),
        (r"shuyu/api/exports/preview/?", PreviewApi),
    ]
