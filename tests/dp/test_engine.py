"""The OpenDP engine on the 100k-row demo data: calibrated noise, honest intervals.

The true answers are computed with plain Polars on the same raw file, so every check
compares a released value with the truth it hides.
"""

from __future__ import annotations

import statistics as stats
from pathlib import Path
from typing import Any

import numpy as np
import opendp.prelude as dp
import polars as pl
import pytest

from harness import REPO
from shuyu_platform.data import demodata
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.dp import query
from shuyu_platform.dp.engine import EngineError, Source
from shuyu_platform.dp.opendp_engine import OpenDpEngine, _Plan

ENGINE = OpenDpEngine()
DISTRICTS = [
    "涪城区",
    "游仙区",
    "安州区",
    "三台县",
    "盐亭县",
    "梓潼县",
    "北川羌族自治县",
    "平武县",
    "江油市",
]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return demodata.generate(
        tmp_path_factory.mktemp("raw"), rows=100_000, datasets=["health_records"]
    )


@pytest.fixture(scope="module")
def health() -> DatasetPolicy:
    """The shipped policy, with the per-query cap lifted to ε 1 and birth dates
    filterable: these tests measure the engine's accuracy, not the policy's limits."""
    shipped = load_policies(REPO / "policies")["health_records"]
    return shipped.model_copy(
        update={
            "privacy": shipped.privacy.model_copy(update={"max_epsilon_per_query": 1.0}),
            "dp": shipped.dp.model_copy(
                update={"filterable": (*shipped.dp.filterable, "birth_date")}
            ),
        }
    )


@pytest.fixture(scope="module")
def source(raw: dict[str, Path], health: DatasetPolicy) -> Source:
    return Source(health, raw["health_records"])


def ask(source: Source, **body: Any) -> list[dict[str, Any]]:
    spec = query.parse(
        {"dataset": "health_records", **body}, source.policy, list(source.policy.fields)
    )
    return ENGINE.answer(source, spec).rows


def truth(source: Source, by: list[str] | None = None) -> pl.DataFrame:
    amount = pl.col("settlement_amount").fill_nan(None).fill_null(0.0).clip(0, 50_000)
    dosage = pl.col("dosage_mg").fill_nan(None).fill_null(0.0).clip(0, 2_000)
    aggs = [
        pl.len().alias("n"),
        amount.sum().alias("total"),
        amount.mean().alias("avg"),
        dosage.var(ddof=0).alias("var"),
    ]
    frame = pl.scan_parquet(source.path)
    return (frame.group_by(by).agg(aggs) if by else frame.select(aggs)).collect()


def test_answers_fall_within_their_stated_intervals_most_of_the_time(source: Source) -> None:
    true = {row["district"]: row for row in truth(source, ["district"]).iter_rows(named=True)}
    inside = checks = 0
    for _ in range(8):
        rows = ask(
            source,
            epsilon=1.0,
            group_by=["district"],
            statistics={
                "n": {"fn": "count"},
                "total": {"fn": "sum", "column": "settlement_amount"},
                "avg": {"fn": "mean", "column": "settlement_amount"},
                "var": {"fn": "variance", "column": "dosage_mg"},
            },
        )
        assert [r["district"] for r in rows] == DISTRICTS  # the policy's public key order
        for row in rows:
            for name in ("n", "total", "avg", "var"):
                checks += 1
                inside += (
                    row[f"{name}_ci_low"] <= true[row["district"]][name] <= row[f"{name}_ci_high"]
                )
            # The intervals are informative, not vacuous.
            assert row["avg_ci_high"] - row["avg_ci_low"] < 0.1 * 50_000
    assert inside / checks >= 0.88, f"{inside}/{checks} true values inside their 95% intervals"


