"""The public product register (R22): approved releases and published dashboards.

``/products`` and ``GET api/products`` are open to anyone, as the operator publishes its
product list: each released export (title, tenant, what kind of product, the scenarios
its tenant held grants under, when it was released) and each dashboard on the
dashboards service, with its link. Nothing of the content is listed, and unpublished
dashboards drop out.

The register also publishes the audit chain's signed checkpoints and the public key that
signs them (:mod:`shuyu_platform.core.checkpoints`), so that anyone may keep copies and
later show that the operator's chain still contains what it once vouched for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ..core import checkpoints
from ..core.db import session_scope
from ..core.models import EgressRequest
from ..dashboards import publish as dashboards
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


#: How many of the newest checkpoints the register's page and JSON show.
NEWEST_CHECKPOINTS = 20


def anchor(handler: BaseHandler, newest: int | None = NEWEST_CHECKPOINTS) -> dict[str, Any]:
    """The audit chain's public key and its signed checkpoints, newest first."""
    settings = handler.shuyu
    key_path = Path(settings.audit_signing_key_file)
    public_key = None
    if key_path.exists():
        public_key = checkpoints.public_key_hex(
            checkpoints.signing_key(key_path, create=False).public_key()
        )
    signed = checkpoints.load(Path(settings.audit_checkpoints_file))
    shown = signed[::-1][:newest] if newest else signed[::-1]
    return {
        "public_key": public_key,
        "algorithm": "Ed25519",
        "signed_message": "'shuyu-audit-checkpoint-v1\\n' + canonical JSON "
        "{seq, hash, at[, merkle_root]}",
        "merkle_tree": "RFC 6962 (SHA-256) over audit records 1..seq; leaf data is a "
        "record's canonical JSON without its hash",
        "count": len(signed),
        "checkpoints": [json.loads(c.line()) for c in shown],
    }


class ProductsApi(ApiHandler):
    """``GET api/products``: the register as JSON, for anyone."""

    def prepare(self) -> None:
        """Open to anyone: the register is public."""

    def get(self) -> None:
        self.write_json({"products": entries(self), "audit_anchor": anchor(self)})


class CheckpointsApi(ApiHandler):
    """``GET api/products/checkpoints``: every signed checkpoint of the audit chain."""

    def prepare(self) -> None:
        """Open to anyone: the checkpoints are published."""

    def get(self) -> None:
        self.write_json(anchor(self, newest=None))


class ProductsPage(BaseHandler):
    """``/products``: the register as a page, for anyone."""

    def get(self) -> None:
        self.render_page("products.html", products=entries(self), anchor=anchor(self))


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"api/products/checkpoints/?", CheckpointsApi),
        (r"api/products/?", ProductsApi),
        (r"products/?", ProductsPage),
    ]
