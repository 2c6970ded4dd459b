"""A tenant's grants and the state of its masked views, for its merchants (R7, R9).

A merchant sees only its own tenant's grants (from its browser session or from its
kernel, with the server's token); an administrator (``policies:manage``) or an auditor
sees any tenant's with ``?tenant=``. Every read is audited.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from ..access import grants
from ..core.db import session_scope
from ..core.roles import AUDIT_READ, GRANTS_READ, POLICIES_MANAGE, TENANT_SLUG
from .base import ApiHandler


class GrantsApi(ApiHandler):
    """``GET api/grants[?tenant=<slug>][&all=1]``: active grants with their view state."""

    def _tenant(self) -> str:
        asked = self.get_argument("tenant", "") or None
        overseer = self.has_scope(POLICIES_MANAGE) or self.has_scope(AUDIT_READ)
        if asked and overseer:
            if not TENANT_SLUG.match(asked):
                raise web.HTTPError(400, f"{asked!r} is not a tenant slug.")
            return asked
        self.require_scope(GRANTS_READ, "Reading grants", "merchant")
        if self.tenant is None:
            raise web.HTTPError(403, f"{self.user['name']} belongs to no tenant, so has no grants.")
        if asked and asked != self.tenant:
            self.audit("access.denied", f"grants:{asked}", outcome="denied")
            raise web.HTTPError(403, f"You may read only your own tenant's grants ({self.tenant}).")
        return self.tenant

    def get(self) -> None:
        tenant = self._tenant()
        every = self.get_argument("all", "") in {"1", "true", "yes"}
        with session_scope(self.shuyu.db_url) as session:
            rows = (
                grants.listing(session, tenant=tenant)
                if every
                else grants.active(session, tenant=tenant)
            )
            body = [grants.as_dict(g) | {"view": self._view_state(tenant, g.dataset)} for g in rows]
        self.audit("grants.read", f"tenant:{tenant}", detail={"count": len(body)})
        self.write_json({"tenant": tenant, "grants": body})

    def _view_state(self, tenant: str, dataset: str) -> dict[str, Any]:
        path = self.shuyu.zone("views") / tenant / f"{dataset}.parquet"
        if not path.is_file():
            return {"built": False}
        stat = path.stat()
        return {"built": True, "bytes": stat.st_size, "modified": int(stat.st_mtime)}


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [(r"api/grants/?", GrantsApi)]