def test_noise_is_calibrated_to_the_stated_scale(source: Source) -> None:
    true_n = truth(source)["n"][0]
    body = {"epsilon": 0.5, "statistics": {"n": {"fn": "count"}}}
    spec = query.parse(
        {"dataset": "health_records", **body}, source.policy, list(source.policy.fields)
    )
    estimate = ENGINE.estimate(source, spec)
    (noise,) = estimate.noise
    assert noise["distribution"] == "Integer Laplace"
    assert noise["scale"] == pytest.approx(1 / 0.5, rel=1e-6)  # sensitivity 1 / ε
    errors, covered = [], 0
    for _ in range(300):
        (row,) = ENGINE.answer(source, spec).rows
        errors.append(row["n"] - true_n)
        covered += row["n_ci_low"] <= true_n <= row["n_ci_high"]
    spread = stats.pstdev(errors)
    # Laplace sd = √2·b; 25% is about four standard errors of a 300-draw sd.
    assert spread == pytest.approx(np.sqrt(2) * noise["scale"], rel=0.25)
    assert abs(stats.fmean(errors)) < 4 * spread / np.sqrt(len(errors))
    assert 0.90 <= covered / 300 <= 0.995


def test_sum_noise_follows_the_policy_bounds_and_contributions(
    source: Source, health: DatasetPolicy
) -> None:
    body = {
        "dataset": "health_records",
        "epsilon": 0.5,
        "statistics": {"total": {"fn": "sum", "column": "settlement_amount"}},
    }
    spec = query.parse(body, health, list(health.fields))
    (noise,) = ENGINE.estimate(source, spec).noise
    assert noise["scale"] == pytest.approx(50_000 / 0.5, rel=1e-6)  # upper bound / ε
    doubled = health.model_copy(
        update={"privacy": health.privacy.model_copy(update={"max_contributions": 2})}
    )
    (noise,) = ENGINE.estimate(Source(doubled, source.path), spec).noise
    assert noise["scale"] == pytest.approx(2 * 50_000 / 0.5, rel=1e-6)


def test_opendp_confirms_each_query_spends_its_epsilon_and_no_more(source: Source) -> None:
    body = {
        "dataset": "health_records",
        "epsilon": 0.7,
        "group_by": ["sex", {"column": "dosage_mg", "bins": [0, 100, 500]}],
        "statistics": {
            "n": {"fn": "count"},
            "avg": {"fn": "mean", "column": "settlement_amount"},
            "var": {"fn": "variance", "column": "settlement_amount"},
            "median": {"fn": "quantile", "column": "dosage_mg", "q": 0.5},
        },
    }
    spec = query.parse(body, source.policy, list(source.policy.fields))
    plan = _Plan(source, spec)
    measurement = plan.measurement(plan.data().collect_schema())
    loss = measurement.map(dp.unit_of(contributions=1)[1])
    assert 0.7 * (1 - 1e-6) <= loss <= 0.7


def test_every_public_key_is_released_even_without_rows(source: Source) -> None:
    rows = ask(
        source,
        epsilon=1.0,
        filters=[{"column": "sex", "op": "==", "value": "M"}],
        group_by=["sex"],
        statistics={"n": {"fn": "count"}},
    )
    by_sex = {r["sex"]: r for r in rows}
    assert set(by_sex) == {"M", "F"}
    assert by_sex["F"]["n"] <= by_sex["F"]["n_ci_high"] < 50  # a noisy zero, not a gap
    assert by_sex["M"]["n"] > 10_000


def test_the_grant_row_filter_limits_what_is_counted(source: Source, health: DatasetPolicy) -> None:
    limited = Source(health, source.path, {"district": ["涪城区", "游仙区"]})
    true = truth(source, ["district"])
    rows = ask(limited, epsilon=1.0, group_by=["district"], statistics={"n": {"fn": "count"}})
    for row in rows:
        if row["district"] in ("涪城区", "游仙区"):
            expected = true.filter(pl.col("district") == row["district"])["n"][0]
            assert abs(row["n"] - expected) < 60
        else:
            assert row["n"] < 60


