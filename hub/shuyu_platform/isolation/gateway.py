"""The egress gateway: the only way from the proxy to a sandboxed server (R10–R12, R15).

Everything inside a sandbox is the tenant's: the single-user server runs as the
tenant's uid and reads the tenant's files, and a kernel can stop it and answer in its
place. So the decision what reaches the browser is taken here, in the hub's process,
on what the server actually answers:

    browser -> proxy -> gateway (hub, 127.0.0.1:port) --fd-only socket--> sandbox server

The server's socket is created by the hub in a root-owned folder mounted read-only in
the sandbox (``run/<server>/sock/``, ``/run/shuyu`` inside) and handed to the sandbox's
first program as an open file descriptor. Nothing in the sandbox can rename, replace
or reconfigure it: whatever answers on it, the gateway applies :data:`ROUTES`.

Sign-in stays the server's: requests go on with the browser's own headers (the whole
``Cookie`` header, ``Host``, ``Origin``, ``Sec-Fetch-*``, the query string), and the
upstream client keeps no cookie jar, so no request is signed in by a cookie another
request left behind.

:data:`ROUTES` is an **allow-list**, one row per route JupyterLab needs, with the reason
it is there and the check its *reply* must pass; any other path is refused (403, the way
out, an ``egress.blocked`` record). Paths are matched as the server routes them: raw,
case-sensitive, after refusing anything that is not canonical (``..`` or ``.``
segments, ``//``, encoded ``/``, ``\\`` or ``%``), so no decoding trick makes the
gateway and the server read one path two ways.

Kinds of route:

- ``image``: static assets (JupyterLab's bundle, extension assets, themes, kernel
  logos) served by the gateway itself from the image's read-only directories, never
  from the server: a tenant's ``~/.local/share/jupyter`` reaches no browser.
- ``proxy``: forwarded, the whole reply read (up to a size limit) and checked before a
  byte is sent; above all a contents-API reply carries content only when it is a
  notebook or a folder listing (``type: file`` or ``format: base64`` is refused
  whatever the request asked).
- ``websocket``: kernel channels and the event stream, forwarded frame by frame, with
  the subprotocol the server chose (``v1.kernel.websocket.jupyter.org``).
- ``answer``: answered by the gateway itself without asking the server (``lsp/status``).

Every byte sent from a server to the browser (reply bodies, websocket frames by kernel
message type) is counted by the :class:`~.metering.Meter` against the user's daily cap;
past it the gateway answers 429 and closes websockets with a message saying why.

What this cannot stop is what the allow-list must let through: notebooks (up to the
size cap), kernel output and small settings/workspace documents can carry data the
tenant put there. Those bytes are counted and capped, and the volumes audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import importlib.util
import json
import logging
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
from tornado import httpclient, httputil, iostream, web, websocket
from tornado.httpserver import HTTPServer
from tornado.netutil import Resolver, bind_sockets

from .. import messages
from ..core import audit
from ..egress.metering import CapReached, Meter, ws_kind

log = logging.getLogger("shuyu.gateway")

MESSAGE = (
    "Downloads are switched off in Shuyu: data leaves the sandbox only through an export "
    "request that reviewers approve (the Request export page, shuyu/export on this "
    "server, or shuyu.egress.request(...) in a notebook). This attempt was recorded."
)

KIB = 1024
MIB = 1024 * KIB
#: Largest body of a redirect, and of an error reply, the gateway passes on.
REDIRECT_BODY = 4 * KIB
ERROR_BODY = 16 * KIB
#: Largest websocket message either way (a display_data of 64 MiB is not analysis).
WS_MESSAGE = 64 * MIB
#: Requests one server's gateway carries at once, and websockets it holds open; more are
#: answered 503 at once. Each holds descriptors of the hub, which every tenant shares: a
#: browser's script asking thousands of things at once, or a slow server, must not use
#: them up. JupyterLab keeps a few websockets per open kernel and asks a few dozen
#: things at once while it starts.
MAX_IN_FLIGHT = 256
MAX_WEBSOCKETS = 64
#: Connections (keep-alive ones included) one server's gateway holds; more are closed as
#: they come. A request counts in MAX_IN_FLIGHT only once its body has arrived, so this
#: bounds those still sending one (each at most twice the notebook cap, held in memory),
#: and a connection that sends nothing for IDLE_SECONDS, or takes longer than that for
#: one body, is closed. A browser opens six connections to a host over HTTP/1.1, but
#: an HTTP/2 front end lets it ask dozens of things at once, each on a connection of
#: the proxy's own. An open websocket no longer counts here (MAX_WEBSOCKETS does).
MAX_CONNECTIONS = 128
IDLE_SECONDS = 300
#: A reply is given up on (closed, and metered as read) once IDLE_SECONDS plus its size
#: at this many bytes a second have passed: a browser that stops reading holds it.
MIN_READ_RATE = 16 * KIB
BUSY = {
    "requests": "Your server already has {limit} requests under way through the platform; "
    "wait for some to finish and try again.",
    "websockets": "Your server already has {limit} websockets open through the platform; "
    "close some (the tabs of kernels you no longer use) and try again.",
}
#: Refusals recorded in the audit chain per server and minute; more are counted only.
AUDITED_REFUSALS_PER_MINUTE = 60
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"


@dataclass(frozen=True)
class Refusal:
    """Why a request or its reply is refused: route family, reason, HTTP status."""

    route: str
    reason: str
    status: int = 403


@dataclass(frozen=True)
class Reply:
    """What the server answered: status, headers (with repeats) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    items: tuple[tuple[str, str], ...] = ()

    def json(self) -> Any:
        """The body as JSON (ValueError if it is not), parsed once."""
        parsed = self.__dict__.get("_parsed", _UNPARSED)
        if parsed is _UNPARSED:
            parsed = json.loads(self.body)
            object.__setattr__(self, "_parsed", parsed)
        return parsed


