"""The egress guard: no route of the single-user server hands files to the browser (R10–R12).

A jupyter-server extension that puts one rule in front of every route of the server
(core, JupyterLab and every other extension): each request is classified by
:func:`classify` on its decoded, normalised path, and a download is answered by
:class:`RefusedHandler` with 403, a sentence pointing to an export request, and an
``egress.blocked`` event in the platform's audit chain. Everything else goes on to the
route it was meant for, untouched (the check costs a regular expression, and for
``/api/contents`` GETs of non-notebook files one ``stat``).

Routes of jupyter-server 2.x, JupyterLab 4.x and the extensions installed in the image,
and their treatment (keep this table in step with :data:`REFUSED_PREFIXES` and
:func:`classify`):

=======================================  ===============================================
route                                    treatment
=======================================  ===============================================
``/files/…`` (GET, HEAD, ``?download``)  refused: raw bytes of any file
``/view/…``                              refused: a page embedding ``/files/…``
``/nbconvert/<format>/<path>``, POST     refused: every export format, with or without
``/nbconvert/<format>``                  ``?download=true``
``/api/contents/<path>`` GET/HEAD        directories and notebooks (``*.ipynb``) served,
                                         so JupyterLab opens and saves them; refused:
                                         ``format=base64`` (binary), other files above
                                         ``max_text_bytes``, anything whose real path
                                         leaves the work folder (symlinks)
``/api/contents…`` ``content=0``         served (metadata only)
``/api/contents…`` PUT/POST/PATCH/DEL    served: saving, copying, renaming, checkpoints
                                         stay inside the sandbox
``/api/notebooks/…``                     redirects to ``/api/contents/…`` (rules above)
``/terminals/…``, ``/api/terminals…``    refused unless ``allow_terminals``; the
                                         terminals extension is also switched off
``/lsp/…``                               refused: a language server reads any file the
                                         server can; jupyter_lsp is switched off
``/voila/…``                             refused: Voila renders and serves files
                                         (``/voila/files``); dashboards are served by
                                         the platform's Voila service after review
``/api/kernels/…/channels``              served: running code is the point; what the
                                         kernel prints reaches the browser (see below)
``/lab…``, ``/lab/api/…``, ``/static``,  served: the application, its settings,
``/kernelspecs/…``, ``/api/…`` (rest)    workspaces, logos and metadata, no user files
=======================================  ===============================================

Paths are matched after percent-decoding (repeatedly), ``.``/``..``/``//``
normalisation and lower-casing, so ``/%66iles/x``, ``/lab/../files/x`` and ``/FILES/x``
are refused like ``/files/x``. What this guard cannot stop is what any screen shows:
text a kernel prints can be copied by hand; that is the residual risk the review of
published outputs and the masked views exist for.

The launcher (:mod:`shuyu_server.singleuser`) turns this extension on and the risky
ones off after every configuration file is read, because the tenant owns
``~/.jupyter`` and could otherwise switch the guard off for its next start.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from dataclasses import dataclass
from html import escape
from stat import S_ISDIR
from typing import Any
from urllib.parse import unquote

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.extension.application import ExtensionApp
from tornado import web
from tornado.httputil import HTTPServerRequest
from tornado.routing import Matcher, Rule
from traitlets import Bool, Integer

from . import export, jobs, lab_api, platform
from .pages import DOWNLOADS_OFF, REFUSALS, page, refusal

log = logging.getLogger("shuyu.egress")

#: First path segments refused outright, and why (after the base URL, lower-cased).
REFUSED_PREFIXES: dict[str, str] = {
    "files": "raw file download",
    "view": "file view page (embeds /files)",
    "nbconvert": "notebook export (nbconvert)",
    "voila": "Voila rendering and file serving inside the sandbox",
    "lsp": "language-server access to files",
}
#: Routes of the terminals extension, refused unless terminals are allowed.
TERMINAL_PREFIXES = ("terminals", "api/terminals")
#: Contents API routes whose GET returns file content.
CONTENTS_PREFIXES = ("api/contents", "api/notebooks")

MESSAGE = DOWNLOADS_OFF
#: :data:`MESSAGE` in Chinese, shown first.
MESSAGE_ZH = REFUSALS[MESSAGE]


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the route family and a reason for the audit record."""

    route: str
    reason: str


def _decoded(path: str) -> str:
    """``path`` percent-decoded until stable (at most a few rounds) and normalised."""
    for _ in range(5):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return posixpath.normpath("/" + path).lstrip("/")


