"""The public product register (R22): approved releases and published dashboards.

``/products`` and ``GET api/products`` are open to anyone, as the operator publishes its
product list: each released export (title, tenant, what kind of product, the scenarios
its tenant held grants under, when it was released) and each dashboard on the
dashboards service, with its link. Nothing of the content is listed, and unpublished
dashboards drop out.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from ..core.db import session_scope
from ..core.models import EgressRequest
from ..dashboards import service as dashboards
from .base import ApiHandler, BaseHandler

#: How each kind of request appears in the register.
KINDS = {"cells": "analysis results", "file": "data product", "dashboard": "dashboard"}


def entries(handler: BaseHandler) -> list[dict[str, Any]]:
    """Every released product, newest first."""
    with session_scope(handler.shuyu.db_url) as session:
        rows = session.scalars(
            select(EgressRequest)
            .where(EgressRequest.status == "released")
            .order_by(EgressRequest.updated_at.desc())
            .limit(1000)
        )
        listed = []
        for row in rows:
            manifest = json.loads(row.release_manifest or "{}")
            listed.append(
                {
                    "id": row.id,
                    "title": row.title,
                    "tenant": row.tenant,
                    "kind": KINDS.get(row.kind, row.kind),
                    "scenarios": manifest.get("scenarios", []),
                    "released_at": manifest.get("released_at") or manifest.get("published_at"),
                    "dashboard": (
                        dashboards.url_of(handler.shuyu, row.id)
                        if row.kind == "dashboard"
                        else None
                    ),
                }
            )
    return listed


class ProductsApi(ApiHandler):
    """``GET api/products``: the register as JSON, for anyone."""

    def prepare(self) -> None:
        """Open to anyone: the register is public."""

    def get(self) -> None:
        self.write_json({"products": entries(self)})


class ProductsPage(BaseHandler):
    """``/products``: the register as a page, for anyone."""

    def get(self) -> None:
        self.render_page("products.html", products=entries(self))


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [(r"api/products/?", ProductsApi), (r"products/?", ProductsPage)]