_UNPARSED = object()


#: A reply check: the reason to refuse, or None.
Check = Callable[[Reply, "Limits"], str | None]


@dataclass(frozen=True)
class Limits:
    """Size limits the reply checks apply (from ``c.Shuyu``)."""

    contents: int = 16 * MIB


# ------------------------------------------------------------------ reply checks
def _json(reply: Reply, limit: int) -> str | None:
    kind = reply.headers.get("Content-Type", "")
    if not kind.startswith("application/json"):
        return f"a reply of type {kind or 'none'!r} where JSON was expected"
    if len(reply.body) > limit:
        return f"a reply of {len(reply.body)} bytes (limit {limit} bytes)"
    try:
        reply.json()
    except ValueError:
        return "a reply that is not valid JSON"
    return None


def json_up_to(limit: int) -> Check:
    """A JSON reply of at most ``limit`` bytes."""
    return lambda reply, _limits: _json(reply, limit)


def html_up_to(limit: int) -> Check:
    """An HTML page of at most ``limit`` bytes."""

    def check(reply: Reply, _limits: Limits) -> str | None:
        kind = reply.headers.get("Content-Type", "")
        if not kind.startswith("text/html"):
            return f"a reply of type {kind or 'none'!r} where a page was expected"
        if len(reply.body) > limit:
            return f"a page of {len(reply.body)} bytes (limit {limit} bytes)"
        return None

    return check


def redirect_only(reply: Reply, _limits: Limits) -> str | None:
    """Only a redirect (login, OAuth callback, the base URL)."""
    return None if 300 <= reply.status < 400 else "a route that only redirects answered content"


def contents_reply(reply: Reply, limits: Limits) -> str | None:
    """A contents-API model carries content only as a notebook or a folder listing."""
    problem = _json(reply, limits.contents)
    if problem:
        return problem
    data = reply.json()
    models = data if isinstance(data, list) else [data]
    for model in models:
        if not isinstance(model, dict):
            return "a contents reply that is not a model"
        fmt = model.get("format")
        if isinstance(fmt, str) and "base64" in fmt.lower():
            return "binary content (format base64)"
        content = model.get("content")
        if content is None:
            continue
        kind = model.get("type")
        if kind == "notebook" and fmt == "json" and isinstance(content, dict):
            continue
        if kind == "directory" and fmt == "json" and isinstance(content, list):
            if all(isinstance(e, dict) and e.get("content") is None for e in content):
                continue
            return "a folder listing that carries file content"
        return f"file content (type {kind!r}, format {fmt!r})"
    return None


def checkpoints_reply(reply: Reply, _limits: Limits) -> str | None:
    """Checkpoint ids and times, nothing else."""
    problem = _json(reply, 64 * KIB)
    if problem:
        return problem
    data = reply.json()
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict) or set(item) - {"id", "last_modified"}:
            return "a checkpoints reply with more than ids and times"
        if any(not isinstance(v, str) or len(v) > 64 for v in item.values()):
            return "a checkpoints reply with more than ids and times"
    return None


#: Largest preview of an export request (the Request export page's cap).
PREVIEW_BODY = 2 * MIB
#: What one previewed cell may hold: what a notebook cell holds, nothing else.
_PREVIEW_CELL = frozenset({"index", "source", "outputs", "execution_count"})


def preview_reply(reply: Reply, _limits: Limits) -> str | None:
    """An export preview: chosen cells of a notebook, or a file's name and size only.

    The extension answers ``{"kind": "cells", "notebook", "cells": [...]}`` (cells the
    notebook holds anyway) or ``{"kind": "file", "path", "bytes"}``: a file's bytes stay
    in the sandbox until a reviewer releases them, whatever a replaced server answers.
    """
    problem = _json(reply, PREVIEW_BODY)
    if problem:
        return problem
    data = reply.json()
    if not isinstance(data, dict):
        return "a preview that is not an object"
    kind = data.get("kind")
    if kind == "file":
        if set(data) != {"kind", "path", "bytes"}:
            return "a file preview carrying more than the file's name and size"
        if not isinstance(data["path"], str) or len(data["path"]) > 4 * KIB:
            return "a file preview whose path is not a short text"
        if not isinstance(data["bytes"], int) or isinstance(data["bytes"], bool):
            return "a file preview whose size is not a number"
        return None
    if kind != "cells":
        return f"a preview of kind {str(kind)[:40]!r}"
    cells = data.get("cells")
    if set(data) != {"kind", "notebook", "cells"} or not isinstance(cells, list):
        return "a cells preview with more than a notebook name and its cells"
    if not isinstance(data["notebook"], str) or len(data["notebook"]) > 4 * KIB:
        return "a cells preview whose notebook name is not a short text"
    for cell in cells:
        if not isinstance(cell, dict) or set(cell) - _PREVIEW_CELL:
            return "a previewed cell with more than a notebook cell holds"
        if not isinstance(cell.get("source", ""), str):
            return "a previewed cell whose source is not text"
        outputs = cell.get("outputs", [])
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            return "a previewed cell whose outputs are not notebook outputs"
    return None


