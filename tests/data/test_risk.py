"""Risk measured and bounded on every view build: l-diversity, hierarchy levels, limits.

Small hand-made tables whose classes are known exactly, and the demo's health records
through a tenant's grant (audit, ``shuyu views risk``, the catalogue summary).
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from pycanon import anonymity

from harness import REPO
from shuyu_platform.access import grants, tenant_views
from shuyu_platform.cli import main
from shuyu_platform.core import audit, db
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data import demodata
from shuyu_platform.data.masking import tenant_key
from shuyu_platform.data.policy import DatasetPolicy, RiskLimits, load_policies
from shuyu_platform.data.views import ViewBuildError, ViewRiskError, build_view

KEY = tenant_key(b"platform-master-secret-for-tests", "kangning")
BUILT_ON = date(2026, 6, 15)


def policy_for(privacy: dict[str, Any], amount: dict[str, Any] | None = None) -> DatasetPolicy:
    """A people dataset: id, sex, district, an amount and a diagnosis."""
    return DatasetPolicy.model_validate(
        {
            "dataset": "people",
            "version": 1,
            "raw_file": "people.parquet",
            "catalogue": {
                "title": "测试人员",
                "title_en": "Test people",
                "department": "测试局",
                "summary": "只用于测试。",
                "update_frequency": "daily",
                "provision_modes": ["masked_view"],
            },
            "fields": {
                "pid": {
                    "title": "编号",
                    "type": "string",
                    "grade": "L3",
                    "identifier": True,
                    "masking": {"rule": "pseudonymize"},
                },
                "sex": {"title": "性别", "type": "category", "grade": "L2"},
                "district": {"title": "区县", "type": "category", "grade": "L2"},
                "amount": {
                    "title": "金额",
                    "type": "float",
                    "grade": "L2",
                    **(amount or {}),
                },
                "diagnosis": {"title": "诊断", "type": "category", "grade": "L2"},
            },
            "privacy": {"privacy_unit": "pid", **privacy},
        }
    )


def write_people(path: Path, rows: list[tuple[str, str, float, str]]) -> Path:
    pq.write_table(
        pa.table(
            {
                "pid": [f"P{i:05d}" for i in range(len(rows))],
                "sex": [r[0] for r in rows],
                "district": [r[1] for r in rows],
                "amount": [r[2] for r in rows],
                "diagnosis": [r[3] for r in rows],
            }
        ),
        path,
    )
    return path


def build(policy: DatasetPolicy, raw: Path, out: Path, **options: Any) -> Any:
    fields = options.pop("fields", list(policy.visible_fields()))
    return build_view(policy, raw, out, key=KEY, fields=fields, reference_date=BUILT_ON, **options)


LENIENT = {"max_average_risk": 1.0, "max_suppressed_share": 1.0}


def test_l_diversity_suppresses_classes_that_reveal_the_diagnosis(tmp_path: Path) -> None:
    rows = (
        [("F", "A", 1.0, "flu")] * 6  # k holds, but everyone in it has flu
        + [("M", "A", 1.0, "flu")] * 3
        + [("M", "A", 1.0, "cold")] * 3  # two diagnoses
        + [("F", "B", 1.0, d) for d in ("flu", "cold", "cancer")] * 2  # three
    )
    raw = write_people(tmp_path / "people.parquet", rows)
    policy = policy_for(
        {
            "quasi_identifiers": ["sex", "district"],
            "sensitive_attributes": ["diagnosis"],
            "k_anonymity": 3,
            "l_diversity": {"l": 2},
            "risk_limits": LENIENT,
        }
    )
    report = build(policy, raw, tmp_path / "view.parquet")
    view = pq.read_table(report.out_path).to_pandas()
    assert set(zip(view["sex"], view["district"], strict=True)) == {("M", "A"), ("F", "B")}
    assert report.rows_suppressed == 6 and report.classes_suppressed == 1
    risk = report.risk
    assert risk.lowest_l == {"diagnosis": 2} and risk.smallest_class == 6
    assert math.isclose(risk.lowest_entropy_l["diagnosis"], 2.0)
    assert anonymity.l_diversity(view, ["sex", "district"], ["diagnosis"]) == 2

    # Entropy l-diversity is stricter: 5 flu and 1 cold have two values, but an entropy
    # of exp(H) = 1.57 < 2.
    skewed = rows + [("M", "B", 1.0, "flu")] * 5 + [("M", "B", 1.0, "cold")]
    write_people(raw, skewed)
    distinct = build(policy, raw, tmp_path / "distinct.parquet")
    assert distinct.rows_suppressed == 6
    entropy = policy_for(
        {**policy.privacy.model_dump(), "l_diversity": {"l": 2, "measure": "entropy"}}
    )
    strict = build(entropy, raw, tmp_path / "entropy.parquet")
    assert strict.rows_suppressed == 12
    assert strict.risk.lowest_entropy_l["diagnosis"] >= 2.0


def test_a_coarser_hierarchy_level_is_used_when_the_finest_suppresses_too_much(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(4)
    amounts = rng.lognormal(6, 1.5, 400)
    rows = [
        ("F" if i % 2 else "M", "A" if i % 3 else "B", float(a), "flu" if i % 4 else "cold")
        for i, a in enumerate(amounts)
    ]
    raw = write_people(tmp_path / "people.parquet", rows)
    amount = {
        "masking": {"rule": "round", "significant": 2},
        "hierarchy": [
            {"rule": "round", "significant": 1},
            {"rule": "bucket", "edges": [0, 1000, float("inf")], "values": [300, 3000]},
        ],
    }
    privacy = {
        "quasi_identifiers": ["sex", "district", "amount"],
        "k_anonymity": 5,
        "risk_limits": {"max_average_risk": 0.5, "max_suppressed_share": 0.05},
    }
    policy = policy_for(privacy, amount)
    report = build(policy, raw, tmp_path / "view.parquet")
    assert report.risk.level == 2
    assert set(pq.read_table(report.out_path)["amount"].to_pylist()) <= {300.0, 3000.0}
    meta = pq.read_schema(report.out_path).metadata
    assert meta[b"shuyu.generalisation_level"] == b"2"
    assert report.risk.suppressed_share <= 0.05
    error = report.risk.mean_errors["amount"]
    assert error.group_by == "sex" and error.groups == 2 and error.mean_relative_error > 0

    # A lower level share moves on to coarser levels sooner, tolerating more before failing.
    privacy["risk_limits"] = {
        "max_average_risk": 0.5,
        "max_suppressed_share": 0.9,
        "level_suppressed_share": 0.0,
    }
    coarse = build(policy_for(privacy, amount), raw, tmp_path / "coarse.parquet")
    assert coarse.risk.level == 2
    privacy["risk_limits"] = {"max_average_risk": 0.5, "max_suppressed_share": 0.9}
    finer = build(policy_for(privacy, amount), raw, tmp_path / "fine.parquet")
    assert finer.risk.level < coarse.risk.level
    assert finer.rows_suppressed > coarse.rows_suppressed


def test_a_build_above_the_risk_limits_fails_and_keeps_the_previous_view(
    tmp_path: Path,
) -> None:
    rows = [("F", f"D{i % 40}", 1.0, "flu") for i in range(200)]  # 5 rows per district
    raw = write_people(tmp_path / "people.parquet", rows)
    out = tmp_path / "view.parquet"
    loose = policy_for({"quasi_identifiers": ["sex", "district"], "risk_limits": LENIENT})
    build(loose, raw, out)
    before = out.read_bytes()
    tight = policy_for(
        {
            "quasi_identifiers": ["sex", "district"],
            "risk_limits": {"max_average_risk": 0.1, "max_suppressed_share": 0.5},
        }
    )
    with pytest.raises(ViewRiskError, match=r"average prosecutor risk 0\.200 is above 0\.100"):
        build(tight, raw, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # More than the allowed share suppressed is refused the same way.
    rows = [("F", f"D{i}", 1.0, "flu") for i in range(100)] + [("M", "X", 1.0, "flu")] * 100
    write_people(raw, rows)
    with pytest.raises(ViewRiskError, match=r"50\.0% of the rows would be suppressed") as caught:
        build(policy_for({"quasi_identifiers": ["sex", "district"]}), raw, out)
    assert caught.value.risk.rows_suppressed == 100
    assert out.read_bytes() == before
    # A view that would lose every row is refused too, not written empty.
    write_people(raw, [("F", f"D{i}", 1.0, "flu") for i in range(30)])
    with pytest.raises(ViewRiskError, match=r"100\.0% of the rows would be suppressed"):
        build(policy_for({"quasi_identifiers": ["sex", "district"]}), raw, out)
    assert out.read_bytes() == before
    write_people(raw, rows)
    # k = 1 (no suppression) is for tools that need every row: no limit applies.
    everything = build(tight, raw, tmp_path / "all.parquet", k=1)
    assert everything.rows_out == 200 and everything.risk.unique_records == 100


def test_the_rows_of_a_view_come_in_a_keyed_random_order(tmp_path: Path) -> None:
    rows = [("F" if i % 2 else "M", "A", float(i), "flu" if i % 3 else "cold") for i in range(600)]
    raw = write_people(tmp_path / "people.parquet", rows)
    policy = policy_for({"quasi_identifiers": ["sex"], "risk_limits": LENIENT})
    fields = ["sex", "amount"]
    first = pq.read_table(build(policy, raw, tmp_path / "a.parquet", fields=fields).out_path)
    again = pq.read_table(build(policy, raw, tmp_path / "b.parquet", fields=fields).out_path)
    other = pq.read_table(
        build_view(
            policy,
            raw,
            tmp_path / "c.parquet",
            key=tenant_key(b"platform-master-secret-for-tests", "huaxin"),
            fields=fields,
            reference_date=BUILT_ON,
        ).out_path
    )
    order = first["amount"].to_numpy()
    assert first.equals(again)  # stable for one tenant
    assert sorted(order) == list(range(600))
    assert not np.array_equal(order, other["amount"].to_numpy())
    # Unrelated to the raw order and to the other tenant's: rank correlations near 0.
    assert abs(pd.Series(order).corr(pd.Series(range(600)), method="spearman")) < 0.15
    assert abs(pd.Series(order).corr(other["amount"].to_pandas(), method="spearman")) < 0.15


# ============================================================= a tenant's views, end to end


@pytest.fixture
def settings(tmp_path: Path) -> Shuyu:
    settings = Shuyu(home=str(tmp_path / "home"), policies_dir=str(REPO / "policies"))
    settings.ensure_zones()
    db.upgrade(settings.db_url)
    demodata.generate(settings.zone("raw"), rows=20_000, datasets=["health_records"])
    return settings


def test_risk_is_audited_shown_by_the_cli_and_summed_up_for_the_catalogue(
    settings: Shuyu,
) -> None:
    policies = load_policies(REPO / "policies")
    health = policies["health_records"]
    with db.session_scope(settings.db_url) as session:
        grants.issue(
            session, health, tenant="kangning", actor="op", fields=list(health.visible_fields())
        )
    tenant_views.build_tenant(settings, "kangning", actor="op", policies=policies)
    with db.session_scope(settings.db_url) as session:
        event = audit.query(session, action="view.build", limit=10)[-1]
    risk = event["detail"]["risk"]
    assert event["outcome"] == "ok"
    assert risk["quasi_identifiers"] == list(health.privacy.quasi_identifiers)
    assert risk["max_prosecutor_risk"] <= 1 / 5 and risk["lowest_l"]["icd11_code"] >= 3

    entries = tenant_views.view_risks(settings)
    assert [(e.tenant, e.dataset) for e in entries] == [("kangning", "health_records")]
    assert entries[0].risk == risk
    summary = tenant_views.dataset_risk(settings, "health_records")
    assert summary["views"] == 1 and summary["max_prosecutor_risk"] == risk["max_prosecutor_risk"]
    assert "kangning" not in json.dumps(summary)
    assert tenant_views.dataset_risk(settings, "social_insurance") == {"views": 0}

    shown = CliRunner().invoke(main, ["views", "risk", "--home", settings.home])
    assert shown.exit_code == 0, shown.output
    assert "kangning/health_records" in shown.output and "max risk 0.200" in shown.output
    as_json = CliRunner().invoke(main, ["views", "risk", "--home", settings.home, "--json"])
    assert json.loads(as_json.output)[0]["risk"] == risk


def test_a_build_refused_for_risk_is_audited_with_its_figures(settings: Shuyu) -> None:
    policies = load_policies(REPO / "policies")
    health = policies["health_records"]
    with db.session_scope(settings.db_url) as session:
        grants.issue(
            session, health, tenant="kangning", actor="op", fields=list(health.visible_fields())
        )
    tenant_views.build_tenant(settings, "kangning", actor="op", policies=policies)
    view = settings.zone("views") / "kangning" / "health_records.parquet"
    before = view.read_bytes()
    limits = RiskLimits(max_average_risk=0.001, max_suppressed_share=0.05)
    stricter = health.model_copy(
        update={"privacy": health.privacy.model_copy(update={"risk_limits": limits})}
    )
    with pytest.raises(ViewBuildError, match="above its policy's risk limits"):
        tenant_views.build_tenant(
            settings, "kangning", actor="op", policies={**policies, "health_records": stricter}
        )
    assert view.read_bytes() == before
    with db.session_scope(settings.db_url) as session:
        event = audit.query(session, action="view.build", limit=10)[-1]
    assert event["outcome"] == "error"
    assert event["detail"]["risk"]["average_prosecutor_risk"] > 0.001
