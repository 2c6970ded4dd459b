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
from typing import Final

#: The hub's base URL (``/`` unless the hub is mounted under a prefix).
HUB_BASE: Final[str] = os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/")
#: The platform service's pages, on the same origin.
SERVICE_URL: Final[str] = f"{HUB_BASE}/services/shuyu/"
#: The platform's page of the tenant's requests and releases.
EXPORTS_URL: Final[str] = f"{SERVICE_URL}exports"
#: The platform's page of the tenant's sealed production runs.
JOBS_URL: Final[str] = f"{SERVICE_URL}jobs"


def cell_name(index: int, execution_count: int | None = None) -> str:
    """How every page names a notebook cell (the platform's ``messages.cell_name``, which
    a test holds this to): JupyterLab's ``[n]`` where the cell ran, else its position."""
    if isinstance(execution_count, int):
        return f"单元格 [{execution_count}] cell [{execution_count}]"
    return f"第 {index + 1} 个单元格 cell at position {index + 1}"


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