def settings_reply(reply: Reply, _limits: Limits) -> str | None:
    """JupyterLab settings: schemas from the image, the tenant's own part kept small."""
    problem = _json(reply, 8 * MIB)
    if problem:
        return problem
    data = reply.json()
    if not isinstance(data, dict):
        return "a settings reply that is not an object"
    listing = data.get("settings")
    items = listing if isinstance(listing, list) else [data]
    for item in items:
        raw = item.get("raw", "") if isinstance(item, dict) else ""
        if not isinstance(raw, str) or len(raw.encode()) > 64 * KIB:
            return "user settings over 64 KiB"
    return None


# ------------------------------------------------------------------ the table
def _share(*parts: str) -> Path:
    return Path(sys.prefix, "share", "jupyter", *parts)


def _package_dir(name: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(name)
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0] if locations else "/nonexistent", *parts)


@dataclass(frozen=True)
class Route:
    """One allowed route: where, which methods, of what kind, why, and its reply check."""

    name: str
    pattern: str
    methods: frozenset[str]
    kind: str  # "proxy" | "websocket" | "image" | "answer"
    reason: str
    check: Check | None = None
    root: Callable[[], Path] | None = None
    #: For "answer" routes: the status the gateway itself answers (the server is not asked).
    status: int = 404
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))


def _route(name: str, pattern: str, methods: str, kind: str, reason: str, **rest: Any) -> Route:
    return Route(name, pattern, frozenset(methods.split()), kind, reason, **rest)


NOTEBOOK_METHODS = "GET PUT POST PATCH DELETE"

#: The allow-list, in matching order (patterns are on the raw path after the server's
#: base URL, matched whole and case-sensitively, as jupyter-server routes them).
# fmt: off
ROUTES: list[Route] = [
    # -- static assets, from the image's read-only directories only
    _route("static", r"static/lab/(.*)", "GET HEAD", "image",
           "JupyterLab's application bundle", root=lambda: _share("lab", "static")),
    _route("lab/extensions", r"lab/extensions/(.*)", "GET HEAD", "image",
           "prebuilt extensions installed in the image (never ~/.local/share/jupyter)",
           root=lambda: _share("labextensions")),
    _route("lab/api/themes", r"lab/api/themes/(.*)", "GET HEAD", "image",
           "JupyterLab's themes", root=lambda: _share("lab", "themes")),
    _route("kernelspecs", r"kernelspecs/(.*)", "GET HEAD", "image",
           "kernel logos of the image's kernels (a tenant's kernelspec dir is not served)",
           root=lambda: _share("kernels")),
    _route("static", r"static/(.*)", "GET HEAD", "image",
           "jupyter-server's own assets (favicons)",
           root=lambda: _package_dir("jupyter_server", "static")),
    # -- pages and sign-in
    _route("base", r"(tree(/.*)?)?", "GET", "proxy", "redirects to /lab",
           check=redirect_only),
    _route("lab", r"lab(/(tree|workspaces|doc)(/.*)?)?", "GET", "proxy",
           "the JupyterLab page (its configuration; assets come from the image)",
           check=html_up_to(1 * MIB)),
    _route("oauth_callback", r"oauth_callback", "GET", "proxy",
           "completes the hub sign-in", check=redirect_only),
    _route("logout", r"logout", "GET", "proxy", "signs out (a redirect)",
           check=redirect_only),
    _route("shuyu/export", r"shuyu/export/?", "GET POST", "proxy",
           "the Request export page, the way out through review",
           check=html_up_to(2 * MIB)),
    _route("shuyu/jobs", r"shuyu/jobs/?", "GET POST", "proxy",
           "the Submit job page: a sealed production run whose results leave through review",
           check=html_up_to(2 * MIB)),
    _route("shuyu/api", r"shuyu/api/(context|grants|budget)/?", "GET", "proxy",
           "the Shuyu JupyterLab extension: tenant, granted views, DP budget",
           check=json_up_to(256 * KIB)),
    _route("shuyu/api", r"shuyu/api/exports/?", "GET POST", "proxy",
           "the extension's export requests: list them, or file one",
           check=json_up_to(256 * KIB)),
    _route("shuyu/api", r"shuyu/api/exports/preview/?", "POST", "proxy",
           "the extension's Request export dialog: what a request would freeze (cells the "
           "notebook holds anyway, within the Request export page's cap) or a file's "
           "name and size, never its bytes", check=preview_reply),
    _route("shuyu/api", r"shuyu/api/(jobs|volume)/?", "GET", "proxy",
           "the extension's sealed jobs (status, exit code, review) and the user's own "
           "output today against the daily cap",
           check=json_up_to(256 * KIB)),
    _route("shuyu/api", r"shuyu/api/budget/preview/?", "POST", "proxy",
           "the extension's budget bar: the platform's dry run of a DP query (ε and what "
           "would remain; nothing is spent or released)",
           check=json_up_to(16 * KIB)),
    # -- notebooks and the file browser
    _route("api/contents", r"api/contents(/[^/]+)*/checkpoints(/[^/]+)?", "GET POST DELETE",
           "proxy", "notebook checkpoints (ids and times only)", check=checkpoints_reply),
    _route("api/contents", r"api/contents(/[^/]+)*", NOTEBOOK_METHODS, "proxy",
           "open, save, copy, rename notebooks; list folders: content only as a notebook "
           "or a listing, within the size cap", check=contents_reply),
    # -- kernels and sessions
    _route("api/sessions", r"api/sessions(/[^/]+)?", "GET POST PATCH DELETE", "proxy",
           "notebook sessions", check=json_up_to(256 * KIB)),
    _route("api/kernels", r"api/kernels(/[^/]+)?", "GET POST DELETE", "proxy",
           "kernel start, list, stop", check=json_up_to(256 * KIB)),
    _route("api/kernels", r"api/kernels/[^/]+/(interrupt|restart)", "POST", "proxy",
           "kernel interrupt and restart", check=json_up_to(64 * KIB)),
    _route("api/kernels", r"api/kernels/[^/]+/channels", "GET", "websocket",
           "running code: every frame metered by message type against the daily cap"),
    _route("api/kernelspecs", r"api/kernelspecs(/[^/]+)?", "GET", "proxy",
           "which kernels exist", check=json_up_to(256 * KIB)),
    _route("api", r"api(/status|/me)?", "GET", "proxy",
           "server version, status and who is signed in", check=json_up_to(64 * KIB)),
    _route("api/nbconvert", r"api/nbconvert", "GET", "proxy",
           "names of export formats for the menu (the exports themselves are refused)",
           check=json_up_to(256 * KIB)),
    _route("api/events", r"api/events", "POST", "proxy",
           "JupyterLab reports events to the server", check=json_up_to(4 * KIB)),
    _route("api/events", r"api/events/subscribe", "GET", "websocket",
           "the server's event stream (metered)"),
    # -- JupyterLab's own APIs
    _route("lab/api/settings", r"lab/api/settings(/.*)?", "GET PUT", "proxy",
           "settings: schemas from the image, the tenant's part at most 64 KiB each",
           check=settings_reply),
    _route("lab/api/workspaces", r"lab/api/workspaces(/.*)?", "GET PUT DELETE", "proxy",
           "the layout of open tabs, at most 256 KiB", check=json_up_to(256 * KIB)),
    _route("lab/api/translations", r"lab/api/translations(/.*)?", "GET", "proxy",
           "interface languages", check=json_up_to(4 * MIB)),
    _route("lab/api/listings", r"lab/api/listings/.*", "GET", "proxy",
           "extension allow/block listings", check=json_up_to(64 * KIB)),
    _route("lab/api/licenses", r"lab/api/licenses/?", "GET", "proxy",
           "licences of the bundled packages", check=json_up_to(8 * MIB)),
    _route("lab/api/build", r"lab/api/build", "GET", "proxy",
           "whether the application needs a rebuild (asking for one, POST, is refused)",
           check=json_up_to(4 * KIB)),
    _route("api/config", r"api/config/jupyterlabapputilsextensionannouncements", "GET", "proxy",
           "the news and update-check preference, read from the image's read-only "
           "configuration (other sections, and any write, are refused)",
           check=json_up_to(16 * KIB)),
    _route("lsp", r"lsp/status", "GET", "answer",
           "JupyterLab asks whether language servers run: the gateway answers 404 itself "
           "(they are switched off; every other lsp path is refused)"),
]

