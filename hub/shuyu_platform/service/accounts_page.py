"""``/accounts``: the administrators' view of every account, with role and tenant.

JupyterHub's own admin page shows neither a person's Shuyu role nor their tenant, and
offers "Start server" for reviewers and visitors, who have no sandbox. This page lists
each account with its real name, role, tenant and state (initial password not changed
yet, locked, disabled), and each merchant's sandbox: running or not, with a Stop
action, offered to merchants only. Stopping is audited (``server.stop``).
"""

from __future__ import annotations

from typing import Any

from tornado import web

from ..core.accounts import AccountStore
from ..core.hubapi import HubClient, HubUnavailable
from ..core.roles import TENANTS_MANAGE
from .base import BaseHandler


class AccountsPage(BaseHandler):
    """``GET``/``POST accounts``: list accounts; stop a merchant's sandbox."""

    def _rows(self) -> tuple[list[dict[str, Any]], str]:
        try:
            running = HubClient(self.shuyu).servers()
            hub_error = ""
        except HubUnavailable as err:
            running, hub_error = {}, str(err)
        accounts = AccountStore(self.shuyu.accounts_file).load().values()
        rows = [
            {
                "name": a.name,
                "real_name": a.real_name,
                "role": a.role,
                "tenant": a.tenant or "",
                "initial": a.must_change_password,
                "locked_until": a.locked_until if a.locked() else "",
                "disabled": a.disabled,
                "sandbox": (a.name in running) if a.role == "merchant" else None,
            }
            for a in sorted(accounts, key=lambda a: (a.role, a.tenant or "", a.name))
        ]
        return rows, hub_error

    @web.authenticated
    def get(self) -> None:
        self.require_scope(TENANTS_MANAGE, "Accounts", "admin")
        rows, hub_error = self._rows()
        self.render_page(
            "accounts.html", accounts=rows, hub_error=hub_error, stopped="",
            xsrf_form_html=self.xsrf_form_html(),
        )  # fmt: skip

    @web.authenticated
    def post(self) -> None:
        self.require_scope(TENANTS_MANAGE, "Stopping a sandbox", "admin")
        name = self.get_body_argument("stop", "")
        account = AccountStore(self.shuyu.accounts_file).load().get(name)
        if account is None or account.role != "merchant":
            raise web.HTTPError(400, "只有数据商有沙箱。Only merchants have a sandbox.")
        try:
            HubClient(self.shuyu).stop_server(name)
        except HubUnavailable as err:
            raise web.HTTPError(502, "%s", str(err)) from None
        self.audit("server.stop", f"user:{name}", detail={"tenant": account.tenant})
        rows, hub_error = self._rows()
        self.render_page(
            "accounts.html", accounts=rows, hub_error=hub_error, stopped=name,
            xsrf_form_html=self.xsrf_form_html(),
        )  # fmt: skip


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [(r"accounts/?", AccountsPage)]