def test_histogram_bins_and_filters_on_dates_and_numbers(source: Source) -> None:
    rows = ask(
        source,
        epsilon=1.0,
        filters=[
            {"column": "birth_date", "op": ">=", "value": "1980-01-01"},
            {"column": "dosage_mg", "op": "not_null"},
        ],
        group_by=[{"column": "settlement_amount", "bins": [0, 1_000, 10_000]}],
        statistics={"n": {"fn": "count"}},
    )
    assert [r["settlement_amount_bin"] for r in rows] == [
        "<0",
        "[0, 1000)",
        "[1000, 10000)",
        ">=10000",
    ]
    frame = pl.scan_parquet(source.path).filter(
        (pl.col("birth_date") >= pl.date(1980, 1, 1)) & pl.col("dosage_mg").is_not_null()
    )
    amount = pl.col("settlement_amount")
    expected = (
        frame.select(
            ((amount >= 0) & (amount < 1_000)).sum().alias("low"),
            ((amount >= 1_000) & (amount < 10_000)).sum().alias("mid"),
            (amount >= 10_000).sum().alias("high"),
        )
        .collect()
        .row(0)
    )
    for row, true_n in zip(rows[1:], expected, strict=True):
        assert abs(row["n"] - true_n) < 60


def test_bins_whose_edges_print_alike_keep_labels_of_their_own(source: Source) -> None:
    # The attack: edges that `:g` writes alike ("1e+09"), so that bins sharing a label
    # are answered once per duplicate, each with fresh noise on the same rows (ε spent
    # as many times over). Each bin keeps a label of its own, and one answer.
    edges = [1e9 + 1_000 * i for i in range(5)]
    rows = ask(
        source,
        epsilon=1.0,
        group_by=[{"column": "settlement_amount", "bins": edges}],
        statistics={"n": {"fn": "count"}},
    )
    labels = [r["settlement_amount_bin"] for r in rows]
    assert len(rows) == len(edges) + 1 == len(set(labels))
    assert labels[:3] == ["<1e+09", "[1e+09, 1000001000.0)", "[1000001000.0, 1000002000.0)"]


def test_quantiles_land_near_the_truth(source: Source) -> None:
    (row,) = ask(
        source,
        epsilon=1.0,
        statistics={"median": {"fn": "quantile", "column": "dosage_mg", "q": 0.5}},
    )
    true_median = (
        pl.scan_parquet(source.path)
        .select(pl.col("dosage_mg").fill_null(0.0).clip(0, 2_000).median())
        .collect()
        .item()
    )
    assert abs(row["median"] - true_median) <= 30  # candidates are 10 mg apart
    assert row["median_ci_low"] is None  # no closed-form interval, and none is invented


def test_a_file_breaking_the_privacy_unit_promise_is_refused(
    tmp_path: Path, raw: dict[str, Path], health: DatasetPolicy
) -> None:
    frame = pl.read_parquet(raw["health_records"]).head(1000)
    twice = pl.concat([frame, frame.head(3)])
    path = tmp_path / "health_records.parquet"
    twice.write_parquet(path)
    spec = query.parse(
        {"dataset": "health_records", "statistics": {"n": {"fn": "count"}}},
        health,
        list(health.fields),
    )
    with pytest.raises(EngineError, match="breaks its policy: one person_id has 2 rows"):
        ENGINE.estimate(Source(health, path), spec)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"PAR1 this is not parquet", "cannot be read"), (None, "is not available")],
)
def test_missing_or_corrupt_raw_files_are_refused(
    tmp_path: Path, health: DatasetPolicy, content: bytes | None, message: str
) -> None:
    path = tmp_path / "health_records.parquet"
    if content is not None:
        path.write_bytes(content)
    spec = query.parse(
        {"dataset": "health_records", "statistics": {"n": {"fn": "count"}}},
        health,
        list(health.fields),
    )
    with pytest.raises(EngineError, match=message):
        ENGINE.answer(Source(health, path), spec)
