"""Synthetic twins: the raw schema, plausible values, and never a real value or row.

The demo generator writes the four raw datasets once per module and :func:`build_all`
builds their twins once; tests that need other raw data (a rare category, an outlier, a
tiny identifier space, a corrupt file) write it into their own folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shuyu_platform.data import demodata, synthetic
from shuyu_platform.data.identifiers import is_mobile, is_valid_id_card, is_valid_uscc
from shuyu_platform.data.policy import DatasetPolicy, load_policies
from shuyu_platform.data.synthetic import (
    SyntheticError,
    SyntheticReport,
    build_all,
    build_synthetic,
)

REPO = Path(__file__).resolve().parents[2]
ROWS = 4000
SEED = 20240501
TWIN_SEED = 7


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The four raw demo datasets (``ROWS`` rows; enterprise_credit ``ROWS // 20``)."""
    folder = tmp_path_factory.mktemp("raw")
    demodata.generate(folder, rows=ROWS, seed=SEED)
    return folder


@pytest.fixture(scope="module")
def built(
    policies: dict[str, DatasetPolicy], raw_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, SyntheticReport]:
    """Every dataset's twin, built by :func:`build_all`, by dataset."""
    reports = build_all(policies, raw_dir, tmp_path_factory.mktemp("synthetic"), seed=TWIN_SEED)
    return {report.dataset: report for report in reports}


def raw_table(raw_dir: Path, dataset: str) -> pa.Table:
    return pq.read_table(raw_dir / f"{dataset}.parquet")


def twin_table(built: dict[str, SyntheticReport], dataset: str) -> pa.Table:
    return pq.read_table(built[dataset].out_path)


def sensitive_columns(policy: DatasetPolicy, table: pa.Table) -> list[str]:
    """Identifier columns and L3/L4 text columns: never a raw value in the twin."""
    return [
        name
        for name, field in policy.fields.items()
        if field.identifier
        or (field.grade in ("L3", "L4") and field.type == "string" and name in table.column_names)
    ]


def row_set(table: pa.Table) -> set[tuple[Any, ...]]:
    return set(zip(*(column.to_pylist() for column in table.columns), strict=True))


def policy_for(dataset: str, fields: dict[str, dict[str, Any]], unit: str | None) -> DatasetPolicy:
    """A minimal valid policy for a test dataset."""
    return DatasetPolicy.model_validate(
        {
            "dataset": dataset,
            "version": 2,
            "raw_file": f"{dataset}.parquet",
            "catalogue": {
                "title": "测试数据",
                "title_en": "Test data",
                "department": "测试局",
                "summary": "只用于测试。",
                "update_frequency": "daily",
                "provision_modes": ["synthetic"],
            },
            "fields": fields,
            "privacy": {"privacy_unit": unit, "quasi_identifiers": []},
        }
    )


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ====================================================================== schema and file


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_twin_has_exactly_the_raw_schema(
    dataset: str, raw_dir: Path, built: dict[str, SyntheticReport]
) -> None:
    raw = pq.read_schema(raw_dir / f"{dataset}.parquet")
    twin = pq.read_schema(built[dataset].out_path)
    assert [(f.name, f.type, f.nullable, f.metadata) for f in twin] == [
        (f.name, f.type, f.nullable, f.metadata) for f in raw
    ]
    assert twin.remove_metadata() == raw.remove_metadata()


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_twin_is_marked_synthetic_zstd_and_sized_like_the_raw_file(
    dataset: str,
    policies: dict[str, DatasetPolicy],
    raw_dir: Path,
    built: dict[str, SyntheticReport],
) -> None:
    report = built[dataset]
    parquet = pq.ParquetFile(report.out_path)
    meta = {k.decode(): v.decode() for k, v in parquet.schema_arrow.metadata.items()}
    assert meta["shuyu.synthetic"] == "true"
    assert meta["shuyu.dataset"] == dataset
    assert meta["shuyu.policy_version"] == str(policies[dataset].version)
    assert meta["shuyu.seed"] == str(TWIN_SEED)
    assert set(json.loads(meta["shuyu.synthetic.columns"])) == set(parquet.schema_arrow.names)
    raw_rows = pq.read_metadata(raw_dir / f"{dataset}.parquet").num_rows
    assert parquet.metadata.num_rows == report.rows_out == min(raw_rows, 100_000) > 0
    assert report.rows_raw == raw_rows
    for group in range(parquet.metadata.num_row_groups):
        for column in range(parquet.metadata.num_columns):
            assert parquet.metadata.row_group(group).column(column).compression == "ZSTD"


