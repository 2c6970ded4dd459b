"""Each tenant's view folder kept in step with its grants (R7, R9).

``views/<tenant>/<dataset>.parquet`` exists exactly while the tenant holds an active
grant of the dataset and the dataset is not suspended (R23). :func:`build_tenant`
(re)builds a tenant's views with the engine of :mod:`shuyu_platform.data.views`, using the
grant's fields and row filter and the tenant's own masking key, and deletes views no
grant covers; :func:`sweep`, run
periodically by the platform service, closes expired grants and deletes their views.
Every build (also a failed one) and every removal is audited with file hashes and the
view's re-identification risk; :func:`view_risks` reads the risk of the current views
back (``shuyu views risk``) and :func:`dataset_risk` sums it up per dataset for the
catalogue.

The tenant keys derive from one platform secret in the hub zone, which no sandbox
mounts (:func:`masking_secret`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..core import audit, roles
from ..core.db import session_scope
from ..core.settings import Shuyu
from ..data.masking import tenant_key
from ..data.policy import DatasetPolicy, load_policies
from ..data.views import ViewBuildError, ViewReport, ViewRiskError, build_view
from . import grants, suspension

__all__ = [
    "TenantBuild",
    "ViewRiskEntry",
    "build_tenant",
    "dataset_risk",
    "known_tenants",
    "masking_secret",
    "sweep",
    "view_risks",
]


def _remove_view(
    settings: Shuyu, path: Path, *, actor: str, reason: str = "no active grant"
) -> str:
    """Delete one view file that no active grant covers (audited); ``tenant/dataset``."""
    tenant, dataset = path.parent.name, path.stem
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    path.unlink()
    audit.append(
        settings.db_url,
        actor=actor,
        actor_kind="system" if actor == "system" else "user",
        action="view.remove",
        target=f"view:{tenant}/{dataset}",
        tenant=tenant,
        detail={"reason": reason, "sha256": digest},
    )
    return f"{tenant}/{dataset}"


def masking_secret(settings: Shuyu) -> bytes:
    """The platform's masking secret (created on first use), from which tenant keys derive.

    It lives in the hub zone, which no sandbox mounts. Losing it changes every
    pseudonym and date shift at the next build; rotating it on purpose does the same.
    """
    path = settings.zone("hub") / "masking-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # never replaces a secret another process just made
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    secret = path.read_bytes()
    if len(secret) < 32:
        raise ViewBuildError(f"the masking secret {path.name} in the hub zone is damaged")
    return secret


@dataclass
class TenantBuild:
    """What :func:`build_tenant` did: views written and views removed."""

    tenant: str
    built: list[ViewReport]
    removed: list[str]


def known_tenants(settings: Shuyu) -> list[str]:
    """Tenants with an active grant or a view folder."""
    with session_scope(settings.db_url) as session:
        names = {g.tenant for g in grants.active(session)}
    views = settings.zone("views")
    if views.is_dir():
        names |= {p.name for p in views.iterdir() if p.is_dir()}
    return sorted(names)


def build_tenant(
    settings: Shuyu,
    tenant: str,
    *,
    actor: str,
    datasets: set[str] | None = None,
    policies: Mapping[str, DatasetPolicy] | None = None,
    progress: bool = False,
) -> TenantBuild:
    """Make ``views/<tenant>/`` match the tenant's active grants.

    Expired grants are closed first. Each granted dataset (or only those in
    ``datasets``) is rebuilt from the raw zone; a view whose grant is gone is deleted.
    Every build and removal is audited with its input and output hashes; a failed build
    is audited as an error, leaves the previous view in place, and the other datasets
    are still built before :class:`ViewBuildError` reports every failure.
    """
    if not roles.TENANT_SLUG.match(tenant):
        raise ViewBuildError(f"{tenant!r} is not a tenant slug")
    policies = policies or load_policies(Path(settings.policies_dir))
    with session_scope(settings.db_url) as session:
        grants.expire_due(session)
        stopped = suspension.suspended(session, "dataset")
        wanted = {
            g.dataset: (g.id, grants.fields_of(g), grants.row_filter_of(g))
            for g in grants.active(session, tenant=tenant)
            if g.dataset not in stopped
        }
    folder = settings.zone("views") / tenant
    if not folder.exists():
        folder.mkdir(parents=True)
        os.chmod(folder, 0o750)  # the sandbox spawner gives the group to the tenant's uid
    key = tenant_key(masking_secret(settings), tenant)
    built: list[ViewReport] = []
    removed: list[str] = []
    failures: list[str] = []
    today = date.today()
    for dataset, (grant_id, fields, row_filter) in sorted(wanted.items()):
        if datasets is not None and dataset not in datasets:
            continue
        policy = policies.get(dataset)
        target = f"view:{tenant}/{dataset}"
        try:
            if policy is None:
                raise ViewBuildError(f"grant {grant_id} names {dataset!r}, which no policy defines")
            report = build_view(
                policy,
                settings.zone("raw") / policy.raw_file,
                folder / f"{dataset}.parquet",
                key=key,
                fields=fields,
                row_filter=row_filter,
                reference_date=today,
                metadata={"shuyu.tenant": tenant, "shuyu.grant": str(grant_id)},
                progress=progress,
            )
        except (ViewBuildError, ValueError, OSError) as err:
            failures.append(f"{dataset}: {err}")
            outcome, detail = "error", {"error": str(err)}
            if isinstance(err, ViewRiskError):
                detail["risk"] = err.risk.as_dict()
        else:
            built.append(report)
            outcome, detail = "ok", report.as_dict()
        audit.append(
            settings.db_url,
            actor=actor,
            action="view.build",
            target=target,
            tenant=tenant,
            outcome=outcome,
            detail={"grant": grant_id, **detail},
        )
    for path in sorted(folder.glob("*.parquet")):
        dataset = path.stem
        if dataset in wanted or (datasets is not None and dataset not in datasets):
            continue
        why = "dataset suspended" if dataset in stopped else "no active grant"
        _remove_view(settings, path, actor=actor, reason=why)
        removed.append(dataset)
    if failures:
        raise ViewBuildError(f"views of {tenant} not built: " + "; ".join(failures))
    return TenantBuild(tenant=tenant, built=built, removed=removed)


def sweep(settings: Shuyu) -> list[str]:
    """Close expired grants and delete every view no active grant covers (no rebuilds).

    The platform service runs this periodically, so an expiry takes effect without an
    operator. Returns ``tenant/dataset`` of each view removed.
    """
    with session_scope(settings.db_url) as session:
        grants.expire_due(session)
        covered = {(g.tenant, g.dataset) for g in grants.active(session)}
        stopped = suspension.suspended(session, "dataset")
    removed = []
    views = settings.zone("views")
    for path in sorted(views.glob("*/*.parquet")) if views.is_dir() else []:
        tenant, dataset = path.parent.name, path.stem
        if (tenant, dataset) in covered and dataset not in stopped:
            continue
        why = "dataset suspended" if dataset in stopped else "no active grant"
        removed.append(_remove_view(settings, path, actor="system", reason=why))
    return removed


@dataclass(frozen=True)
class ViewRiskEntry:
    """The risk a current view was built with, read from the view file's metadata."""

    tenant: str
    dataset: str
    rows: int
    risk: dict[str, Any] | None
    """:meth:`~shuyu_platform.data.risk.ViewRisk.as_dict` of its build (``None``: a view
    built before risk was measured)."""


