"""The look of the pages this server serves itself (Request export, Submit job, refusals).

They wear the platform's own style: the service's stylesheet (same origin, behind the
hub) and the same top bar, Chinese first and English second, so that a merchant moving
between the platform's pages and the sandbox's sees one product. The sandbox does not
carry the hub side, so its few sentences are kept here, in the catalogue's two-language
form ("中文 English").
"""

from __future__ import annotations

import os
from html import escape
from typing import Any, Final

#: The hub's base URL (``/`` unless the hub is mounted under a prefix).
HUB_BASE: Final[str] = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/")
#: The platform service's pages, on the same origin.
SERVICE_URL: Final[str] = f"{HUB_BASE}/services/shuyu/"
#: The platform's page of the tenant's requests and releases.
EXPORTS_URL: Final[str] = f"{SERVICE_URL}exports"
#: The platform's page of the tenant's sealed production runs.
JOBS_URL: Final[str] = f"{SERVICE_URL}jobs"


#: Why a download is refused, and the way out (the egress guard's answer).
DOWNLOADS_OFF: Final[str] = (
    "Downloads are switched off in Shuyu: data leaves the sandbox only through an export "
    "request that reviewers approve (the Request export page, shuyu/export on this "
    "server, or shuyu.egress.request(...) in a notebook). This attempt was recorded."
)
#: The refusals this server writes itself, English → Chinese. The sandbox does not carry
#: the platform's message catalogue, so they are kept here; a test holds each Chinese to
#: the catalogue's (``zh_CN.po`` has every one of these ids).
REFUSALS: Final[dict[str, str]] = {
    DOWNLOADS_OFF: (
        "数域沙箱内不能下载：数据只能通过审核员批准的导出申请带出（本服务器的“申请导出”页面 "
        "shuyu/export，或在笔记本中调用 shuyu.egress.request(...)）。此次尝试已记录。"
    ),
    "Sign in first.": "请先登录。",
    "{path}: {reason}": "无法读取 {path}。",
    "{path} leads outside the work folder": "{path} 指向工作目录之外，不能导出。",
    "{path} has no cell {cell}": "{path} 中没有编号为 {cell} 的单元格。",
    "{path} is a {kind}, not a file": "{path} 不是文件。",
    "{path} has {size:,} bytes; at most {limit:,}": (
        "{path} 有 {size:,} 字节，上限为 {limit:,} 字节。"
    ),
    "The body is not JSON.": "请求内容不是 JSON。",
    "The body must be a JSON object.": "请求内容须为 JSON 对象。",
    "Name a notebook or a file, not both.": "请指定笔记本或文件，不能同时指定。",
    "cells must be a list of cell indices (0, 1, ...).": (
        "cells 须为单元格序号的列表（0, 1, ...）。"
    ),
    "Choose cells of a notebook or a file.": "请选择笔记本中的单元格或一个文件。",
    "An export request needs a purpose statement.": "请填写用途。",
    "The purpose has more than {limit} characters.": "用途超过 {limit} 个字符。",
    "The title must be text of at most {limit} characters.": (
        "标题须为不超过 {limit} 个字符的文本。"
    ),
}


def refusal(message: str, **values: Any) -> str:
    """A refusal of this server for a person, "中文 English" (:data:`REFUSALS`), its
    values (a path, a count) filled into both."""
    return f"{REFUSALS[message].format(**values)} {message.format(**values)}"


def cell_name(index: int, execution_count: int | None = None) -> str:
    """How every page names a notebook cell (the platform's ``messages.cell_name``, which
    a test holds this to): JupyterLab's ``[n]`` where the cell ran, else its position."""
    if isinstance(execution_count, int):
        return f"单元格 [{execution_count}] cell [{execution_count}]"
    return f"第 {index + 1} 个单元格 cell at position {index + 1}"


def place(where: dict[str, Any] | None) -> str:
    """Where a finding is, as every page says it (the platform's ``messages.place``, which
    a test holds this to): the cell, its output (1-based), the file, a row, column or line."""
    if not where:
        return "—"
    parts = []
    if isinstance(where.get("cell"), int):
        parts.append(cell_name(where["cell"], where.get("execution_count")))
    if isinstance(where.get("output"), int):
        number = where["output"] + 1
        parts.append(f"输出 {number} output {number}")
    if where.get("file"):
        parts.append(f"文件 file {where['file']}")
    names = {"row": "行", "column": "列", "line": "行号"}
    parts += [
        f"{names[key]} {key} {where[key]}" for key in names if where.get(key) not in (None, "")
    ]
    return " · ".join(parts) or "—"


def page(title: str, body: str, *, server_url: str = "") -> str:
    """A whole HTML page: the platform's top bar, ``title`` as heading, then ``body`` (HTML)."""
    sandbox = (
        f'<a href="{escape(server_url)}lab">我的沙箱 JupyterLab</a>'
        f'<a href="{escape(server_url)}shuyu/export">申请导出 Request export</a>'
        f'<a href="{escape(server_url)}shuyu/jobs">提交作业 Submit job</a>'
        if server_url
        else ""
    )
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · 数域 Shuyu</title>"
        f'<link rel="stylesheet" href="{escape(SERVICE_URL)}static/shuyu.css"></head><body>'
        f'<header class="topbar"><a class="brand" href="{escape(SERVICE_URL)}">数域 Shuyu</a><nav>'
        f'{sandbox}<a href="{escape(EXPORTS_URL)}">导出 Exports</a>'
        f'<a href="{escape(JOBS_URL)}">作业 Jobs</a></nav></header>'
        f"<main><h1>{escape(title)}</h1>{body}</main>"
        "<footer>原始数据不出域，数据可用不可见；此处每项操作都记入审计链。"
        " Raw data never leaves the domain. Every action here is recorded.</footer>"
        "</body></html>"
    )
