"""Egress records from tenants' servers (R10–R12).

``POST api/egress/blocked``: a single-user server's egress guard
(``shuyu_server.egress``) reports a refused download. The server authenticates with its
own token, so the record's actor is the user whose server refused the request; the
record is an ``egress.blocked`` audit event with the route, the reason and the path.
"""

from __future__ import annotations

import json
from typing import Any

from tornado import web

from ..roles import EGRESS_REQUEST
from .base import ApiHandler

#: Fields a server may report, and the longest value kept of each.
FIELDS: dict[str, int] = {"route": 64, "reason": 256, "method": 16, "path": 1024, "query": 512}


class BlockedApi(ApiHandler):
    """``POST api/egress/blocked``: audit one refused download."""

    def post(self) -> None:
        self.require_scope(EGRESS_REQUEST, "Reporting a refused download", "merchant")
        try:
            body = json.loads(self.request.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise web.HTTPError(400, f"the request body is not valid JSON: {err}") from None
        if not isinstance(body, dict) or not isinstance(body.get("route"), str):
            raise web.HTTPError(400, "send an object with route, reason, method, path, query")
        detail: dict[str, Any] = {
            key: str(body.get(key, ""))[:limit] for key, limit in FIELDS.items()
        }
        self.audit(
            "egress.blocked", detail["path"] or detail["route"], outcome="denied", detail=detail
        )
        self.write_json({"recorded": True}, 201)


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [(r"api/egress/blocked/?", BlockedApi)]