def view_risks(
    settings: Shuyu, *, tenant: str | None = None, dataset: str | None = None
) -> list[ViewRiskEntry]:
    """The risk of every current view (optionally of one tenant or dataset).

    The figures come from the view files' footers, which the platform writes and the
    sandboxes only read.
    """
    views = settings.zone("views")
    entries: list[ViewRiskEntry] = []
    pattern = f"{tenant or '*'}/{dataset or '*'}.parquet"
    for path in sorted(views.glob(pattern)) if views.is_dir() else []:
        try:
            found = path.stat()
            rows, raw = _risk_footer(str(path), found.st_ino, found.st_mtime_ns, found.st_size)
        except (OSError, pa.ArrowException):
            continue
        entries.append(
            ViewRiskEntry(
                tenant=path.parent.name,
                dataset=path.stem,
                rows=rows,
                risk=json.loads(raw) if raw else None,
            )
        )
    return entries


@functools.lru_cache(maxsize=4096)
def _risk_footer(path: str, inode: int, mtime_ns: int, size: int) -> tuple[int, bytes | None]:
    """A view file's row count and risk figures (JSON) from its Parquet footer.

    Cached per file identity (inode, modification time, size): a view file is never
    changed in place, a rebuild replaces it with a new file, so a cached footer is never
    stale, and the catalogue does not reread every view's footer on every request.
    """
    del inode, mtime_ns, size  # part of the cache key only
    metadata = pq.read_metadata(path).metadata or {}
    return int(metadata.get(b"shuyu.rows", b"0")), metadata.get(b"shuyu.risk")


def dataset_risk(settings: Shuyu, dataset: str) -> dict[str, Any]:
    """The worst figures over the current views of ``dataset``, for its catalogue entry.

    Names no tenant: the number of views, the highest maximum and average prosecutor
    risk, the highest share of records below k, the most unique records, the lowest l
    of each sensitive attribute and the highest share of rows suppressed.
    """
    risks = [e.risk for e in view_risks(settings, dataset=dataset) if e.risk is not None]
    if not risks:
        return {"views": 0}
    lowest_l: dict[str, int] = {}
    for risk in risks:
        for name, value in risk.get("lowest_l", {}).items():
            lowest_l[name] = min(value, lowest_l.get(name, value))
    return {
        "views": len(risks),
        "max_prosecutor_risk": max(r["max_prosecutor_risk"] for r in risks),
        "average_prosecutor_risk": max(r["average_prosecutor_risk"] for r in risks),
        "records_below_k_share": max(r["records_below_k_share"] for r in risks),
        "unique_records": max(r["unique_records"] for r in risks),
        "lowest_l": lowest_l,
        "suppressed_share": max(r["suppressed_share"] for r in risks),
    }