def classify(
    method: str,
    path: str,
    query: dict[str, list[bytes]],
    *,
    base_url: str,
    root_dir: str,
    max_text_bytes: int,
    allow_terminals: bool = False,
) -> Refusal | None:
    """The refusal for a request, or ``None`` to let it through (see the module table)."""
    relative = path[len(base_url) :] if path.startswith(base_url) else path
    clean = _decoded(relative)
    lowered = clean.lower()
    first = lowered.split("/", 1)[0]
    if first in REFUSED_PREFIXES:
        return Refusal(first, REFUSED_PREFIXES[first])
    if not allow_terminals and any(
        lowered == p or lowered.startswith(p + "/") for p in TERMINAL_PREFIXES
    ):
        return Refusal("terminals", "terminals are switched off")
    prefix = next((p for p in CONTENTS_PREFIXES if lowered.startswith(p)), None)
    if prefix is None or method not in ("GET", "HEAD"):
        return None
    if lowered[len(prefix) :][:1] not in ("", "/") or lowered.endswith(("/checkpoints",)):
        return None
    content = query.get("content", [b"1"])[-1]
    if content == b"0":
        return None
    if query.get("format", [b""])[-1] == b"base64":
        return Refusal("api/contents", "binary content (format=base64)")
    target = clean[len(prefix) :].lstrip("/")
    root = os.path.realpath(root_dir)
    real = os.path.realpath(os.path.join(root, target))
    if real != root and not real.startswith(root + os.sep):
        return Refusal("api/contents", "a path that leaves the work folder")
    try:
        stat = os.stat(real)
    except OSError:
        return None  # the contents API answers 404 itself
    if S_ISDIR(stat.st_mode) or real.endswith(".ipynb"):
        return None
    if stat.st_size > max_text_bytes:
        return Refusal(
            "api/contents", f"a file of {stat.st_size} bytes (limit {max_text_bytes} bytes)"
        )
    return None


class _GuardMatcher(Matcher):
    """Matches exactly the requests :func:`classify` refuses."""

    def __init__(self, guard: EgressGuard) -> None:
        self.guard = guard

    def match(self, request: HTTPServerRequest) -> dict[str, Any] | None:
        refusal = classify(
            request.method or "GET",
            request.path,
            request.query_arguments,
            base_url=self.guard.serverapp.base_url,
            root_dir=self.guard.serverapp.root_dir,
            max_text_bytes=self.guard.max_text_bytes,
            allow_terminals=self.guard.allow_terminals,
        )
        if refusal is None:
            return None
        request.shuyu_refusal = refusal  # type: ignore[attr-defined]
        return {"path_args": [], "path_kwargs": {}}


class RefusedHandler(JupyterHandler):
    """Answers a refused download: 403 with the way out, and an audit record."""

    auth_resource = "contents"

    async def _refuse(self) -> None:
        why: Refusal = self.request.shuyu_refusal  # type: ignore[attr-defined]
        if self.current_user is None:
            raise web.HTTPError(403, refusal("Sign in first."))
        await self.settings["shuyu_egress"].record(self, why)
        self.set_status(403)
        if self.request.path.startswith(self.base_url + "api/"):
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(
                json.dumps({"status": 403, "message": refusal(MESSAGE), "reason": why.reason})
            )
        else:
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(
                page(
                    "下载已被拒绝 Download refused",
                    f"<p class=error id=refusal>{escape(MESSAGE_ZH)}</p><p>{escape(MESSAGE)}</p>"
                    f'<p><a href="{escape(self.base_url)}shuyu/export">申请导出 Request export'
                    "</a></p>",
                    server_url=self.base_url,
                )
            )

    # Every method a browser or script may use gets the same refusal.
    get = head = post = put = patch = delete = _refuse  # type: ignore[assignment]

    def check_xsrf_cookie(self) -> None:
        """A refusal changes nothing, so it needs no xsrf token (and must not 403 early)."""


class EgressGuard(ExtensionApp):
    """The jupyter-server extension that refuses downloads (see the module docstring)."""

    name = "shuyu_server"
    description = "Shuyu egress guard: refuses every download route, audited."

    max_text_bytes = Integer(
        512 * 1024,
        help="""Largest non-notebook file the contents API returns; larger ones (and binary
        content) are refused as downloads.""",
    ).tag(config=True)

    allow_terminals = Bool(
        False,
        help="""Let the terminals routes through (the launcher also switches the terminals
        extension on only when SHUYU_ALLOW_TERMINALS=1).""",
    ).tag(config=True)

    def initialize_handlers(self) -> None:
        """Put the guard's rule before every other route of the server."""
        web_app = self.serverapp.web_app
        web_app.settings["shuyu_egress"] = self
        web_app.default_router.rules.insert(0, Rule(_GuardMatcher(self), RefusedHandler))
        self.handlers.extend(export.handlers() + jobs.handlers() + lab_api.handlers())
        log.info("Shuyu egress guard active (text limit %d bytes)", self.max_text_bytes)

    async def record(self, handler: JupyterHandler, refusal: Refusal) -> None:
        """Send an ``egress.blocked`` record to the platform; log it if that fails."""
        detail = {
            "route": refusal.route,
            "reason": refusal.reason,
            "method": handler.request.method,
            "path": handler.request.path[:1024],
            "query": handler.request.query[:512],
        }
        try:
            await platform.call("POST", "api/egress/blocked", detail, timeout=10)
        except platform.PlatformError as err:  # the refusal stands, recorded or not
            log.error("could not record a refused download (%s): %s", err, detail)