def test_report_says_what_was_built(built: dict[str, SyntheticReport]) -> None:
    report = built["health_records"]
    assert report.out_path.name == "health_records.parquet"
    assert report.path == report.out_path and report.rows == report.rows_out
    assert report.synthetic_sha256 == hashlib.sha256(report.out_path.read_bytes()).hexdigest()
    assert report.columns["id_card"] == "fake:id_card"
    assert report.columns["district"] == "categorical(public_keys)"
    assert report.columns["settlement_amount"] == "quantiles"
    assert report.columns["diagnosis_time"].endswith("+hours")
    assert "health_records: 4,000 invented rows" in str(report)
    data = json.loads(json.dumps(report.as_dict()))
    assert data["dataset"] == "health_records"
    assert datetime.fromisoformat(data["built_at"]) == report.built_at
    assert report.out_path.stat().st_mode & 0o777 == 0o644


# ======================================================================= no real data


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_no_raw_identifier_value_appears_in_any_string_cell(
    dataset: str,
    policies: dict[str, DatasetPolicy],
    raw_dir: Path,
    built: dict[str, SyntheticReport],
) -> None:
    raw = raw_table(raw_dir, dataset)
    twin = twin_table(built, dataset)
    secret: set[str] = set()
    for name in sensitive_columns(policies[dataset], raw):
        secret.update(raw[name].drop_null().to_pylist())
    cells = [
        value
        for column in twin.columns
        if pa.types.is_string(column.type)
        for value in column.drop_null().to_pylist()
    ]
    assert cells
    assert not secret & set(cells), f"{dataset} repeats raw identifier values"


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_no_twin_row_is_a_raw_row(
    dataset: str, raw_dir: Path, built: dict[str, SyntheticReport]
) -> None:
    assert not row_set(raw_table(raw_dir, dataset)) & row_set(twin_table(built, dataset))


def test_invented_identifiers_are_format_valid_and_unique(
    built: dict[str, SyntheticReport],
) -> None:
    health = twin_table(built, "health_records")
    assert all(is_valid_id_card(v) for v in health["id_card"].to_pylist())
    assert all(is_mobile(v) for v in health["phone"].to_pylist())
    assert all(re.fullmatch(r"P\d{11}", v) for v in health["person_id"].to_pylist())
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,4}", v) for v in health["name"].to_pylist())
    imaging = health["imaging_number"].drop_null().to_pylist()
    assert imaging and all(re.fullmatch(r"MYIMG\d{12}", v) for v in imaging)
    for name in ("person_id", "id_card", "phone"):
        assert pc.count_distinct(health[name]).as_py() == health.num_rows, name
    enterprises = twin_table(built, "enterprise_credit")
    assert all(is_valid_uscc(v) for v in enterprises["credit_code"].to_pylist())
    assert all(is_valid_id_card(v) for v in enterprises["legal_rep_id_card"].to_pylist())
    assert all(v.endswith("公司") for v in enterprises["enterprise_name"].to_pylist())
    insured = twin_table(built, "social_insurance")
    assert all(re.fullmatch(r"SI\d{14}", v) for v in insured["insured_id"].to_pylist())
    employers = insured["employer_credit_code"].drop_null().to_pylist()
    assert employers and all(is_valid_uscc(v) for v in employers)


def test_categories_are_frequent_raw_values_or_public_keys(
    policies: dict[str, DatasetPolicy], raw_dir: Path, built: dict[str, SyntheticReport]
) -> None:
    raw = raw_table(raw_dir, "health_records")
    twin = twin_table(built, "health_records")
    district_keys = policies["health_records"].fields["district"].dp.public_keys  # type: ignore[union-attr]
    assert set(twin["district"].to_pylist()) <= set(district_keys)
    frequent = {c for c, n in Counter(raw["icd11_code"].to_pylist()).items() if n >= 10}
    assert set(twin["icd11_code"].to_pylist()) <= frequent
    assert set(twin["sex"].to_pylist()) == {"M", "F"}


