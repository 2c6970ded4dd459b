"""The "Request export" page of the single-user server: the merchant's way out (R10–R12).

``<server>/shuyu/export`` lists the notebooks and files of the work folder; choosing a
notebook shows its code cells with their saved outputs as checkboxes, choosing a file
shows its size. With a purpose statement, the merchant files an export request: the
server reads the chosen cells (or the file) from disk, as saved, and sends them to the
platform service (``POST api/egress/requests``), which freezes and checks them. The
answer page shows the request's ID, status and check verdict, and links to the
platform's Exports page, where reviewers' comments and the approved release appear.

The page reads through the server's contents manager (so hidden files and paths outside
the work folder are refused as in JupyterLab), and a file whose real path leaves the
work folder (a symlink) is refused, as the egress guard does. Outputs are shown as
text, and PNG/JPEG images, never as HTML.
"""

from __future__ import annotations

import base64
import os
from html import escape
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web

from . import platform

#: Largest file sent with a request (the platform refuses larger snapshots anyway).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Most entries the work-folder listing shows.
MAX_LISTED = 500
#: Characters of one text output shown on the page.
SHOWN_TEXT = 4000

STYLE = """
body{font:14px/1.5 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
pre{background:#f5f5f5;padding:.5em;overflow:auto;max-height:20em}
.cell{border:1px solid #ddd;margin:1em 0;padding:.5em}.muted{color:#777}
.error{color:#a00}textarea,input[type=text]{width:100%}img{max-width:100%}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)} · 数域 Shuyu"
        f"</title><style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _output_html(output: dict[str, Any]) -> str:
    """One saved output as the page shows it: text, or a PNG/JPEG image."""
    kind = output.get("output_type")
    if kind == "stream":
        return f"<pre>{escape(_text(output.get('text'))[:SHOWN_TEXT])}</pre>"
    if kind == "error":
        error = f"{output.get('ename')}: {output.get('evalue')}"
        return f"<pre class=error>{escape(error)}</pre>"
    data = output.get("data") or {}
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            image = _text(data[mime]).replace("\n", "")
            return f'<img alt="output image" src="data:{mime};base64,{escape(image)}">'
    text = _text(data.get("text/plain", "(no plain-text form)"))
    return f"<pre>{escape(text[:SHOWN_TEXT])}</pre>"


class WorkFolderHandler(JupyterHandler):
    """Reads what an export request sends: chosen cells of a saved notebook, or a file.

    Shared by the Request export page and the JupyterLab extension's JSON routes
    (:mod:`.lab_api`), so both send exactly the same thing for the same choice.
    """

    auth_resource = "contents"

    async def _model(self, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return await ensure_async(self.contents_manager.get(path, **kwargs))
        except web.HTTPError as err:
            reason = err.log_message or err.reason
            raise web.HTTPError(err.status_code, f"{path}: {reason}") from None

    async def _inside(self, path: str) -> str:
        """The real path of ``path`` if it stays in the work folder, else a 403 (audited)."""
        root = os.path.realpath(self.contents_manager.root_dir)
        real = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if os.path.commonpath([root, real]) != root:
            from .egress import Refusal  # the guard's record of a refused way out

            reason = "export of a path that leads outside the work folder"
            await self.settings["shuyu_egress"].record(self, Refusal("shuyu/export", reason))
            raise web.HTTPError(403, f"{path} leads outside the work folder")
        return real

    async def _cells(self, path: str, chosen: list[str]) -> dict[str, Any]:
        if not chosen:
            raise web.HTTPError(400, "Choose at least one cell with outputs.")
        model = await self._model(path, content=True, type="notebook")
        stored = model["content"].get("cells", [])
        cells = []
        for value in chosen:
            if not value.isdigit() or int(value) >= len(stored):
                raise web.HTTPError(400, f"{path} has no cell {value}")
            cell = stored[int(value)]
            cells.append(
                {
                    "index": int(value),
                    "source": _text(cell.get("source")),
                    "outputs": cell.get("outputs", []),
                }
            )
        return {"kind": "cells", "notebook": path, "cells": cells}

    async def _file(self, path: str) -> dict[str, Any]:
        real = await self._inside(path)
        model = await self._model(path, content=False)
        if model["type"] != "file":
            raise web.HTTPError(400, f"{path} is a {model['type']}, not a file")
        size = os.stat(real).st_size
        if size > MAX_FILE_BYTES:
            raise web.HTTPError(413, f"{path} has {size:,} bytes; at most {MAX_FILE_BYTES:,}")
        with open(real, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        return {"kind": "file", "path": path, "data_b64": base64.b64encode(data).decode()}


class ExportHandler(WorkFolderHandler):
    """``/shuyu/export``: choose cells of a notebook or a file, and file an export request."""

    def _url(self, **query: str) -> str:
        base = url_path_join(self.base_url, "shuyu/export")
        args = "&".join(f"{key}={quote(value)}" for key, value in query.items())
        return f"{base}?{args}" if args else base

    @web.authenticated
    @authorized
    async def get(self) -> None:
        notebook = self.get_argument("notebook", "")
        file = self.get_argument("file", "")
        if notebook:
            self.finish(await self._cells_form(notebook))
        elif file:
            self.finish(await self._file_form(file))
        else:
            self.finish(await self._listing())

    async def _listing(self) -> str:
        notebooks: list[str] = []
        files: list[str] = []
        pending = [""]
        while pending and len(notebooks) + len(files) < MAX_LISTED:
            folder = await self._model(pending.pop(0), content=True)
            for entry in sorted(folder["content"], key=lambda e: e["path"]):
                if entry["type"] == "directory":
                    pending.append(entry["path"])
                elif entry["type"] == "notebook":
                    notebooks.append(entry["path"])
                else:
                    files.append(entry["path"])
        links = "".join(
            f'<li><a href="{escape(self._url(notebook=p))}">{escape(p)}</a></li>' for p in notebooks
        )
        file_links = "".join(
            f'<li><a href="{escape(self._url(file=p))}">{escape(p)}</a></li>' for p in files
        )
        return _page(
            "申请导出 Request export",
            "<p>Downloads are switched off in this sandbox. Choose what you want to take out; "
            "reviewers check it and, once approved, its watermarked release is yours to "
            f'download from the <a href="{escape(EXPORTS_URL)}">Exports page</a>.</p>'
            f"<h2>Cells of a notebook</h2><ul id=notebooks>{links or '<li>none</li>'}</ul>"
            f"<h2>A file</h2><ul id=files>{file_links or '<li>none</li>'}</ul>",
        )

    def _request_fields(self) -> str:
        return (
            f"{self.xsrf_form_html()}"
            "<p><label>Title<br><input type=text name=title maxlength=200></label></p>"
            "<p><label>Purpose (required): what the result is for and who receives it<br>"
            "<textarea name=purpose rows=3 required></textarea></label></p>"
            "<p><button type=submit id=submit>Submit export request</button></p>"
        )

    async def _cells_form(self, path: str) -> str:
        model = await self._model(path, content=True, type="notebook")
        rows = []
        for index, cell in enumerate(model["content"].get("cells", [])):
            if cell.get("cell_type") != "code" or not cell.get("outputs"):
                continue
            outputs = "".join(_output_html(o) for o in cell["outputs"])
            rows.append(
                f"<div class=cell><label><input type=checkbox name=cell value={index}> "
                f"cell {index}</label><pre class=muted>{escape(_text(cell.get('source')))}</pre>"
                f"{outputs}</div>"
            )
        cells = "".join(rows) or "<p>No code cell of this notebook has saved outputs.</p>"
        return _page(
            f"申请导出 Request export: {path}",
            f'<p><a href="{escape(self._url())}">← work folder</a></p>'
            "<p class=muted>What is sent is the notebook as saved on disk: save it first.</p>"
            f'<form method=post action="{escape(self._url())}" id=export>'
            f'<input type=hidden name=notebook value="{escape(path)}">{cells}'
            f"{self._request_fields()}</form>",
        )

    async def _file_form(self, path: str) -> str:
        await self._inside(path)
        model = await self._model(path, content=False)
        if model["type"] != "file":
            raise web.HTTPError(400, f"{path} is a {model['type']}, not a file")
        return _page(
            f"申请导出 Request export: {path}",
            f'<p><a href="{escape(self._url())}">← work folder</a></p>'
            f"<p>{escape(path)}: {model.get('size') or 0:,} bytes.</p>"
            f'<form method=post action="{escape(self._url())}" id=export>'
            f'<input type=hidden name=file value="{escape(path)}">{self._request_fields()}'
            "</form>",
        )

    @web.authenticated
    @authorized
    async def post(self) -> None:
        purpose = self.get_body_argument("purpose", "").strip()
        title = self.get_body_argument("title", "").strip()
        if not purpose:
            raise web.HTTPError(400, "An export request needs a purpose statement.")
        notebook = self.get_body_argument("notebook", "")
        file = self.get_body_argument("file", "")
        if notebook:
            content = await self._cells(notebook, self.get_body_arguments("cell"))
        elif file:
            content = await self._file(file)
        else:
            raise web.HTTPError(400, "Choose cells of a notebook or a file.")
        try:
            answer = await platform.call(
                "POST", "api/egress/requests", {**content, "purpose": purpose, "title": title}
            )
        except platform.PlatformError as err:
            self.set_status(err.status if 400 <= err.status < 600 else 502)
            self.finish(
                _page(
                    "Export request refused",
                    f"<p class=error id=error>{escape(err.message)}</p>"
                    f'<p><a href="{escape(self._url())}">Back</a></p>',
                )
            )
            return
        self.set_status(201)
        self.finish(
            _page(
                "Export request filed",
                f"<p>Request <code id=request-id>{escape(answer['id'])}</code> is "
                f"<strong id=status>{escape(answer['status'])}</strong>; automatic checks: "
                f"<strong id=verdict>{escape(answer.get('verdict') or '—')}</strong>.</p>"
                "<p>A reviewer will look at it. Follow it, read reviewers' comments and download "
                f'the approved release on the <a id=exports href="{escape(EXPORTS_URL)}">'
                "Exports page</a>.</p>"
                f'<p><a href="{escape(self._url())}">File another request</a></p>',
            )
        )


#: The platform's page of the tenant's requests and releases (same origin, behind the hub).
EXPORTS_URL = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/services/shuyu/exports"


def handlers() -> list[tuple[str, type]]:
    """The page's route, relative to the server's base URL."""
    return [(r"shuyu/export/?", ExportHandler)]
