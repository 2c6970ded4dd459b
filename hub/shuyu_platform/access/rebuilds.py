"""Rebuilding what derives from a dataset's raw data after a new current version (R21).

A supplied or withdrawn version changes what ``raw/<dataset>.parquet`` holds; every
tenant's view of the dataset and its synthetic twin are then stale. :func:`rebuild`
builds them again, one step per tenant view and one for the twin, and records its
progress in a :class:`~shuyu_platform.core.models.Rebuild` row that operators read
(``shuyu supply status``, ``GET api/supply``). The platform service runs it in a
background thread after a supply through its API; ``shuyu supply`` runs it in the
foreground. Each view build is audited as usual (``view.build`` with the input and
output SHA-256); the whole rebuild as ``supply.rebuild``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..core import audit
from ..core.db import session_scope, stamp
from ..core.models import Rebuild
from ..core.settings import Shuyu
from ..data.policy import DatasetPolicy
from ..data.synthetic import SyntheticError, build_synthetic, raw_identifiers
from ..data.views import ViewBuildError
from . import grants, tenant_views

__all__ = ["interrupted", "rebuild", "rebuild_dict", "start", "status"]


def start(settings: Shuyu, dataset: str, version: int | None) -> int:
    """Record a rebuild as running (before its thread starts, so operators see it at once)."""
    with session_scope(settings.db_url) as session:
        tenants = sorted({g.tenant for g in grants.active(session) if g.dataset == dataset})
        row = Rebuild(
            dataset=dataset,
            version=version or 0,
            status="running",
            done=0,
            total=len(tenants) + 1,
            detail="queued",
            started_at=stamp(),
        )
        session.add(row)
        session.flush()
        return row.id


def _progress(settings: Shuyu, rebuild_id: int, **values: Any) -> None:
    with session_scope(settings.db_url) as session:
        row = session.get(Rebuild, rebuild_id)
        if row is not None:
            for name, value in values.items():
                setattr(row, name, value)


def rebuild(
    settings: Shuyu,
    policies: dict[str, DatasetPolicy],
    dataset: str,
    rebuild_id: int,
    *,
    actor: str,
    echo: Any = None,
) -> dict[str, Any]:
    """Build every tenant's view of ``dataset`` and its twin again (progress recorded).

    Failures of single steps are collected; the rebuild ends ``failed`` naming them,
    and the previous view or twin stays in place where a build failed.
    """
    with session_scope(settings.db_url) as session:
        tenants = sorted({g.tenant for g in grants.active(session) if g.dataset == dataset})
    failures: list[str] = []
    done = 0
    for tenant in tenants:
        _progress(settings, rebuild_id, detail=f"view of {tenant}", total=len(tenants) + 1)
        try:
            tenant_views.build_tenant(
                settings, tenant, actor=actor, datasets={dataset}, policies=policies
            )
        except ViewBuildError as err:
            failures.append(str(err))
        done += 1
        _progress(settings, rebuild_id, done=done)
        if echo:
            echo(f"  view {tenant}/{dataset} ({done}/{len(tenants) + 1})")
    _progress(settings, rebuild_id, detail="synthetic twin")
    twin = None
    policy = policies[dataset]
    if "synthetic" in policy.catalogue.provision_modes:
        try:
            twin = build_synthetic(
                policy,
                settings.zone("raw") / policy.raw_file,
                settings.zone("synthetic") / f"{dataset}.parquet",
                raw_identifiers=raw_identifiers(policies, settings.zone("raw")),
            )
        except (SyntheticError, ValueError, OSError) as err:
            failures.append(f"synthetic twin: {err}")
    done += 1
    if echo:
        echo(f"  synthetic twin of {dataset} ({done}/{len(tenants) + 1})")
    outcome = "failed" if failures else "done"
    _progress(
        settings,
        rebuild_id,
        done=done,
        status=outcome,
        detail="; ".join(failures)[:4000],
        finished_at=stamp(),
    )
    result = {
        "rebuild": rebuild_id,
        "dataset": dataset,
        "status": outcome,
        "views": len(tenants),
        "twin_sha256": twin.synthetic_sha256 if twin else "",
        "failures": failures,
    }
    audit.append(
        settings.db_url,
        actor=actor,
        actor_kind="system" if actor in ("system", "platform") else "user",
        action="supply.rebuild",
        target=f"dataset:{dataset}",
        outcome="error" if failures else "ok",
        detail=result,
    )
    return result


def interrupted(settings: Shuyu) -> list[int]:
    """Mark rebuilds left ``running`` by a service that died as ``failed`` (at start-up);
    the next supply or ``shuyu views build`` builds what they left."""
    with session_scope(settings.db_url) as session:
        rows = session.scalars(select(Rebuild).where(Rebuild.status == "running")).all()
        for row in rows:
            row.status, row.finished_at = "failed", stamp()
            row.detail = f"interrupted at step {row.done + 1} of {row.total}: the service stopped"
        return [row.id for row in rows]


def rebuild_dict(row: Rebuild) -> dict[str, Any]:
    """One rebuild as operators see it."""
    return {
        "id": row.id,
        "dataset": row.dataset,
        "version": row.version,
        "status": row.status,
        "done": row.done,
        "total": row.total,
        "detail": row.detail,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


def status(settings: Shuyu, dataset: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest rebuilds (of one dataset), newest first."""
    with session_scope(settings.db_url) as session:
        query = select(Rebuild).order_by(Rebuild.id.desc()).limit(limit)
        if dataset is not None:
            query = query.where(Rebuild.dataset == dataset)
        return [rebuild_dict(row) for row in session.scalars(query).all()]