def test_rare_categories_never_appear(
    policies: dict[str, DatasetPolicy], raw_dir: Path, tmp_path: Path
) -> None:
    table = raw_table(raw_dir, "health_records")
    codes = table["icd11_code"].to_pylist()
    codes[0] = "ZZ99"  # seen once
    codes[1:10] = ["ZZ98"] * 9  # seen 9 times: still below the threshold
    codes[10:20] = ["ZZ97"] * 10  # seen 10 times: may be drawn
    table = table.set_column(
        table.schema.get_field_index("icd11_code"),
        table.schema.field("icd11_code"),
        pa.array(codes, pa.string()),
    )
    raw = tmp_path / "health_records.parquet"
    pq.write_table(table, raw)
    report = build_synthetic(
        policies["health_records"], raw, tmp_path / "twin.parquet", rows=20_000
    )
    drawn = Counter(pq.read_table(report.out_path)["icd11_code"].to_pylist())
    assert "ZZ99" not in drawn and "ZZ98" not in drawn
    assert drawn["ZZ97"] > 0


def test_rare_line_and_outlier_never_surface(
    policies: dict[str, DatasetPolicy], raw_dir: Path, tmp_path: Path
) -> None:
    table = raw_table(raw_dir, "bus_ridership")
    lines = table["line"].to_pylist()
    lines[0] = "唯一的线路"
    boardings = table["boardings"].to_numpy().copy()
    boardings[1] = 10**9
    table = table.set_column(0, table.schema.field("line"), pa.array(lines)).set_column(
        table.schema.get_field_index("boardings"),
        table.schema.field("boardings"),
        pa.array(boardings, pa.int32()),
    )
    raw = tmp_path / "bus_ridership.parquet"
    pq.write_table(table, raw)
    report = build_synthetic(policies["bus_ridership"], raw, tmp_path / "twin.parquet", rows=5000)
    twin = pq.read_table(report.path)
    assert "唯一的线路" not in set(twin["line"].to_pylist())
    assert pc.max(twin["boardings"]).as_py() < 10**9
    assert report.rows == 5000


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_null_rates_are_roughly_kept(
    dataset: str, raw_dir: Path, built: dict[str, SyntheticReport]
) -> None:
    raw = raw_table(raw_dir, dataset)
    twin = twin_table(built, dataset)
    for name in raw.column_names:
        raw_rate = raw[name].null_count / raw.num_rows
        twin_rate = twin[name].null_count / twin.num_rows
        if not raw.schema.field(name).nullable:
            assert twin_rate == 0, name
        else:
            assert abs(twin_rate - raw_rate) < 0.05, (name, raw_rate, twin_rate)
    if dataset == "health_records":
        assert 0 < twin["imaging_number"].null_count < twin.num_rows


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_numbers_stay_inside_the_clipped_range(
    dataset: str, raw_dir: Path, built: dict[str, SyntheticReport]
) -> None:
    raw = raw_table(raw_dir, dataset)
    twin = twin_table(built, dataset)
    numeric = [
        f.name for f in raw.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
    ]
    assert numeric
    for name in numeric:
        values = raw[name].to_numpy().astype(float)
        low, high = np.quantile(values, [0.01, 0.99])
        drawn = twin[name].to_numpy().astype(float)
        assert drawn.min() >= low - 1e-9 and drawn.max() <= high + 1e-9, name
        if np.quantile(values, 0.999) > high:
            assert drawn.max() < values.max(), name


def test_floats_keep_the_raw_number_of_decimals(
    raw_dir: Path, built: dict[str, SyntheticReport]
) -> None:
    amounts = twin_table(built, "health_records")["settlement_amount"].to_numpy()
    assert np.allclose(amounts, np.round(amounts, 2))
    assert not np.allclose(amounts, np.round(amounts, 1))


def test_dates_stay_inside_the_raw_span(raw_dir: Path, built: dict[str, SyntheticReport]) -> None:
    for dataset, name in (("health_records", "diagnosis_time"), ("bus_ridership", "service_date")):
        raw = raw_table(raw_dir, dataset)[name]
        drawn = twin_table(built, dataset)[name]

        def month(scalar: pa.Scalar) -> tuple[int, int]:
            value = scalar.as_py()
            return value.year, value.month

        # Month buckets: whole months around the raw values, never beyond them.
        assert month(pc.min(drawn)) >= month(pc.min(raw)), name
        assert month(pc.max(drawn)) <= month(pc.max(raw)), name
    hours = twin_table(built, "health_records")["diagnosis_time"].to_pandas().dt.hour
    assert hours.between(8, 17).mean() > 0.5  # the clinic-hours profile is kept


# ========================================================================= determinism


