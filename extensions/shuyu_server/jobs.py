"""The "Submit job" page of the single-user server: a sealed production run from a form.

``<server>/shuyu/jobs`` lists the notebooks and Python scripts of the work folder;
choosing one shows a form for its parameters (a JSON object), the outputs to take out
for review (glob patterns, one a line), the other files it needs, the tenant's approved
imports it reads (those mounted at ``/data/imports``) and a purpose. The server reads
the chosen files from disk, as saved, through the contents manager (hidden files and
paths leaving the work folder refused, as on the Request export page), builds the
submission with :func:`shuyu.jobs.submission` (the one builder the kernel's
``shuyu.jobs.submit`` uses too) and sends it to the platform (``POST api/jobs``), which
freezes and queues it. The answer page shows the job's ID and status and links to the
platform's Jobs page, where its progress and, after review, its results appear.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from . import platform
from .export import MAX_FILE_BYTES as MAX_READ_BYTES
from .export import PageHandler
from .pages import JOBS_URL

#: What a job can start from: a notebook (papermill) or a Python script.
ENTRY_SUFFIXES = (".ipynb", ".py")
#: Characters of the parameters field.
MAX_PARAMETERS = 64 * 1024


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class JobSubmitHandler(PageHandler):
    """``/shuyu/jobs``: choose a notebook or a script, set parameters and outputs, submit."""

    route = "shuyu/jobs"
    page_path = "shuyu/jobs"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        entry = self.get_argument("entry", "")
        self.finish(await (self._form(entry) if entry else self._listing()))

    async def _candidates(self) -> tuple[list[str], list[str]]:
        """The work folder's possible entries, and every file (for "other files")."""
        notebooks, files = await self._walk()
        entries = notebooks + [f for f in files if f.endswith(".py")]
        return sorted(entries), sorted(notebooks + files)

    async def _listing(self) -> str:
        entries, _ = await self._candidates()
        links = "".join(
            f'<li><a href="{escape(self._url(entry=p))}">{escape(p)}</a></li>' for p in entries
        )
        return self._page(
            "提交作业 Submit a job",
            "<p>作业在封闭沙箱中以生产数据运行您的笔记本或脚本：无网络，无人看到数据；"
            "结束后，声明的输出与日志作为导出申请提交审核。"
            f'进度见<a href="{escape(JOBS_URL)}">作业 Jobs</a>页面。</p>'
            "<p class=muted>A job runs your notebook or script, unchanged, on the production "
            "inputs of your grants in a sealed sandbox: no network, no person sees the data. "
            "When it ends, its declared outputs and log become an export request for review. "
            "Test it here on the synthetic twin first.</p>"
            "<h2>笔记本或脚本 Notebook or script</h2>"
            f"<ul id=entries>{links or '<li>无 none</li>'}</ul>",
        )

    async def _form(self, entry: str) -> str:
        await self._entry(entry)
        _, files = await self._candidates()
        from shuyu.imports import names as imported  # what /data/imports holds here

        imports = "".join(
            f'<li><label><input type=checkbox name=import value="{escape(n)}"> '
            f"{escape(n)}</label></li>"
            for n in imported()
        )
        others = "".join(
            f'<li><label><input type=checkbox name=file value="{escape(p)}"> '
            f"{escape(p)}</label></li>"
            for p in files
            if p != entry
        )
        return self._page(
            f"提交作业 Submit a job: {entry}",
            f'<p><a href="{escape(self._url())}">← 工作目录 Work folder</a></p>'
            "<p class=muted>发送的是磁盘上保存的文件，请先保存。"
            "What is sent is the files as saved on disk: save them first.</p>"
            f'<form method=post action="{escape(self._url())}" id=job>'
            f"{self.xsrf_form_html()}"
            f'<input type=hidden name=entry value="{escape(entry)}">'
            "<p><label>参数（JSON 对象）Parameters (a JSON object)<br>"
            "<textarea name=parameters rows=4 cols=70>{}</textarea></label></p>"
            "<p><label>输出（每行一个通配模式，相对作业工作目录）Outputs to take out for review "
            "(glob patterns relative to the job's work folder, one a line)<br>"
            "<textarea name=outputs rows=3 cols=70></textarea></label></p>"
            "<h2>所需的其他文件 Other files it needs</h2>"
            f"<ul id=files>{others or '<li>无 none</li>'}</ul>"
            "<h2>读取的导入数据 Imports it reads</h2>"
            "<p class=muted>作业在 /data/imports 下只看到这里勾选的已批准导入。"
            "The job sees only the approved imports ticked here, at /data/imports.</p>"
            f"<ul id=imports>{imports or '<li>无 none</li>'}</ul>"
            "<p><label>用途（必填）：结果用于什么、交给谁 Purpose (required): what the result "
            "is for and who receives it<br>"
            "<textarea name=purpose rows=3 cols=70 required></textarea></label></p>"
            "<p><button type=submit id=submit>提交作业 Submit job</button></p></form>",
        )

    async def _entry(self, entry: str) -> None:
        if not entry.endswith(ENTRY_SUFFIXES):
            raise web.HTTPError(
                400,
                f"{entry}: 作业须从笔记本（.ipynb）或 Python 脚本（.py）开始。"
                "A job starts from a notebook (.ipynb) or a Python script (.py).",
            )
        await self._readable(entry)

    async def _readable(self, path: str, kinds: tuple[str, ...] = ("file", "notebook")) -> str:
        """The real path of a file of the work folder the job may take (else a 4xx)."""
        return await super()._readable(path, kinds)

    def _parameters(self) -> dict[str, Any]:
        text = self.get_body_argument("parameters", "").strip() or "{}"
        try:
            value = json.loads(text) if len(text) <= MAX_PARAMETERS else None
        except ValueError as err:
            raise web.HTTPError(
                400, f"参数不是有效的 JSON。The parameters are not valid JSON: {err}"
            ) from None
        if not isinstance(value, dict):
            raise web.HTTPError(
                400,
                '参数须为 JSON 对象，例如 {"year": 2025}。'
                'The parameters must be a JSON object such as {"year": 2025}.',
            )
        return value

    @web.authenticated
    @authorized
    async def post(self) -> None:
        from shuyu.jobs import submission  # the kernel's own builder: one way to submit

        entry = self.get_body_argument("entry", "")
        purpose = self.get_body_argument("purpose", "").strip()
        if not purpose:
            raise web.HTTPError(400, "请填写用途。A job needs a purpose statement.")
        parameters = self._parameters()
        outputs = _lines(self.get_body_argument("outputs", ""))
        others = [f for f in self.get_body_arguments("file") if f and f != entry]
        imports = [n for n in self.get_body_arguments("import") if n]
        await self._entry(entry)
        real = {name: await self._readable(name) for name in (entry, *others)}

        def read(name: str) -> bytes:
            with open(real[name], "rb") as handle:
                return handle.read(MAX_READ_BYTES + 1)

        try:
            body = submission(
                entry,
                purpose=purpose,
                parameters=parameters,
                outputs=outputs,
                files=others,
                read=read,
                imports=imports,
            )
        except ValueError as err:
            raise web.HTTPError(413, str(err)) from None
        try:
            answer = await platform.call("POST", "api/jobs", body)
        except platform.PlatformError as err:
            self._refused("作业未被接受 Job refused", err)
            return
        self.set_status(201)
        self.finish(
            self._page(
                "作业已提交 Job submitted",
                f"<p>作业 Job <code id=job-id>{escape(answer['id'])}</code>："
                f"<strong id=status>{escape(answer['status'])}</strong>；"
                f"代码 SHA-256 <code id=code-sha256>{escape(answer['code_sha256'])}</code>。</p>"
                "<p>代码已冻结，之后的修改不会影响此作业。进度、退出码和资源用量见"
                f'<a id=jobs-link href="{escape(JOBS_URL)}">作业 Jobs</a>页面；'
                "结果经审核后在导出页面发布。"
                " The code is frozen: later edits do not change this job. Follow it on the "
                "Jobs page; its results are released through review on the Exports page.</p>"
                f'<p><a href="{escape(self._url())}">再提交一个作业 Submit another job</a></p>',
            )
        )


def handlers() -> list[tuple[str, type]]:
    """The page's route, relative to the server's base URL."""
    return [(r"shuyu/jobs/?", JobSubmitHandler)]
