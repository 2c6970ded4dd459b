"""The audit chain for auditors (R13-R16): events, filters and verification.

Only holders of ``custom:shuyu:audit:read`` (the auditor role) may read it; every
read is itself recorded, so the chain shows who looked at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado import web

from ..core import audit, checkpoints
from ..core.db import session_scope
from ..core.roles import AUDIT_READ
from .base import ApiHandler, BaseHandler
from .request_models import AuditQuery


def _filters(handler: BaseHandler) -> dict[str, Any]:
    asked = handler.query_model(AuditQuery)
    return {
        "after_seq": asked.after,
        "limit": asked.limit,
        "action": asked.action or None,
        "actor": asked.actor or None,
        "tenant": asked.tenant or None,
    }


def _read(handler: BaseHandler) -> list[dict[str, Any]]:
    """Filtered events for an auditor; the read itself is audited."""
    handler.require_scope(AUDIT_READ, "Reading the audit log", "auditor")
    filters = _filters(handler)
    with session_scope(handler.shuyu.db_url) as session:
        events = audit.query(session, **filters)
    handler.audit("audit.read", "events", detail={k: v for k, v in filters.items() if v})
    return events


def _verify(handler: BaseHandler) -> audit.Verification:
    """The chain re-derived and held to its signed checkpoints (the result is also what
    the service's metrics report as the last verification)."""
    settings = handler.shuyu
    with session_scope(settings.db_url) as session:
        try:
            result = checkpoints.verify_installation(
                session,
                Path(settings.audit_signing_key_file),
                Path(settings.audit_checkpoints_file),
            )
        except checkpoints.CheckpointError as err:
            result = audit.Verification(False, 0, None, f"checkpoints unusable: {err}")
    handler.settings["metrics"].verified(result.ok, result.checked)
    return result


class AuditEventsApi(ApiHandler):
    """``GET api/audit/events?after=&limit=&action=&actor=&tenant=``."""

    def get(self) -> None:
        events = _read(self)
        next_after = events[-1]["seq"] if events else None
        self.write_json({"events": events, "next_after": next_after})


class AuditVerifyApi(ApiHandler):
    """``GET api/audit/verify``: re-derive the chain and hold it to its signed checkpoints;
    OK or the first broken record."""

    def get(self) -> None:
        self.require_scope(AUDIT_READ, "Verifying the audit log", "auditor")
        result = _verify(self)
        self.audit("audit.verify", "chain", outcome="ok", detail=result.as_dict())
        self.write_json(result.as_dict())


class AuditPage(BaseHandler):
    """``GET audit``: chain status and events, filterable, for auditors."""

    @web.authenticated
    def get(self) -> None:
        events = _read(self)
        result = _verify(self)
        self.render_page(
            "audit.html",
            events=events,
            verification=result,
            filters={
                k: self.get_argument(k, "") for k in ("action", "actor", "tenant", "after", "limit")
            },
        )


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"audit/?", AuditPage),
        (r"api/audit/events/?", AuditEventsApi),
        (r"api/audit/verify/?", AuditVerifyApi),
    ]