def test_deterministic_for_a_seed(
    policies: dict[str, DatasetPolicy], raw_dir: Path, tmp_path: Path
) -> None:
    policy = policies["health_records"]
    raw = raw_dir / "health_records.parquet"
    one = build_synthetic(policy, raw, tmp_path / "a.parquet", seed=3, rows=500)
    two = build_synthetic(policy, raw, tmp_path / "b.parquet", seed=3, rows=500)
    three = build_synthetic(policy, raw, tmp_path / "c.parquet", seed=4, rows=500)
    assert one.out_path.read_bytes() == two.out_path.read_bytes()
    assert one.synthetic_sha256 == two.synthetic_sha256
    assert pq.read_table(one.out_path).equals(pq.read_table(two.out_path))
    assert not pq.read_table(one.out_path).equals(pq.read_table(three.out_path))


def test_rows_argument_and_chunks(
    policies: dict[str, DatasetPolicy],
    raw_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = policies["social_insurance"]
    raw = raw_dir / "social_insurance.parquet"
    empty = build_synthetic(policy, raw, tmp_path / "empty.parquet", rows=0)
    table = pq.read_table(empty.out_path)
    assert table.num_rows == 0 and table.schema.names == pq.read_schema(raw).names
    monkeypatch.setattr(synthetic.limits, "CHUNK_ROWS", 1000)
    report = build_synthetic(policy, raw, tmp_path / "more.parquet", rows=9_500)
    twin = pq.read_table(report.out_path)
    assert twin.num_rows == 9_500
    assert pq.ParquetFile(report.out_path).metadata.num_row_groups == 10
    for name in ("insured_id", "id_card"):  # unique across chunks
        assert pc.count_distinct(twin[name]).as_py() == twin.num_rows
    with pytest.raises(ValueError, match="rows"):
        build_synthetic(policy, raw, tmp_path / "bad.parquet", rows=-1)


# ====================================================== redrawing what equals raw data


def write_codes(raw: Path, codes: list[str]) -> None:
    kinds = np.random.default_rng(2).choice(["甲", "乙"], size=len(codes))
    pq.write_table(pa.table({"code": pa.array(codes), "kind": pa.array(kinds)}), raw)


def test_identifier_values_are_redrawn_away_from_a_crowded_space(tmp_path: Path) -> None:
    codes = [f"K{n:03d}" for n in range(0, 1000, 2) for _ in range(6)]  # half the K-codes
    raw = tmp_path / "codes.parquet"
    write_codes(raw, codes)
    policy = policy_for(
        "codes",
        {
            "code": {
                "title": "编码",
                "type": "string",
                "grade": "L3",
                "identifier": True,
                "masking": {"rule": "pseudonymize"},
            },
            "kind": {"title": "类别", "type": "category", "grade": "L1"},
        },
        unit="code",
    )
    report = build_synthetic(policy, raw, tmp_path / "twin.parquet", rows=60)
    drawn = pq.read_table(report.out_path)["code"].to_pylist()
    assert report.columns["code"] == "fake:templates"
    assert all(re.fullmatch(r"K\d{3}", code) for code in drawn)
    assert not set(drawn) & set(codes)
    assert len(set(drawn)) == len(drawn)
    assert report.values_redrawn > 0

    # Every K-code is taken: values that keep colliding become neutral digits instead.
    write_codes(raw, [f"K{n:03d}" for n in range(1000)] * 3)
    report = build_synthetic(policy, raw, tmp_path / "twin.parquet", rows=60)
    drawn = pq.read_table(report.out_path)["code"].to_pylist()
    assert all(re.fullmatch(r"\d{12}", code) for code in drawn)
    assert len(set(drawn)) == len(drawn)


def test_identifiers_of_every_raw_dataset_are_kept_out_of_every_twin(tmp_path: Path) -> None:
    """One person appears in several datasets: a twin's identifier must be no real one,
    whichever dataset (and column) holds it."""
    raw_dir, out = tmp_path / "raw", tmp_path / "synthetic"
    raw_dir.mkdir()
    identifier = {
        "title": "编码",
        "type": "string",
        "grade": "L3",
        "identifier": True,
        "masking": {"rule": "pseudonymize"},
    }
    kind = {"title": "类别", "type": "category", "grade": "L1"}
    # "codes" holds the even K-codes, "others" (another column name) most odd ones: a twin
    # of "codes" that only avoided its own column would draw odd codes freely.
    even = [f"K{n:03d}" for n in range(0, 1000, 2)]
    odd = [f"K{n:03d}" for n in range(1, 1000, 2)][:450]
    write_codes(raw_dir / "codes.parquet", even * 6)
    rng = np.random.default_rng(3)
    pq.write_table(
        pa.table({"member": odd * 6, "kind": rng.choice(["甲", "乙"], size=len(odd) * 6)}),
        raw_dir / "others.parquet",
    )
    policies = {
        "codes": policy_for("codes", {"code": identifier, "kind": kind}, unit="code"),
        "others": policy_for("others", {"member": identifier, "kind": kind}, unit="member"),
    }
    reports = {r.dataset: r for r in build_all(policies, raw_dir, out, rows=40, seed=5)}
    real = set(even) | set(odd)
    for dataset, column in (("codes", "code"), ("others", "member")):
        drawn = pq.read_table(reports[dataset].out_path)[column].to_pylist()
        assert len(drawn) == 40 and len(set(drawn)) == 40
        assert not set(drawn) & real
        assert reports[dataset].values_redrawn > 0

    # Built alone, without the other datasets' identifiers, the twin does draw them:
    # the check above is what keeps them out.
    alone = build_synthetic(
        policies["codes"], raw_dir / "codes.parquet", tmp_path / "alone.parquet", rows=40, seed=5
    )
    assert set(pq.read_table(alone.out_path)["code"].to_pylist()) & set(odd)


def test_rows_equal_to_raw_rows_are_redrawn_when_there_is_no_identifier(
    tmp_path: Path,
) -> None:
    pairs = [("x", "u"), ("x", "v"), ("y", "u")] * 100  # never ("y", "v")
    raw = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}), raw)
    category = {"type": "category", "grade": "L1"}
    policy = policy_for(
        "pairs", {"a": {"title": "甲", **category}, "b": {"title": "乙", **category}}, unit=None
    )
    report = build_synthetic(policy, raw, tmp_path / "twin.parquet", rows=200)
    assert row_set(pq.read_table(report.out_path)) == {("y", "v")}
    assert report.rows_redrawn > 0

    every = pairs + [("y", "v")] * 100
    pq.write_table(pa.table({"a": [a for a, _ in every], "b": [b for _, b in every]}), raw)
    with pytest.raises(SyntheticError, match="unlike the raw ones"):
        build_synthetic(policy, raw, tmp_path / "impossible.parquet", rows=50)
    assert not (tmp_path / "impossible.parquet").exists()
    assert temporaries(tmp_path) == []


