"""Output volumes: the largest daily volumes sent from servers to browsers (R15).

The egress gateway meters every byte a merchant's server sends to the browser
(:mod:`shuyu_platform.egress.metering`); this page shows reviewers and auditors
the largest daily volumes of the last days, next to the daily cap, as an early
warning of data leaving through the screen. Every read is audited.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tornado import web

from ..core.roles import AUDIT_READ, EGRESS_REVIEW
from ..egress import metering
from .base import ApiHandler, BaseHandler
from .request_models import VolumesQuery


def _read(handler: BaseHandler) -> tuple[list[metering.VolumeRow], int]:
    """The largest volumes for a reviewer or an auditor (403 otherwise), audited."""
    if not (handler.has_scope(EGRESS_REVIEW) or handler.has_scope(AUDIT_READ)):
        handler.require_scope(EGRESS_REVIEW, "Seeing output volumes", "reviewer or auditor")
    days = handler.query_model(VolumesQuery).days
    rows = metering.largest(handler.shuyu.db_url, days=days)
    handler.audit("egress.volumes.read", "volumes", detail={"days": days})
    return rows, days


class VolumesApi(ApiHandler):
    """``GET api/egress/volumes?days=7``: the largest daily volumes, largest first."""

    def get(self) -> None:
        rows, days = _read(self)
        body: dict[str, Any] = {
            "days": days,
            "cap_bytes": self.shuyu.egress_daily_cap,
            "volumes": [asdict(row) for row in rows],
        }
        self.write_json(body)


class OwnVolumeApi(ApiHandler):
    """``GET api/egress/volume``: the signed-in user's own output today and the daily cap.

    Anyone signed in may ask, and only about themself (the user comes from the token, no
    parameter names another): the lab extension's status bar shows it to the merchant.
    """

    def get(self) -> None:
        self.write_json(
            {
                "username": self.user["name"],
                "day": metering.today(),
                "bytes": metering.day_total(self.shuyu.db_url, self.user["name"]),
                "cap_bytes": self.shuyu.egress_daily_cap,
            }
        )


class VolumesPage(BaseHandler):
    """``GET volumes``: the same as a page."""

    @web.authenticated
    def get(self) -> None:
        rows, days = _read(self)
        self.render_page("volumes.html", rows=rows, days=days, cap=self.shuyu.egress_daily_cap)


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"volumes/?", VolumesPage),
        (r"api/egress/volumes/?", VolumesApi),
        (r"api/egress/volume/?", OwnVolumeApi),
    ]
