"""What each tenant used in a calendar month (R25), from the audit chain and the database.

- **sandbox CPU-seconds and memory-GB-hours**: the ``sandbox.usage`` records the sandbox
  spawner writes from each server's cgroup when the server stops
  (:meth:`shuyu_platform.isolation.sandbox.SandboxSpawner._record_usage`);
- **storage**: the allocated size of the tenant's disk image when the usage is read;
- **DP queries and ε** per dataset: the DP ledger's releases (refunds excluded);
- **released exports**: the ``egress.released`` records;
- **sealed jobs**: distinct jobs of the ``job.start`` records; **imports**: the
  ``import.approve`` records.

Months are UTC calendar months, written ``2026-11``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.db import stamp
from ..core.models import Application, AuditEvent, DpRelease, Grant
from ..core.settings import Shuyu
from ..isolation.disk_quota import TenantDisk

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class MeteringError(ValueError):
    """A month or tenant that cannot be metered, with the reason for a person."""


def month_bounds(month: str) -> tuple[str, str]:
    """The first instant of ``month`` and of the month after, as time-stamp prefixes.

    Without the trailing ``Z``, so they sort before both stored spellings of the same
    second (``...:00Z`` and the audit chain's ``...:00.000000Z``).
    """
    match = MONTH.match(month)
    if not match:
        raise MeteringError(f"a month is written YYYY-MM, not {month!r}")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return stamp(start).rstrip("Z"), stamp(end).rstrip("Z")


@dataclass
class DatasetUse:
    """DP use of one dataset in the month."""

    queries: int = 0
    epsilon: float = 0.0


@dataclass
class Usage:
    """One tenant's metered use in one month."""

    tenant: str
    month: str
    cpu_seconds: float = 0.0
    memory_gb_hours: float = 0.0
    storage_gb: float = 0.0
    dp_queries: int = 0
    dp_epsilon: float = 0.0
    exports_released: int = 0
    sealed_jobs: int = 0
    imports: int = 0
    sandbox_sessions: int = 0
    datasets: dict[str, DatasetUse] = field(default_factory=dict)
    granted: list[str] = field(default_factory=list)
    nature: str = ""
    not_metered: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def sealed_jobs(session: Session, tenant: str, start: str, end: str) -> int | None:
    """Sealed jobs of the tenant that started running in [start, end): distinct jobs of
    its ``job.start`` records, so a job run again after a platform restart counts once."""
    return len({event.target for event in _events(session, "job.start", tenant, start, end)})


def imports(session: Session, tenant: str, start: str, end: str) -> int | None:
    """Imports of the tenant approved (and so stored in the domain) in [start, end)."""
    return len(_events(session, "import.approve", tenant, start, end))


def _events(session: Session, action: str, tenant: str, start: str, end: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.tenant == tenant)
            .where(AuditEvent.ts >= start, AuditEvent.ts < end, AuditEvent.outcome == "ok")
            .order_by(AuditEvent.seq)
        )
    )


def nature_of(session: Session, tenant: str, scenarios: set[str]) -> str:
    """``commercial`` if any application of the tenant for one of ``scenarios`` (or, with
    none given, any approved application) is commercial; ``public_interest`` if all are;
    ``""`` when no application is on record."""
    stmt = select(Application.nature, Application.scenario).where(Application.tenant == tenant)
    rows = [(n, s) for n, s in session.execute(stmt.where(Application.status == "approved"))]
    if scenarios:
        rows = [(n, s) for n, s in rows if s in scenarios] or rows
    natures = {n for n, _ in rows}
    if not natures:
        return ""
    return "commercial" if "commercial" in natures else "public_interest"


def usage(session: Session, settings: Shuyu, tenant: str, month: str) -> Usage:
    """What ``tenant`` used in ``month``."""
    start, end = month_bounds(month)
    used = Usage(tenant=tenant, month=month)
    for event in _events(session, "sandbox.usage", tenant, start, end):
        detail = json.loads(event.detail)
        used.cpu_seconds += float(detail.get("cpu_seconds", 0))
        used.memory_gb_hours += float(detail.get("memory_gb_hours", 0))
        used.sandbox_sessions += 1
    used.cpu_seconds = round(used.cpu_seconds, 3)
    used.memory_gb_hours = round(used.memory_gb_hours, 6)
    releases = session.scalars(
        select(DpRelease).where(
            DpRelease.tenant == tenant,
            DpRelease.created_at >= start,
            DpRelease.created_at < end,
            DpRelease.status.in_(("released", "failed")),
        )
    )
    for release in releases:
        use = used.datasets.setdefault(release.dataset, DatasetUse())
        use.queries += 1
        use.epsilon = round(use.epsilon + release.epsilon_micro / 1e6, 6)
    used.dp_queries = sum(u.queries for u in used.datasets.values())
    used.dp_epsilon = round(sum(u.epsilon for u in used.datasets.values()), 6)
    used.exports_released = len(_events(session, "egress.released", tenant, start, end))
    for name, hook in (("sealed_jobs", sealed_jobs), ("imports", imports)):
        count = hook(session, tenant, start, end)
        if count is None:
            used.not_metered.append(name)
        else:
            setattr(used, name, count)
    grants = session.scalars(
        select(Grant).where(Grant.tenant == tenant, Grant.issued_at < end)
    ).all()
    live = [g for g in grants if not g.ended_at or g.ended_at >= start]
    used.granted = sorted({g.dataset for g in live})
    used.nature = nature_of(session, tenant, {g.scenario for g in live})
    used.storage_gb = round(_storage_bytes(settings, tenant) / 1e9, 6)
    return used


def _storage_bytes(settings: Shuyu, tenant: str) -> int:
    """Allocated bytes of the tenant's disk image (0 if it has none)."""
    image = TenantDisk.of_tenant(settings.zone("work"), tenant, 0).image
    try:
        return Path(image).stat().st_blocks * 512
    except OSError:
        return 0


def tenants_in(session: Session, month: str) -> list[str]:
    """Tenants with any record or grant in ``month``."""
    start, end = month_bounds(month)
    found = set(
        session.scalars(
            select(AuditEvent.tenant)
            .where(AuditEvent.ts >= start, AuditEvent.ts < end, AuditEvent.tenant.is_not(None))
            .distinct()
        )
    )
    found |= set(session.scalars(select(Grant.tenant).where(Grant.issued_at < end)))
    return sorted(t for t in found if t)