#: Terminal routes, allowed only with ``c.Shuyu.allow_terminals``.
TERMINAL_ROUTES: list[Route] = [
    _route("terminals", r"api/terminals(/[^/]+)?", "GET POST DELETE", "proxy",
           "terminals (only when the operator allows them)", check=json_up_to(64 * KIB)),
    _route("terminals", r"terminals/websocket/[^/]+", "GET", "websocket",
           "terminal I/O, metered"),
]
# fmt: on

#: Route families refused on purpose, and why (for the audit record and the README);
#: anything else not in :data:`ROUTES` is refused as "not a route JupyterLab needs".
REFUSED: dict[str, str] = {
    "files": "raw file download",
    "view": "file view page (embeds /files)",
    "nbconvert": "notebook export (nbconvert)",
    "voila": "Voila rendering and file serving inside the sandbox",
    "lsp": "language-server access to files",
    "terminals": "terminals are switched off",
    "api/terminals": "terminals are switched off",
    "api/notebooks": "old contents API alias",
    "api/config": "server-side config documents (one read-only section is allowed)",
}


def _label(relative: str) -> str:
    """The route family of a refused path, for the audit record (decoding only here)."""
    path = relative
    for _ in range(5):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    clean: list[str] = []
    for part in parts:
        if part == "..":
            if clean:
                clean.pop()
        else:
            clean.append(part)
    lowered = "/".join(clean).lower()
    for family in sorted(REFUSED, key=len, reverse=True):
        if lowered == family or lowered.startswith(family + "/"):
            return {"api/terminals": "terminals", "api/notebooks": "api/contents"}.get(
                family, family
            )
    if lowered.startswith("api/contents"):
        return "api/contents"
    return clean[0].lower() if clean else "base"


_NOT_CANONICAL = re.compile(r"%(2f|5c|25|2e)|\\|//|\x00", re.IGNORECASE)


def decide(method: str, relative: str, routes: list[Route]) -> Route | Refusal:
    """The allowed route for ``method`` on ``relative`` (path after the base URL)."""
    segments = unquote(relative).split("/")
    if _NOT_CANONICAL.search(relative) or any(s in (".", "..") for s in segments):
        return Refusal(_label(relative), "a path that is not in canonical form")
    for route in routes:
        if route.regex.fullmatch(relative):
            if method in route.methods:
                return route
            return Refusal(route.name, f"{method} is not allowed on this route")
    label = _label(relative)
    return Refusal(label, REFUSED.get(label, "not a route JupyterLab needs"))


