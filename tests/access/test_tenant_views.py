"""Per-tenant view folders follow the grants: built, rebuilt, removed, audited."""

from __future__ import annotations

import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from harness import REPO
from shuyu_platform.access import grants, tenant_views
from shuyu_platform.core import audit, db
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data import demodata
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.data.views import ViewBuildError


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


@pytest.fixture
def settings(tmp_path: Path) -> Shuyu:
    settings = Shuyu(home=str(tmp_path / "home"), policies_dir=str(REPO / "policies"))
    settings.ensure_zones()
    db.upgrade(settings.db_url)
    demodata.generate(settings.zone("raw"), rows=3000, datasets=["health_records"])
    return settings


def _grant(settings: Shuyu, policy: DatasetPolicy, tenant: str, **kwargs: object) -> int:
    with db.session_scope(settings.db_url) as session:
        return grants.issue(session, policy, tenant=tenant, actor="op", **kwargs).id  # type: ignore[arg-type]


def _events(settings: Shuyu, action: str) -> list[dict]:
    with db.session_scope(settings.db_url) as session:
        return audit.query(session, action=action, limit=1000)


def test_views_follow_grants_and_every_step_is_audited(
    settings: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    health = policies["health_records"]
    grant_id = _grant(settings, health, "kangning", fields=["person_id", "sex", "district"])
    result = tenant_views.build_tenant(settings, "kangning", actor="op", policies=policies)
    view = settings.zone("views") / "kangning" / "health_records.parquet"
    assert [r.dataset for r in result.built] == ["health_records"] and not result.removed
    assert pq.read_schema(view).names == ["person_id", "sex", "district"]
    meta = pq.read_metadata(view).metadata
    assert meta[b"shuyu.tenant"] == b"kangning" and meta[b"shuyu.grant"] == str(grant_id).encode()
    built = _events(settings, "view.build")[-1]
    assert built["tenant"] == "kangning" and built["detail"]["view_sha256"]
    assert built["detail"]["raw_sha256"]

    with db.session_scope(settings.db_url) as session:
        grants.revoke(session, grant_id, actor="op", reason="合同终止")
    result = tenant_views.build_tenant(settings, "kangning", actor="op", policies=policies)
    assert result.removed == ["health_records"] and not view.exists()
    assert _events(settings, "view.remove")[-1]["target"] == "view:kangning/health_records"


def test_pseudonyms_differ_between_tenants_and_stay_across_rebuilds(
    settings: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    health = policies["health_records"]
    for tenant in ("kangning", "huaxin"):
        _grant(settings, health, tenant, fields=["person_id", "sex"])
        tenant_views.build_tenant(settings, tenant, actor="op", policies=policies)

    def ids(tenant: str) -> set[str]:
        path = settings.zone("views") / tenant / "health_records.parquet"
        return set(pq.read_table(path).column("person_id").to_pylist())

    first = ids("kangning")
    assert first and not first & ids("huaxin")
    tenant_views.build_tenant(settings, "kangning", actor="op", policies=policies)
    assert ids("kangning") == first
    secret = settings.zone("hub") / "masking-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_failed_build_keeps_the_previous_view_and_is_audited(
    settings: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    health = policies["health_records"]
    _grant(settings, health, "kangning", fields=["sex", "district"])
    tenant_views.build_tenant(settings, "kangning", actor="op", policies=policies)
    view = settings.zone("views") / "kangning" / "health_records.parquet"
    before = view.read_bytes()
    (settings.zone("raw") / "health_records.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ViewBuildError, match=r"health_records.*not a readable Parquet file"):
        tenant_views.build_tenant(settings, "kangning", actor="op", policies=policies)
    assert view.read_bytes() == before
    assert _events(settings, "view.build")[-1]["outcome"] == "error"


def test_sweep_closes_expired_grants_and_removes_their_views(
    settings: Shuyu, policies: dict[str, DatasetPolicy]
) -> None:
    health = policies["health_records"]
    soon = datetime.now(UTC) + timedelta(seconds=2)
    _grant(settings, health, "kangning", fields=["sex"], expires_at=soon)
    _grant(settings, health, "huaxin", fields=["sex"])
    for tenant in ("kangning", "huaxin"):
        tenant_views.build_tenant(settings, tenant, actor="op", policies=policies)
    assert tenant_views.sweep(settings) == []
    views = settings.zone("views")
    stray = views / "huaxin" / "enterprise_credit.parquet"  # a view no grant covers
    stray.write_bytes((views / "huaxin" / "health_records.parquet").read_bytes())
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 1.1)
    removed = tenant_views.sweep(settings)
    assert sorted(removed) == ["huaxin/enterprise_credit", "kangning/health_records"]
    assert (views / "huaxin" / "health_records.parquet").exists()
    assert _events(settings, "grant.expired")[-1]["tenant"] == "kangning"
    assert tenant_views.known_tenants(settings) == ["huaxin", "kangning"]