def test_undescribed_text_is_never_learned_and_odd_types_are_refused(
    policies: dict[str, DatasetPolicy], raw_dir: Path, tmp_path: Path
) -> None:
    table = raw_table(raw_dir, "bus_ridership")
    notes = [f"司机备注{i % 3}" for i in range(table.num_rows)]  # only 3 distinct values
    raw = tmp_path / "bus_ridership.parquet"
    pq.write_table(table.append_column("note", pa.array(notes)), raw)
    report = build_synthetic(policies["bus_ridership"], raw, tmp_path / "twin.parquet", rows=300)
    twin = pq.read_table(report.out_path)
    assert twin.schema.names[-1] == "note"
    assert report.columns["note"].startswith("fake:")
    assert not set(twin["note"].to_pylist()) & set(notes)

    listed = table.append_column("stops", pa.array([[1, 2]] * table.num_rows))
    pq.write_table(listed, raw)
    with pytest.raises(SyntheticError, match="column 'stops' has type list"):
        build_synthetic(policies["bus_ridership"], raw, tmp_path / "twin.parquet", rows=10)


# ============================================================= errors and atomic writes


def _garbage(raw: Path, source: Path) -> None:
    raw.write_bytes(b"PAR1 but not really")


def _truncated(raw: Path, source: Path) -> None:
    data = source.read_bytes()
    raw.write_bytes(data[: len(data) // 2] + data[-8:])  # footer intact, pages cut


def _bad_page(raw: Path, source: Path) -> None:
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    raw.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _bad_page])
def test_corrupt_raw_file_is_a_clear_error_and_nothing_is_written(
    damage: Callable[[Path, Path], None],
    policies: dict[str, DatasetPolicy],
    raw_dir: Path,
    tmp_path: Path,
) -> None:
    raw = tmp_path / "health_records.parquet"
    damage(raw, raw_dir / "health_records.parquet")
    out = tmp_path / "twin.parquet"
    with pytest.raises(SyntheticError, match=r"raw file health_records\.parquet") as caught:
        build_synthetic(policies["health_records"], raw, out)
    assert "not a readable Parquet file" in str(caught.value) or "rows" in str(caught.value)
    assert not out.exists()
    assert temporaries(tmp_path) == []