# ------------------------------------------------------------------ the gateway
class SocketResolver(Resolver):
    """Resolves every host to the server's Unix socket (the only upstream there is)."""

    def initialize(self, path: str) -> None:  # type: ignore[override]
        self.path = path

    async def resolve(  # type: ignore[override]
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        return [(socket.AF_UNIX, self.path)]


#: Request headers not passed on (hop-by-hop, and compression: checks read plain bodies).
_DROP_REQUEST = {
    "connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "accept-encoding", "content-length",
}  # fmt: skip
_DROP_REPLY = {
    "connection", "keep-alive", "proxy-authenticate", "te", "trailer", "transfer-encoding",
    "upgrade", "content-length", "server", "date",
}  # fmt: skip


class _CappedServer(HTTPServer):
    """Tornado's HTTP server, closing a connection that would be its MAX_CONNECTIONS+1st."""

    def handle_stream(self, stream: iostream.IOStream, address: tuple) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            log.warning("a gateway holds %d connections: one more closed", MAX_CONNECTIONS)
            stream.close()
            return
        super().handle_stream(stream, address)


class Gateway:
    """One server's gateway: a Tornado HTTP server on 127.0.0.1 in the hub's event loop."""

    def __init__(
        self,
        *,
        socket_path: str,
        base_url: str,
        username: str,
        tenant: str,
        db_url: str,
        meter: Meter,
        limits: Limits,
        allow_terminals: bool = False,
    ) -> None:
        self.socket_path = socket_path
        self.base_url = base_url
        self.username = username
        self.tenant = tenant
        self.db_url = db_url
        self.meter = meter
        self.limits = limits
        self.routes = ROUTES + (TERMINAL_ROUTES if allow_terminals else [])
        self.resolver = SocketResolver(path=socket_path)
        self.max_body = max(limits.contents, 8 * MIB)
        self._client: aiohttp.ClientSession | None = None
        self.server: HTTPServer | None = None
        self._refusals: list[float] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Requests being answered and websockets open (see :data:`MAX_IN_FLIGHT`).
        self.in_flight = 0
        self.websockets = 0

    @property
    def client(self) -> aiohttp.ClientSession:
        """Keep-alive HTTP connections to the server's socket (made on first use)."""
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path, limit=64),
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
                # Cookies are the browser's: a jar here would keep the server's
                # login cookie and send it on every request, whoever made it.
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=300, connect=10),
            )
        return self._client

    def application(self) -> web.Application:
        """Tornado rules built from the table: image routes, websockets, then the rest."""
        base = re.escape(self.base_url)
        rules: list[Any] = []
        for route in self.routes:
            if route.kind == "image" and route.root is not None:
                rules.append(
                    (base + route.pattern, ImageHandler, {"path": str(route.root()), "gw": self})
                )
            elif route.kind == "websocket":
                rules.append((base + route.pattern, WebSocketGateway, {"gw": self}))
        rules.append((r".*", HttpGateway, {"gw": self}))
        return web.Application(
            rules,
            websocket_max_message_size=WS_MESSAGE,
            compress_response=False,
            log_function=lambda handler: None,
        )

    def listen(self) -> int:
        """Start serving on a free port of 127.0.0.1; return the port."""
        sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        self.server = _CappedServer(
            self.application(),
            xheaders=False,
            max_body_size=2 * self.max_body,  # a notebook, as JSON in a JSON body
            body_timeout=IDLE_SECONDS,
            idle_connection_timeout=IDLE_SECONDS,
        )
        self.server.add_sockets(sockets)
        return sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, close the upstream client, flush the meter."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._client is not None:
            await self._client.close()
        await self.meter.server_stopped(self.username)

    def relative(self, path: str) -> str | None:
        """``path`` after the server's base URL (None if it is not under it)."""
        if path + "/" == self.base_url:
            return ""
        return path[len(self.base_url) :] if path.startswith(self.base_url) else None

    def record_refusal(self, request: httputil.HTTPServerRequest, refusal: Refusal) -> None:
        """An ``egress.blocked`` record (at most :data:`AUDITED_REFUSALS_PER_MINUTE`)."""
        now = time.monotonic()
        self._refusals = [t for t in self._refusals if now - t < 60]
        log.info("refused %s %s: %s", request.method, request.path, refusal.reason)
        if len(self._refusals) >= AUDITED_REFUSALS_PER_MINUTE:
            return
        self._refusals.append(now)
        detail = {
            "route": refusal.route,
            "reason": refusal.reason,
            "method": request.method,
            "path": request.path[:1024],
            "query": request.query[:512],
            "by": "gateway",
        }
        task = asyncio.ensure_future(
            asyncio.to_thread(
                audit.append,
                self.db_url,
                actor=self.username,
                action="egress.blocked",
                target=refusal.route,
                tenant=self.tenant,
                outcome="denied",
                detail=detail,
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _refusal_body(handler: web.RequestHandler, refusal: Refusal, said: str, base_url: str) -> None:
    """Answer ``refusal``: JSON on an API path, else a page; ``said`` is the sentence for
    a person, Chinese first (see :meth:`_GatewayMixin.refuse`)."""
    handler.clear()
    handler.set_status(refusal.status)
    path = handler.request.path
    if "/api/" in path or path.endswith("/api"):
        handler.set_header("Content-Type", "application/json; charset=utf-8")
        handler.finish(
            json.dumps({"status": refusal.status, "message": said, "reason": refusal.reason})
        )
    else:
        title = html.escape(messages.text("Refused"))
        handler.set_header("Content-Type", "text/html; charset=utf-8")
        handler.finish(
            f'<!doctype html><html lang="zh-CN"><meta charset=utf-8><title>{title}</title>'
            f"<h1>{title}</h1><p>{html.escape(said)}</p>"
            f"<p>{html.escape(messages.text('Detail'))}: {html.escape(refusal.reason)}</p>"
            f'<p><a href="{html.escape(base_url)}shuyu/export">'
            f"{html.escape(messages.text('Request export'))}</a></p></html>"
        )


class _GatewayMixin:
    """Refusing, metering and the cap, shared by the HTTP, image and websocket handlers."""

    gw: Gateway
    request: httputil.HTTPServerRequest

    def refuse(self, refusal: Refusal, message: str = MESSAGE) -> None:
        """Refuse, saying ``message`` (a catalogue id) Chinese first; a 403 is audited."""
        if refusal.status == 403:
            self.gw.record_refusal(self.request, refusal)
        said = messages.refusal(message, refusal.status)
        _refusal_body(self, refusal, said, self.gw.base_url)  # type: ignore[arg-type]

    def refuse_cap(self, cap: CapReached) -> None:
        """Refuse with 429: the cap's own message says it in both languages."""
        refusal = Refusal("cap", "daily output cap reached", 429)
        _refusal_body(self, refusal, str(cap), self.gw.base_url)  # type: ignore[arg-type]

    def refuse_busy(self, what: str, limit: int) -> None:
        """Refuse with 503: this server's gateway carries all the ``what`` it may."""
        log.warning("%s: %s's gateway carries %d %s, refused", self.request.path,
                    self.gw.username, limit, what)  # fmt: skip
        said = messages.text(BUSY[what], limit=limit)
        refusal = Refusal("busy", f"more than {limit} {what} at once to your server", 503)
        _refusal_body(self, refusal, said, self.gw.base_url)  # type: ignore[arg-type]


class ImageHandler(_GatewayMixin, web.StaticFileHandler):
    """A static asset from a read-only directory of the image (never from the server)."""

    def initialize(self, path: str, gw: Gateway) -> None:  # type: ignore[override]
        super().initialize(path)
        self.gw = gw

    def set_extra_headers(self, path: str) -> None:
        """Assets are versioned by JupyterLab's file names; let the browser keep them."""
        self.set_header("Cache-Control", "public, max-age=3600")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Short errors (a 404 names no file system path)."""
        self.finish(f"{status_code}: not an asset of this installation")


class HttpGateway(_GatewayMixin, web.RequestHandler):
    """Every other request: decided from the table, forwarded, its reply checked."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, gw: Gateway) -> None:
        self.gw = gw

    def check_xsrf_cookie(self) -> None:
        """The server checks xsrf itself; the gateway changes nothing."""

    async def _handle(self) -> None:
        if self.gw.in_flight >= MAX_IN_FLIGHT:
            self.refuse_busy("requests", MAX_IN_FLIGHT)
            return
        self.gw.in_flight += 1
        try:
            await self._decide_and_forward()
        finally:
            self.gw.in_flight -= 1

    async def _decide_and_forward(self) -> None:
        relative = self.gw.relative(self.request.path)
        if relative is None:
            raise web.HTTPError(404)
        decision = decide(self.request.method or "GET", relative, self.gw.routes)
        if isinstance(decision, Refusal):
            self.refuse(decision)
            return
        if decision.kind == "answer":
            self.set_status(decision.status)
            self.finish({"message": decision.reason})
            return
        if decision.kind != "proxy":  # a websocket route without the upgrade
            self.refuse(Refusal(decision.name, "a websocket route asked without upgrade", 400))
            return
        try:
            self.gw.meter.allow(self.gw.username, self.gw.tenant, 0)
        except CapReached as cap:
            self.refuse_cap(cap)
            return
        reply = await self._forward()
        if reply is None:
            return
        problem = self._check(decision, reply)
        if problem:
            self.refuse(Refusal(decision.name, problem))
            return
        try:
            self.gw.meter.allow(self.gw.username, self.gw.tenant, len(reply.body))
        except CapReached as cap:
            self.refuse_cap(cap)
            return
        self.clear()
        self.set_status(reply.status, httputil.responses.get(reply.status, "Unknown"))
        self.clear_header("Content-Type")
        for name, value in reply.items:
            if name.lower() not in _DROP_REPLY:
                self.add_header(name, value)
        if reply.body:
            self.write(reply.body)
        deadline = IDLE_SECONDS + len(reply.body) / MIN_READ_RATE
        try:
            await asyncio.wait_for(self.finish(), deadline)
        except iostream.StreamClosedError:
            return  # the browser left before the reply was sent: nothing reached it
        except TimeoutError:
            # A browser that does not read its reply holds it, and a place among
            # MAX_IN_FLIGHT, for good: close it, and count the reply all the same (most
            # of it may have been read by then).
            log.info("%s: the browser read no more of its reply in %.0f s", self.request.path,
                     deadline)  # fmt: skip
            self.request.connection.close()  # type: ignore[union-attr]
        if not self._hub_probe(decision):
            self.gw.meter.add(self.gw.username, self.gw.tenant, "http", len(reply.body))

    def _hub_probe(self, route: Route) -> bool:
        """Whether this is the hub's own readiness check (``GET api``), not a browser's.

        The hub asks the server's URL directly; everything a browser sends comes through
        the proxy, which adds ``X-Forwarded-For``. The probe's reply (the server's
        version) reaches the hub only, so it is not counted as the user's output.
        """
        return (
            route.name == "api"
            and self.request.method == "GET"
            and self.gw.relative(self.request.path) == "api"
            and "X-Forwarded-For" not in self.request.headers
        )

    get = post = put = patch = delete = head = options = _handle  # type: ignore[assignment]

    async def _forward(self) -> Reply | None:
        """Send the request to the server; its reply, or None after refusing it."""
        headers = [
            (name, value)
            for name, value in self.request.headers.get_all()
            if name.lower() not in _DROP_REQUEST
        ]
        method = self.request.method or "GET"
        url = "http://sandbox" + self.request.uri
        body = self.request.body if method in ("POST", "PUT", "PATCH") else None
        try:
            async with self.gw.client.request(
                method, url, headers=headers, data=body, allow_redirects=False
            ) as response:
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(256 * KIB):
                    size += len(chunk)
                    if size > self.gw.max_body:
                        route = _label(self.gw.relative(self.request.path) or "")
                        self.refuse(Refusal(route, "a reply over the size limit"))
                        return None
                    chunks.append(chunk)
                items = tuple(response.headers.items())
                return Reply(response.status, response.headers, b"".join(chunks), items)
        except (TimeoutError, aiohttp.ClientError, OSError):
            self.refuse(
                Refusal("server", "the server does not answer", 502),
                "Your server does not answer; it may be starting or stopped.",
            )
            return None

    def _check(self, route: Route, reply: Reply) -> str | None:
        """Why ``reply`` may not reach the browser, or None."""
        encoding = reply.headers.get("Content-Encoding", "identity").lower()
        if encoding != "identity":
            return f"a compressed reply ({encoding})"
        if "attachment" in reply.headers.get("Content-Disposition", "").lower():
            return "a reply marked as a download"
        if reply.status in (204, 304) and not reply.body:
            return None
        if 300 <= reply.status < 400:
            return None if len(reply.body) <= REDIRECT_BODY else "a redirect with a large body"
        if reply.status >= 400:
            return None if len(reply.body) <= ERROR_BODY else "an error reply with a large body"
        if route.check is redirect_only:
            return redirect_only(reply, self.gw.limits)
        return route.check(reply, self.gw.limits) if route.check else None


# ------------------------------------------------------------------ websockets
def msg_type_of(message: str | bytes, protocol: str | None) -> str | None:
    """The kernel message type of one websocket frame (None if it has none)."""
    try:
        if isinstance(message, bytes) and protocol == V1_PROTOCOL:
            count = int.from_bytes(message[:8], "little")
            if not 3 <= count <= 64:
                return None
            offsets = [
                int.from_bytes(message[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)
            ]
            header = json.loads(message[offsets[1] : offsets[2]])
            return str(header.get("msg_type"))
        if isinstance(message, str):
            found = _MSG_TYPE.search(message, 0, 4096)
            return found.group(1) if found else None
        found_bytes = _MSG_TYPE_BYTES.search(message, 0, 4096)
        return found_bytes.group(1).decode() if found_bytes else None
    except (ValueError, AttributeError, IndexError):
        return None


#: The first ``msg_type`` of a JSON kernel frame (the header's: it is serialised first),
#: looked for in the frame's first 4 KiB without copying them.
_MSG_TYPE = re.compile(r'"msg_type":\s*"([A-Za-z_]{1,40})"')
_MSG_TYPE_BYTES = re.compile(rb'"msg_type":\s*"([A-Za-z_]{1,40})"')


def frame_size(message: str | bytes) -> int:
    """Bytes of one websocket frame's payload as sent (UTF-8 for text frames)."""
    if isinstance(message, bytes) or message.isascii():  # isascii is O(1) for str
        return len(message)
    return len(message.encode())


def _parent_header(message: str | bytes, protocol: str | None) -> Any:
    """The parent header of a kernel frame (to attach a notice to the cell it belongs to)."""
    with contextlib.suppress(ValueError, IndexError, AttributeError, TypeError):
        if isinstance(message, bytes) and protocol == V1_PROTOCOL:
            count = int.from_bytes(message[:8], "little")
            offsets = [
                int.from_bytes(message[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)
            ]
            return json.loads(message[offsets[2] : offsets[3]])
        if isinstance(message, str):
            return json.loads(message).get("parent_header", {})
    return {}


def notice(text: str, parent: Any, protocol: str | None) -> str | bytes:
    """An iopub ``stream`` (stderr) message with ``text``, in the socket's protocol."""
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "stream",
        "username": "shuyu-gateway",
        "session": "shuyu-gateway",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "version": "5.3",
    }
    content = {"name": "stderr", "text": f"\n{text}\n"}
    if protocol == V1_PROTOCOL:
        parts = [json.dumps(p).encode() for p in (header, parent or {}, {}, content)]
        channel = b"iopub"
        offsets = [8 * (1 + 1 + len(parts) + 1)]
        offsets.append(offsets[-1] + len(channel))
        for part in parts:
            offsets.append(offsets[-1] + len(part))
        head = len(offsets).to_bytes(8, "little") + b"".join(
            o.to_bytes(8, "little") for o in offsets
        )
        return head + channel + b"".join(parts)
    return json.dumps(
        {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": "stream",
            "parent_header": parent or {},
            "metadata": {},
            "content": content,
            "buffers": [],
            "channel": "iopub",
        }
    )


class WebSocketGateway(_GatewayMixin, websocket.WebSocketHandler):
    """A websocket to the server, frames from the server metered and capped."""

    def initialize(self, gw: Gateway) -> None:
        self.gw = gw
        self.upstream: websocket.WebSocketClientConnection | None = None
        self.protocol: str | None = None
        self.counted = False  # holds one of the gateway's MAX_WEBSOCKETS
        self.opened = False  # the browser's side is open (open() ran)

    def _release(self) -> None:
        """Give back this websocket's place and close the server's side (once)."""
        if self.counted:
            self.counted = False
            self.gw.websockets -= 1
        if self.upstream is not None:
            self.upstream.close()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Decide, connect to the server, then complete the browser's handshake.

        A place among :data:`MAX_WEBSOCKETS` is taken before the server is asked, and
        given back, with the server's side closed, whenever the browser's side did not
        open: a GET without the upgrade, or with it but without a key, once left the
        server's websocket open for good (Tornado answers those 400 after the gateway
        had connected). Once open, :meth:`on_close` gives it back.
        """
        if self.gw.websockets >= MAX_WEBSOCKETS:
            self.refuse_busy("websockets", MAX_WEBSOCKETS)
            return
        self.gw.websockets += 1
        self.counted = True
        try:
            await self._connect(*args, **kwargs)
        finally:
            if not self.opened or self.ws_connection is None:
                self._release()

    async def _connect(self, *args: Any, **kwargs: Any) -> None:
        relative = self.gw.relative(self.request.path) or ""
        decision = decide("GET", relative, self.gw.routes)
        if isinstance(decision, Refusal):
            self.refuse(decision)
            return
        try:
            self.gw.meter.allow(self.gw.username, self.gw.tenant, 0)
        except CapReached as cap:
            self.refuse_cap(cap)
            return
        headers = httputil.HTTPHeaders()
        for name, value in self.request.headers.get_all():
            if name.lower() not in _DROP_REQUEST and not name.lower().startswith("sec-websocket"):
                headers.add(name, value)
        wanted = [
            p.strip()
            for p in self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        request = httpclient.HTTPRequest(
            "ws://sandbox" + self.request.uri, headers=headers, connect_timeout=10
        )

        try:
            self.upstream = await websocket.websocket_connect(
                request,
                subprotocols=wanted or None,
                resolver=self.gw.resolver,
                max_message_size=WS_MESSAGE,
            )
        except httpclient.HTTPClientError as err:
            log.info("%s: the server refused the websocket: %s", self.request.path, err)
            self.set_status(err.code if err.code != 599 else 502)
            self.finish(str(err.message or "the server refused the websocket"))
            return
        except OSError:
            self.set_status(502)
            self.finish("Your server does not answer.")
            return
        self.protocol = self.upstream.selected_subprotocol
        if self.protocol is not None and self.protocol not in wanted:
            log.info("%s: the server chose a subprotocol not offered", self.request.path)
            self.set_status(502)
            self.finish("Your server chose a websocket subprotocol the browser did not offer.")
            return
        await super().get(*args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        """The subprotocol the server chose."""
        return self.protocol

    def check_origin(self, origin: str) -> bool:
        """The server checks the origin itself (the Origin header is passed on)."""
        return True

    def open(self, *args: Any, **kwargs: Any) -> None:
        """Start relaying the server's frames to the browser."""
        self.opened = True
        # A kernel answers with bursts of small frames (status, input, output, reply):
        # without TCP_NODELAY, Nagle's algorithm holds each after the first for an ACK.
        self.set_nodelay(True)
        task = asyncio.ensure_future(self._relay())
        self.gw._tasks.add(task)
        task.add_done_callback(self.gw._tasks.discard)

    async def _relay(self) -> None:
        assert self.upstream is not None
        meter, user, tenant = self.gw.meter, self.gw.username, self.gw.tenant
        while True:
            message = await self.upstream.read_message()
            if message is None:
                log.info(
                    "%s: the server closed the websocket (%s %s)",
                    self.request.path,
                    self.upstream.close_code,
                    self.upstream.close_reason,
                )
                self.close()
                return
            size = frame_size(message)
            try:
                meter.allow(user, tenant, size)
            except CapReached as cap:
                with contextlib.suppress(websocket.WebSocketClosedError):
                    parent = _parent_header(message, self.protocol)
                    await self.write_message(
                        notice(str(cap), parent, self.protocol),
                        binary=self.protocol == V1_PROTOCOL,
                    )
                self.close(1008, "daily output limit reached")
                self.upstream.close()
                return
            # Counted before it is sent: a browser that reads most of a frame and then
            # resets the connection has had it.
            meter.add(user, tenant, ws_kind(msg_type_of(message, self.protocol)), size)
            try:
                await self.write_message(message, binary=isinstance(message, bytes))
            except websocket.WebSocketClosedError:
                self.upstream.close()
                return

    async def on_message(self, message: str | bytes) -> None:
        """A frame from the browser goes to the server unchanged."""
        if self.upstream is not None:
            with contextlib.suppress(websocket.WebSocketClosedError):
                await self.upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        """The browser left: close the server side too.

        Before :meth:`open` (the browser left while the gateway waited for the server),
        the place is given back by :meth:`get` once that wait is over, not here: it
        holds a connection to the server until then.
        """
        log.info("%s: the browser closed the websocket (%s)", self.request.path, self.close_code)
        if self.opened:
            self._release()
