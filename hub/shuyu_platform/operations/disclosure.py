"""Public disclosure (R22, R26): the platform's operation in figures, per period.

Every figure is computed here from the platform database and the audit chain, nowhere
else: the public page (refreshed by the platform service every
``c.Shuyu.disclosure_refresh_seconds``), the annual operation report, and
``shuyu report figures --year YYYY``, which prints exactly the figures the report shows.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..access import suspension
from ..core import audit, checkpoints
from ..core.db import parse_stamp, session_scope, stamp
from ..core.models import (
    Alert,
    Application,
    ApplicationDecision,
    AuditEvent,
    DpRelease,
    Incident,
)
from ..core.settings import Shuyu
from ..data.policy import load_policies
from . import charts
from .emergency import known_tenants
from .metering import month_bounds

#: The snapshot the public page shows, in the hub zone.
SNAPSHOT_FILE = "disclosure.json"
#: Final statuses of an application and the decisions that reach them.
DECIDED = ("approved", "rejected")


def _count_events(session: Session, actions: tuple[str, ...], start: str, end: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action.in_(actions), AuditEvent.outcome == "ok")
            .where(AuditEvent.ts >= start, AuditEvent.ts < end)
        )
        or 0
    )


def period_figures(session: Session, start: str, end: str) -> dict[str, Any]:
    """The figures of one period [start, end) (time-stamp prefixes, see ``month_bounds``)."""
    decisions = session.execute(
        select(ApplicationDecision, Application.created_at)
        .join(Application, Application.id == ApplicationDecision.application_id)
        .where(ApplicationDecision.to_status.in_(DECIDED))
        .where(ApplicationDecision.created_at >= start, ApplicationDecision.created_at < end)
    ).all()
    days = [
        (parse_stamp(d.created_at) - parse_stamp(created)).total_seconds() / 86400
        for d, created in decisions
    ]
    released = session.execute(
        select(func.count(), func.coalesce(func.sum(DpRelease.epsilon_micro), 0)).where(
            DpRelease.status == "released",
            DpRelease.created_at >= start,
            DpRelease.created_at < end,
        )
    ).one()
    incidents = dict(
        session.execute(
            select(Incident.kind, func.count())
            .where(Incident.started_at >= start, Incident.started_at < end)
            .group_by(Incident.kind)
        ).all()
    )
    return {
        "applications_submitted": session.scalar(
            select(func.count())
            .select_from(Application)
            .where(Application.created_at >= start, Application.created_at < end)
        )
        or 0,
        "applications_approved": sum(
            1 for d, _ in decisions if d.to_status == "approved" and d.action != "deem_approve"
        ),
        "applications_deemed_approved": sum(
            1 for d, _ in decisions if d.to_status == "approved" and d.action == "deem_approve"
        ),
        "applications_rejected": sum(1 for d, _ in decisions if d.to_status == "rejected"),
        "median_decision_days": round(statistics.median(days), 2) if days else None,
        "exports_released": _count_events(session, ("egress.released",), start, end),
        "dashboards_published": _count_events(session, ("dashboard.publish",), start, end),
        "dp_queries": int(released[0]),
        "dp_epsilon": round(int(released[1]) / 1e6, 6),
        "suspensions": _count_events(session, ("tenant.suspend", "dataset.suspend"), start, end),
        "incidents": int(incidents.get("incident", 0)),
        "drills": int(incidents.get("drill", 0)),
        "alerts": session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(Alert.raised_at >= start, Alert.raised_at < end)
        )
        or 0,
    }


#: Labels of the figures (Chinese and English), in the order they are shown.
LABELS: dict[str, str] = {
    "applications_submitted": "场景申请 Applications submitted",
    "applications_approved": "批准 Approved",
    "applications_deemed_approved": "逾期视为同意 Deemed approved",
    "applications_rejected": "驳回 Rejected",
    "median_decision_days": "审批用时中位数（天） Median decision time (days)",
    "exports_released": "出域成果 Exports released",
    "dashboards_published": "展示看板 Dashboards published",
    "dp_queries": "差分隐私查询 DP queries answered",
    "dp_epsilon": "隐私预算消耗 ε spent",
    "suspensions": "暂停 Suspensions",
    "incidents": "安全事件 Incidents",
    "drills": "应急演练 Emergency drills",
    "alerts": "告警 Alerts",
}


def year_figures(settings: Shuyu, year: int, *, until: datetime | None = None) -> dict[str, Any]:
    """Every figure of ``year``: the platform now, the year's totals, and each month's
    (months after ``until``, default now, are left out)."""
    now = until or datetime.now(UTC)
    months = [f"{year}-{m:02d}" for m in range(1, 13) if (year, m) <= (now.year, now.month)]
    start, _ = month_bounds(f"{year}-01")
    _, end = month_bounds(f"{year}-12")
    policies = load_policies(Path(settings.policies_dir))
    with session_scope(settings.db_url) as session:
        stopped = suspension.suspended(session, "dataset")
        chain_length = audit.head(session)[0]
        result = {
            "year": year,
            "computed_at": stamp(now),
            "platform": {
                "datasets_offered": len(policies),
                "datasets_suspended": len(stopped),
                "departments": len({p.catalogue.department for p in policies.values()}),
                "tenants": len(known_tenants(settings)),
                "tenants_suspended": len(suspension.suspended(session, "tenant")),
                "audit_records": chain_length,
            },
            "totals": period_figures(session, start, end),
            "months": {m: period_figures(session, *month_bounds(m)) for m in months},
        }
        try:
            verified = checkpoints.verify_installation(
                session,
                Path(settings.audit_signing_key_file),
                Path(settings.audit_checkpoints_file),
            )
            result["platform"]["audit_verified"] = verified.ok
        except checkpoints.CheckpointError:
            result["platform"]["audit_verified"] = False
    return result


def chart_svgs(figures: dict[str, Any]) -> dict[str, str]:
    """The charts of a year's figures, as SVG text by name."""
    months = list(figures["months"])
    labels = [m[5:] + "月" for m in months]

    def series(*keys: str) -> dict[str, list[float]]:
        return {LABELS[k]: [figures["months"][m][k] or 0 for m in months] for k in keys}

    return {
        "applications": charts.bar_chart(
            f"{figures['year']}年 场景申请审批 Applications decided",
            labels,
            series(
                "applications_approved", "applications_deemed_approved", "applications_rejected"
            ),
        ),
        "use": charts.bar_chart(
            f"{figures['year']}年 查询与出域 DP queries and exports",
            labels,
            series("dp_queries", "exports_released"),
        ),
        "security": charts.bar_chart(
            f"{figures['year']}年 暂停、事件与演练 Suspensions, incidents, drills",
            labels,
            series("suspensions", "incidents", "drills"),
        ),
    }


def snapshot(settings: Shuyu, *, now: datetime | None = None) -> dict[str, Any]:
    """The public page's content: this year's figures and charts (as ``data:`` URIs)."""
    moment = now or datetime.now(UTC)
    figures = year_figures(settings, moment.year, until=moment)
    return {
        "figures": figures,
        "charts": {k: charts.data_uri(v) for k, v in chart_svgs(figures).items()},
    }


def refresh(settings: Shuyu) -> Path:
    """Recompute the public page's snapshot and replace the stored one atomically."""
    content = snapshot(settings)
    target = settings.zone("hub") / SNAPSHOT_FILE
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".disclosure-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(content, out, ensure_ascii=False)
    os.replace(tmp, target)
    return target


def stored(settings: Shuyu, make: Callable[[Shuyu], Path] = refresh) -> dict[str, Any]:
    """The stored snapshot (made now if there is none yet)."""
    path = settings.zone("hub") / SNAPSHOT_FILE
    if not path.exists():
        make(settings)
    return json.loads(path.read_text("utf-8"))