def test_missing_raw_file_is_a_clear_error(
    policies: dict[str, DatasetPolicy], tmp_path: Path
) -> None:
    with pytest.raises(SyntheticError, match=r"raw file health_records\.parquet does not exist"):
        build_synthetic(
            policies["health_records"], tmp_path / "health_records.parquet", tmp_path / "t.parquet"
        )
    assert list(tmp_path.iterdir()) == []


def test_corrupt_raw_file_keeps_the_previous_twin(
    policies: dict[str, DatasetPolicy], tmp_path: Path
) -> None:
    raw = tmp_path / "health_records.parquet"
    raw.write_bytes(b"PAR1 but not really")
    out = tmp_path / "twin.parquet"
    out.write_bytes(b"previous twin")
    with pytest.raises(SyntheticError, match="not a readable Parquet file"):
        build_synthetic(policies["health_records"], raw, out)
    assert out.read_bytes() == b"previous twin"
    assert temporaries(tmp_path) == []


def test_failure_midway_leaves_the_previous_twin_untouched(
    policies: dict[str, DatasetPolicy],
    raw_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "twin.parquet"
    previous = build_synthetic(
        policies["health_records"], raw_dir / "health_records.parquet", out, rows=100
    )
    before = out.read_bytes()
    monkeypatch.setattr(synthetic.limits, "CHUNK_ROWS", 500)
    written = pq.ParquetWriter.write_table
    calls: list[int] = []

    def fail_on_the_third_chunk(self: pq.ParquetWriter, table: pa.Table, *args: Any, **kw: Any):
        calls.append(table.num_rows)
        if len(calls) == 3:
            raise OSError("disk full")
        return written(self, table, *args, **kw)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_on_the_third_chunk)
    with pytest.raises(OSError, match="disk full"):
        build_synthetic(policies["health_records"], raw_dir / "health_records.parquet", out)
    assert len(calls) == 3
    assert out.read_bytes() == before
    assert hashlib.sha256(before).hexdigest() == previous.synthetic_sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twin.parquet"]


def test_build_all_skips_datasets_without_a_twin_and_reports_failures(
    policies: dict[str, DatasetPolicy], raw_dir: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "synthetic"
    out_dir.mkdir()
    stale = out_dir / "bus_ridership.parquet"
    stale.write_bytes(b"stale twin")
    bus = policies["bus_ridership"]
    no_twin = bus.model_copy(
        update={"catalogue": bus.catalogue.model_copy(update={"provision_modes": ("api",)})}
    )
    chosen = {
        "bus_ridership": no_twin,
        "health_records": policies["health_records"],
        "social_insurance": policies["social_insurance"],
    }
    only_health = tmp_path / "raw"
    only_health.mkdir()
    (only_health / "health_records.parquet").write_bytes(
        (raw_dir / "health_records.parquet").read_bytes()
    )
    with pytest.raises(SyntheticError, match=r"social_insurance: raw file .* does not exist"):
        build_all(chosen, only_health, out_dir, rows=50)
    assert sorted(p.name for p in out_dir.iterdir()) == ["health_records.parquet"]
    assert pq.read_metadata(out_dir / "health_records.parquet").num_rows == 50


# ======================================================================== internals


def test_hash_filter_never_forgets() -> None:
    hashes = np.random.default_rng(5).integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64)
    kept = synthetic.hashing._HashFilter(len(hashes))
    kept.add(hashes[:25_000])
    assert kept.contains(hashes[:25_000]).all()
    assert kept.contains(hashes[25_000:]).mean() < 0.02


def test_quantile_sketch_merges_batches_closely() -> None:
    rng = np.random.default_rng(9)
    sketch = synthetic.sketches._QuantileSketch()
    batches = [rng.lognormal(5.0, 1.0, 20_000) for _ in range(70)]  # forces a merge
    for batch in batches:
        sketch.add(batch)
    levels = np.array([0.01, 0.25, 0.5, 0.75, 0.99])
    exact = np.quantile(np.concatenate(batches), levels)
    assert np.allclose(sketch.quantiles(levels), exact, rtol=0.005)
