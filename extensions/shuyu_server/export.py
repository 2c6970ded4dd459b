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
import re
from html import escape
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web

from . import platform
from .pages import EXPORTS_URL, cell_name, page, place, refusal

#: Largest file sent with a request (the platform refuses larger snapshots anyway).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Most entries the work-folder listing shows.
MAX_LISTED = 500
#: Characters of one text output shown on the page.
SHOWN_TEXT = 4000


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


def _where(finding: dict[str, Any]) -> str:
    """Where a finding is, as the platform's pages say it; the artefact's name if the
    finding carries no place."""
    where = finding.get("where")
    said = place(where) if isinstance(where, dict) else "—"
    return said if said != "—" else str(finding.get("artefact", ""))


def findings_html(answer: dict[str, Any]) -> str:
    """The automatic checks' findings the platform shows the merchant, as a table, with
    the platform's labels of check and severity names (its answer's ``labels``)."""
    labels = answer.get("labels") or {}
    checks = answer.get("checks") or {}
    findings = checks.get("findings", []) if isinstance(checks, dict) else []
    if not findings:
        return ""
    rows = "".join(
        f"<tr><td>{escape(labels.get(f.get('check'), str(f.get('check'))))}</td>"
        f"<td>{escape(labels.get(f.get('severity'), str(f.get('severity'))))}</td>"
        f"<td>{escape(_where(f))}</td>"
        f"<td>{escape(str(f.get('message', '')))}</td>"
        "</tr>"
        for f in findings
    )
    return (
        "<table class=grid id=findings><thead><tr><th>检查项 Check</th><th>程度 Severity</th>"
        f"<th>位置 Where</th><th>发现 Finding</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _outputs_html(outputs: list[dict[str, Any]]) -> str:
    """A cell's saved outputs, each under its number (1-based, as every page counts)."""
    return "".join(
        f"<p class=muted>输出 {k + 1} output {k + 1}</p>{_output_html(o)}"
        for k, o in enumerate(outputs)
    )


def _cell_name_of(cell: dict[str, Any]) -> str:
    return cell_name(int(cell.get("index", 0)), cell.get("execution_count"))


#: An export request's ID.
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


class WorkFolderHandler(JupyterHandler):
    """Reads what an export request sends: chosen cells of a saved notebook, or a file.

    Shared by the Request export page and the JupyterLab extension's JSON routes
    (:mod:`.lab_api`), so both send exactly the same thing for the same choice.
    """

    auth_resource = "contents"
    #: The route named in the audit record of a refused path.
    route = "shuyu/export"

    async def _model(self, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return await ensure_async(self.contents_manager.get(path, **kwargs))
        except web.HTTPError as err:
            reason = err.log_message or err.reason
            raise web.HTTPError(
                err.status_code, refusal("{path}: {reason}", path=path, reason=reason)
            ) from None

    async def _inside(self, path: str) -> str:
        """The real path of ``path`` if it stays in the work folder, else a 403 (audited)."""
        root = os.path.realpath(self.contents_manager.root_dir)
        real = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if os.path.commonpath([root, real]) != root:
            from .egress import Refusal  # the guard's record of a refused way out

            reason = "export of a path that leads outside the work folder"
            await self.settings["shuyu_egress"].record(self, Refusal(self.route, reason))
            raise web.HTTPError(403, refusal("{path} leads outside the work folder", path=path))
        return real

    async def _walk(self) -> tuple[list[str], list[str]]:
        """The work folder's notebooks and other files (at most :data:`MAX_LISTED`), as
        the contents manager lists them (hidden files left out)."""
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
        return notebooks, files

    async def _cells(self, path: str, chosen: list[str]) -> dict[str, Any]:
        if not chosen:
            raise web.HTTPError(
                400, "请至少勾选一个带输出的单元格。Choose at least one cell with outputs."
            )
        model = await self._model(path, content=True, type="notebook")
        stored = model["content"].get("cells", [])
        cells = []
        for value in chosen:
            if not value.isdigit() or int(value) >= len(stored):
                raise web.HTTPError(
                    400, refusal("{path} has no cell {cell}", path=path, cell=value)
                )
            cell = stored[int(value)]
            taken = {
                "index": int(value),
                "source": _text(cell.get("source")),
                "outputs": cell.get("outputs", []),
            }
            if isinstance(cell.get("execution_count"), int):
                taken["execution_count"] = cell["execution_count"]
            cells.append(taken)
        return {"kind": "cells", "notebook": path, "cells": cells}

    async def _readable(self, path: str, kinds: tuple[str, ...] = ("file",)) -> str:
        """The real path of ``path``, a file of the work folder of one of ``kinds`` and at
        most :data:`MAX_FILE_BYTES`; else a 4xx saying why."""
        real = await self._inside(path)
        model = await self._model(path, content=False)
        if model["type"] not in kinds:
            raise web.HTTPError(
                400, refusal("{path} is a {kind}, not a file", path=path, kind=model["type"])
            )
        size = os.stat(real).st_size
        if size > MAX_FILE_BYTES:
            said = refusal(
                "{path} has {size:,} bytes; at most {limit:,}",
                path=path,
                size=size,
                limit=MAX_FILE_BYTES,
            )
            raise web.HTTPError(413, said)
        return real

    async def _file(self, path: str) -> dict[str, Any]:
        real = await self._readable(path)
        with open(real, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
        return {"kind": "file", "path": path, "data_b64": base64.b64encode(data).decode()}


class PageHandler(WorkFolderHandler):
    """A page of this server in the platform's look, its refusals as pages of their own."""

    #: The page's path, relative to the server's base URL.
    page_path = "shuyu/export"

    def _page(self, title: str, body: str) -> str:
        return page(title, body, server_url=self.base_url)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A refusal as a page of its own, in Chinese and English, never a bare status."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = (
            exc.log_message
            if isinstance(exc, web.HTTPError) and exc.log_message
            else "出错了 Something went wrong."
        )
        self.finish(
            self._page(
                "无法处理 Cannot do that",
                f"<p class=error id=error>{escape(message)}</p>"
                f'<p><a href="{escape(self._url())}">← 返回 Back</a></p>',
            )
        )

    def _url(self, **query: str) -> str:
        base = url_path_join(self.base_url, self.page_path)
        args = "&".join(f"{key}={quote(value)}" for key, value in query.items())
        return f"{base}?{args}" if args else base

    def _refused(self, title: str, err: platform.PlatformError) -> None:
        """The platform's refusal, with its status (a 502 if it could not be reached)."""
        self.set_status(err.status if 400 <= err.status < 600 else 502)
        self.finish(
            self._page(
                title,
                f"<p class=error id=error>{escape(err.message)}</p>"
                f'<p><a href="{escape(self._url())}">← 返回 Back</a></p>',
            )
        )


class ExportHandler(PageHandler):
    """``/shuyu/export``: choose cells of a notebook or a file, and file an export request."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        notebook = self.get_argument("notebook", "")
        file = self.get_argument("file", "")
        resubmit = self.get_argument("resubmit", "")
        if resubmit:
            self.finish(await self._resubmit_form(resubmit))
        elif notebook:
            self.finish(await self._cells_form(notebook))
        elif file:
            self.finish(await self._file_form(file))
        else:
            self.finish(await self._listing())

    async def _listing(self) -> str:
        notebooks, files = await self._walk()
        links = "".join(
            f'<li><a href="{escape(self._url(notebook=p))}">{escape(p)}</a></li>' for p in notebooks
        )
        file_links = "".join(
            f'<li><a href="{escape(self._url(file=p))}">{escape(p)}</a></li>' for p in files
        )
        return self._page(
            "申请导出 Request export",
            "<p>沙箱内不能直接下载。选择要带出的单元格或文件并说明用途；审核员批准后，"
            f'带水印的发布文件可在<a href="{escape(EXPORTS_URL)}">导出 Exports</a>页面下载。</p>'
            "<p class=muted>Downloads are switched off in this sandbox. Choose what you want to "
            "take out; reviewers check it and, once approved, its watermarked release is yours "
            "to download from the Exports page.</p>"
            "<h2>笔记本单元格 Cells of a notebook</h2>"
            f"<ul id=notebooks>{links or '<li>无 none</li>'}</ul>"
            f"<h2>文件 A file</h2><ul id=files>{file_links or '<li>无 none</li>'}</ul>",
        )

    async def _sent_back(self, request_id: str) -> dict[str, Any]:
        """The platform's record of ``request_id`` if it waits for its requester's changes."""
        if not REQUEST_ID.fullmatch(request_id):
            raise web.HTTPError(400, "没有这个导出申请。No such export request.")
        try:
            answer = await platform.call("GET", f"api/egress/requests/{request_id}?content=1")
        except platform.PlatformError as err:
            raise web.HTTPError(404, err.message) from None
        if answer.get("status") != "changes_requested":
            status = (answer.get("labels") or {}).get(answer.get("status"), answer.get("status"))
            raise web.HTTPError(
                409, f"此申请当前状态为“{status}”，无需重新提交。This request is {status}."
            )
        return answer

    async def _resubmit_form(self, request_id: str) -> str:
        """The request sent back: the reviewer's comments beside the frozen content, and
        the same notebook's cells (or the same file) as they are now, to send instead."""
        answer = await self._sent_back(request_id)
        comments = "".join(
            f"<li><strong>{escape(d['actor'])}</strong>：{escape(d['comment'])}</li>"
            for d in answer.get("decisions", [])
            if d.get("action") == "request_changes" and d.get("comment")
        )
        frozen = answer.get("content") or {}
        shown = (
            "".join(
                f"<div class=cell><p class=muted>{escape(_cell_name_of(c))}</p>"
                f"{_outputs_html(c.get('outputs', []))}</div>"
                for c in frozen.get("cells", [])
            )
            or f"<p>{escape(str(frozen.get('path', '')))}</p>"
        )
        side = (
            "<div class=side-by-side><section id=comments><h2>审核意见 Reviewer's comments</h2>"
            f"<ul>{comments}</ul>{findings_html(answer)}</section>"
            f"<section id=frozen><h2>上次提交的内容 What you sent</h2>{shown}</section></div>"
            "<h2>现在的内容 What to send now</h2>"
        )
        chosen = {c["index"] for c in frozen.get("cells", [])}
        if frozen.get("kind") == "cells":
            return await self._cells_form(frozen["notebook"], resubmit=request_id, lead=side,
                                          chosen=chosen)  # fmt: skip
        if frozen.get("kind") == "file":
            return await self._file_form(frozen["path"], resubmit=request_id, lead=side)
        raise web.HTTPError(
            400, "看板请在笔记本中重新提交。Resubmit a dashboard from its notebook."
        )

    def _request_fields(self, resubmit: str = "") -> str:
        if resubmit:
            return (
                f"{self.xsrf_form_html()}<input type=hidden name=resubmit value={resubmit}>"
                "<p><button type=submit id=submit>重新提交 Resubmit</button></p>"
            )
        return (
            f"{self.xsrf_form_html()}"
            "<p><label>标题 Title<br><input type=text name=title maxlength=200 size=60>"
            "</label></p>"
            "<p><label>用途（必填）：结果用于什么、交给谁 Purpose (required): what the result "
            "is for and who receives it<br>"
            "<textarea name=purpose rows=3 cols=70 required></textarea></label></p>"
            "<p><button type=submit id=submit>提交导出申请 Submit export request</button></p>"
        )

    async def _cells_form(
        self, path: str, *, resubmit: str = "", lead: str = "", chosen: set[int] | None = None
    ) -> str:
        model = await self._model(path, content=True, type="notebook")
        rows = []
        for index, cell in enumerate(model["content"].get("cells", [])):
            if cell.get("cell_type") != "code" or not cell.get("outputs"):
                continue
            outputs = _outputs_html(cell["outputs"])
            ticked = " checked" if chosen and index in chosen else ""
            rows.append(
                f"<div class=cell><label><input type=checkbox name=cell value={index}{ticked}> "
                f"{escape(cell_name(index, cell.get('execution_count')))}</label>"
                f"<pre class=muted>{escape(_text(cell.get('source')))}</pre>"
                f"{outputs}</div>"
            )
        cells = "".join(rows) or (
            "<p>此笔记本没有带已保存输出的代码单元格。"
            "No code cell of this notebook has saved outputs.</p>"
        )
        return self._page(
            f"申请导出 Request export: {path}",
            f'<p><a href="{escape(self._url())}">← 工作目录 Work folder</a></p>{lead}'
            "<p class=muted>发送的是磁盘上保存的笔记本，请先保存。"
            "What is sent is the notebook as saved on disk: save it first.</p>"
            f'<form method=post action="{escape(self._url())}" id=export>'
            f'<input type=hidden name=notebook value="{escape(path)}">{cells}'
            f"{self._request_fields(resubmit)}</form>",
        )

    async def _file_form(self, path: str, *, resubmit: str = "", lead: str = "") -> str:
        await self._inside(path)
        model = await self._model(path, content=False)
        if model["type"] != "file":
            raise web.HTTPError(
                400, refusal("{path} is a {kind}, not a file", path=path, kind=model["type"])
            )
        return self._page(
            f"申请导出 Request export: {path}",
            f'<p><a href="{escape(self._url())}">← 工作目录 Work folder</a></p>{lead}'
            f"<p>{escape(path)}: {model.get('size') or 0:,} 字节 bytes.</p>"
            f'<form method=post action="{escape(self._url())}" id=export>'
            f'<input type=hidden name=file value="{escape(path)}">'
            f"{self._request_fields(resubmit)}</form>",
        )

    @web.authenticated
    @authorized
    async def post(self) -> None:
        purpose = self.get_body_argument("purpose", "").strip()
        title = self.get_body_argument("title", "").strip()
        resubmit = self.get_body_argument("resubmit", "")
        if not purpose and not resubmit:
            raise web.HTTPError(400, "请填写用途。An export request needs a purpose statement.")
        notebook = self.get_body_argument("notebook", "")
        file = self.get_body_argument("file", "")
        if notebook:
            content = await self._cells(notebook, self.get_body_arguments("cell"))
        elif file:
            content = await self._file(file)
        else:
            raise web.HTTPError(
                400, "请选择笔记本的单元格或一个文件。Choose cells of a notebook or a file."
            )
        try:
            if resubmit:
                await self._sent_back(resubmit)
                answer = await platform.call(
                    "POST", f"api/egress/requests/{resubmit}/resubmit", content
                )
            else:
                answer = await platform.call(
                    "POST", "api/egress/requests", {**content, "purpose": purpose, "title": title}
                )
        except platform.PlatformError as err:
            self._refused("导出申请未被接受 Export request refused", err)
            return
        self.set_status(201)
        labels = answer.get("labels") or {}
        status = labels.get(answer["status"], answer["status"])
        verdict = labels.get(answer.get("verdict"), "—")
        self.finish(
            self._page(
                "导出申请已提交 Export request filed",
                f"<p>申请 Request <code id=request-id>{escape(answer['id'])}</code>："
                f"<strong id=status>{escape(status)}</strong>；自动检查 checks："
                f"<strong id=verdict>{escape(verdict)}</strong>。</p>"
                f"{findings_html(answer)}"
                "<p>审核员会查看此申请。审核意见、修改要求和批准后的发布文件见"
                f'<a id=exports href="{escape(EXPORTS_URL)}">导出 Exports</a>页面。'
                "A reviewer will look at it; follow it, read reviewers' comments and download "
                "the approved release on the Exports page.</p>"
                f'<p><a href="{escape(self._url())}">再提交一个申请 File another request</a></p>',
            )
        )


def handlers() -> list[tuple[str, type]]:
    """The page's route, relative to the server's base URL."""
    return [(r"shuyu/export/?", ExportHandler)]
