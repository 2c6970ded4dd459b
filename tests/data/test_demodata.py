"""Tests for data.demodata: determinism, identifier realism, schema, atomic writes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shuyu_platform.data import demodata
from shuyu_platform.data.identifiers import (
    is_mobile,
    is_valid_id_card,
    is_valid_uscc,
    parse_id_card,
)

ROWS = 20_000
SEED = 20240501

EXPECTED_COLUMNS: dict[str, list[tuple[str, pa.DataType, bool]]] = {
    "health_records": [
        ("person_id", pa.string(), False),
        ("name", pa.string(), False),
        ("id_card", pa.string(), False),
        ("phone", pa.string(), False),
        ("sex", pa.string(), False),
        ("birth_date", pa.date32(), False),
        ("district", pa.string(), False),
        ("diagnosis_time", pa.timestamp("s"), False),
        ("icd11_code", pa.string(), False),
        ("imaging_number", pa.string(), True),
        ("dosage_mg", pa.float64(), False),
        ("settlement_amount", pa.float64(), False),
        ("surgery_record_number", pa.string(), True),
    ],
    "enterprise_credit": [
        ("credit_code", pa.string(), False),
        ("enterprise_name", pa.string(), False),
        ("legal_representative", pa.string(), False),
        ("legal_rep_id_card", pa.string(), False),
        ("registered_capital", pa.float64(), False),
        ("equity_structure", pa.string(), False),
        ("industry", pa.string(), False),
        ("district", pa.string(), False),
        ("established_date", pa.date32(), False),
        ("penalty_count", pa.int32(), False),
        ("penalty_amount", pa.float64(), False),
    ],
    "bus_ridership": [
        ("line", pa.string(), False),
        ("station", pa.string(), False),
        ("service_date", pa.date32(), False),
        ("hour", pa.int8(), False),
        ("boardings", pa.int32(), False),
        ("alightings", pa.int32(), False),
        ("district", pa.string(), False),
    ],
    "social_insurance": [
        ("insured_id", pa.string(), False),
        ("name", pa.string(), False),
        ("id_card", pa.string(), False),
        ("insurance_type", pa.string(), False),
        ("contribution_base", pa.float64(), False),
        ("months_paid", pa.int32(), False),
        ("benefit_amount", pa.float64(), False),
        ("district", pa.string(), False),
        ("employer_credit_code", pa.string(), True),
    ],
}

INSURANCE_TYPES = {
    "城镇职工基本养老保险",
    "城乡居民基本养老保险",
    "职工基本医疗保险",
    "城乡居民基本医疗保险",
    "失业保险",
    "工伤保险",
    "生育保险",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return demodata.generate(tmp_path_factory.mktemp("raw"), rows=ROWS, seed=SEED)


@pytest.fixture(scope="module")
def tables(generated: dict[str, Path]) -> dict[str, pa.Table]:
    return {name: pq.read_table(path) for name, path in generated.items()}


# ------------------------------------------------------------------ determinism


def test_generate_writes_every_dataset(generated: dict[str, Path]) -> None:
    assert list(generated) == list(demodata.DATASETS)
    for name, path in generated.items():
        assert path.name == f"{name}.parquet"
        assert path.is_file()
    assert not list(next(iter(generated.values())).parent.glob("*.tmp-*"))


def test_same_seed_gives_byte_identical_files(generated: dict[str, Path], tmp_path: Path) -> None:
    again = demodata.generate(tmp_path, rows=ROWS, seed=SEED)
    assert {n: _sha256(p) for n, p in again.items()} == {
        n: _sha256(p) for n, p in generated.items()
    }


def test_different_seed_gives_different_content(
    tables: dict[str, pa.Table], tmp_path: Path
) -> None:
    other = demodata.generate(tmp_path, rows=ROWS, seed=SEED + 1)
    for name, path in other.items():
        assert not pq.read_table(path).equals(tables[name]), name


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_one_dataset_alone_matches_all_together(
    dataset: str, generated: dict[str, Path], tmp_path: Path
) -> None:
    alone = demodata.generate(tmp_path, rows=ROWS, seed=SEED, datasets=[dataset])
    assert list(alone) == [dataset]
    assert _sha256(alone[dataset]) == _sha256(generated[dataset])
    assert [p.name for p in tmp_path.iterdir()] == [f"{dataset}.parquet"]


def test_datasets_may_be_a_single_name(tmp_path: Path) -> None:
    written = demodata.generate(tmp_path, rows=100, datasets="bus_ridership")
    assert list(written) == ["bus_ridership"]


def test_multi_chunk_output_is_deterministic_and_unique(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demodata.generator, "CHUNK_ROWS", 3_000)
    first = demodata.generate(tmp_path / "a", rows=10_000, datasets=["health_records"])
    second = demodata.generate(tmp_path / "b", rows=10_000, datasets=["health_records"])
    assert _sha256(first["health_records"]) == _sha256(second["health_records"])
    parquet = pq.ParquetFile(first["health_records"])
    assert parquet.metadata.num_row_groups == 4
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    table = parquet.read()
    for column in ("person_id", "id_card"):
        assert pc.count_distinct(table.column(column)).as_py() == 10_000


# ---------------------------------------------------------------- schema & counts


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_schema_is_exactly_as_specified(dataset: str) -> None:
    fields = [(f.name, f.type, f.nullable) for f in demodata.schema(dataset)]
    assert fields == EXPECTED_COLUMNS[dataset]


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_files_carry_the_schema(dataset: str, tables: dict[str, pa.Table]) -> None:
    table = tables[dataset]
    expected = demodata.schema(dataset)
    read = [(f.name, f.type, f.nullable) for f in table.schema]
    if dataset == "health_records":
        # Parquet has no second-resolution timestamps: the column is stored as
        # TIMESTAMP(MILLIS) and casting back to the declared type must be lossless.
        position = table.schema.get_field_index("diagnosis_time")
        assert read[position] == ("diagnosis_time", pa.timestamp("ms"), False)
        read[position] = ("diagnosis_time", pa.timestamp("s"), False)
    assert read == [(f.name, f.type, f.nullable) for f in expected]
    assert table.cast(expected).schema.equals(expected, check_metadata=True)


def test_row_counts(tables: dict[str, pa.Table]) -> None:
    assert demodata.row_count("enterprise_credit", ROWS) == ROWS // 20
    assert demodata.row_count("enterprise_credit", 100) == 50
    assert demodata.row_count("bus_ridership", 7) == 7
    for name, table in tables.items():
        assert table.num_rows == demodata.row_count(name, ROWS), name


def test_unknown_dataset_is_rejected_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        demodata.generate(tmp_path, rows=100, datasets=["health_records", "nope"])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        demodata.schema("nope")
    with pytest.raises(ValueError):
        demodata.generate(tmp_path, rows=-1)


def test_identifier_columns_are_unique(tables: dict[str, pa.Table]) -> None:
    for dataset, column in [
        ("health_records", "person_id"),
        ("health_records", "id_card"),
        ("social_insurance", "insured_id"),
        ("social_insurance", "id_card"),
        ("enterprise_credit", "credit_code"),
        ("enterprise_credit", "legal_rep_id_card"),
        ("health_records", "imaging_number"),
        ("health_records", "surgery_record_number"),
    ]:
        values = tables[dataset].column(column).drop_null()
        assert pc.count_distinct(values).as_py() == len(values), (dataset, column)


def test_identifier_formats(tables: dict[str, pa.Table]) -> None:
    health, social = tables["health_records"], tables["social_insurance"]
    assert all(re.fullmatch(r"P[0-9]{11}", v) for v in _column(health, "person_id"))
    assert all(re.fullmatch(r"SI[0-9]{14}", v) for v in _column(social, "insured_id"))


# ------------------------------------------------------------ identity realism


def _check_id_cards(
    cards: list[str], births: list[date] | None, sexes: list[str] | None, districts: list[str]
) -> None:
    for i, card in enumerate(cards):
        assert is_valid_id_card(card), card
        parsed = parse_id_card(card)
        if births is not None:
            assert parsed.birth_date == births[i], card
        if sexes is not None:
            assert parsed.sex == sexes[i], card
        assert parsed.region_code in demodata.DISTRICTS.values(), card
        if districts:
            assert parsed.region_code == demodata.DISTRICTS[districts[i]], card


@pytest.mark.parametrize("dataset", ["health_records", "social_insurance"])
def test_person_id_cards_agree_with_row(dataset: str, tables: dict[str, pa.Table]) -> None:
    table = tables[dataset]
    sexes = _column(table, "sex") if dataset == "health_records" else None
    births = _column(table, "birth_date") if dataset == "health_records" else None
    _check_id_cards(_column(table, "id_card"), births, sexes, _column(table, "district"))


def test_legal_representative_id_cards_are_valid(tables: dict[str, pa.Table]) -> None:
    table = tables["enterprise_credit"]
    cards = _column(table, "legal_rep_id_card")
    _check_id_cards(cards, None, None, [])
    for card, established in zip(cards, _column(table, "established_date"), strict=True):
        assert (established - parse_id_card(card).birth_date).days >= 18 * 365, card


def test_credit_codes_are_valid_and_match_district(tables: dict[str, pa.Table]) -> None:
    table = tables["enterprise_credit"]
    for code, district in zip(
        _column(table, "credit_code"), _column(table, "district"), strict=True
    ):
        assert is_valid_uscc(code), code
        assert code[2:8] == demodata.DISTRICTS[district], code


def test_employer_credit_codes_are_valid(tables: dict[str, pa.Table]) -> None:
    codes = [c for c in _column(tables["social_insurance"], "employer_credit_code") if c]
    assert codes
    assert all(is_valid_uscc(code) for code in codes)


def test_phones_are_mobile_numbers(tables: dict[str, pa.Table]) -> None:
    assert all(is_mobile(phone) for phone in _column(tables["health_records"], "phone"))


def test_names_are_chinese(tables: dict[str, pa.Table]) -> None:
    for dataset, column in [
        ("health_records", "name"),
        ("social_insurance", "name"),
        ("enterprise_credit", "legal_representative"),
    ]:
        for name in _column(tables[dataset], column):
            assert re.fullmatch(r"[\u4e00-\u9fff]{2,4}", name), name


# ---------------------------------------------------------------------- nulls


@pytest.mark.parametrize(
    ("dataset", "column", "rate", "tolerance"),
    [
        ("health_records", "imaging_number", 0.35, 0.02),
        ("health_records", "surgery_record_number", 0.08, 0.01),
        ("social_insurance", "employer_credit_code", 0.70, 0.02),
    ],
)
def test_nullable_columns_have_real_nulls_at_the_stated_rate(
    dataset: str, column: str, rate: float, tolerance: float, tables: dict[str, pa.Table]
) -> None:
    values = tables[dataset].column(column)
    present = 1 - values.null_count / len(values)
    assert abs(present - rate) < tolerance, present
    assert pc.sum(pc.equal(values, "")).as_py() in (None, 0)


def test_non_nullable_columns_have_no_nulls(tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        for field in table.schema:
            if not field.nullable:
                assert table.column(field.name).null_count == 0, (name, field.name)


# --------------------------------------------------------------- plausibility


def test_health_record_values(tables: dict[str, pa.Table]) -> None:
    table = tables["health_records"]
    times = _column(table, "diagnosis_time")
    assert min(times) >= datetime(2023, 1, 1) and max(times) < datetime(2025, 1, 1)
    daytime = sum(8 <= t.hour < 18 for t in times) / len(times)
    assert daytime > 0.6
    for when, birth in zip(times, _column(table, "birth_date"), strict=True):
        assert birth <= when.date()
        assert (when.date() - birth).days < 97 * 366
    for column, prefix, digits in [
        ("imaging_number", "MYIMG", 8),
        ("surgery_record_number", "SS", 7),
    ]:
        for value, when in zip(_column(table, column), times, strict=True):
            if value is not None:
                assert re.fullmatch(rf"{prefix}{when.year}[0-9]{{{digits}}}", value), value
    assert set(_column(table, "sex")) == {"M", "F"}
    assert pc.min(table.column("dosage_mg")).as_py() > 0
    amounts = table.column("settlement_amount")
    assert pc.min(amounts).as_py() > 0
    assert pc.max(amounts).as_py() > 50 * pc.approximate_median(amounts).as_py()
    assert all(round(v, 2) == v for v in amounts.to_pylist())
    codes = table.column("icd11_code").value_counts().to_pylist()
    assert 30 <= len(codes) <= 60
    assert max(c["counts"] for c in codes) > 5 * min(c["counts"] for c in codes)
    breast_cancer = pc.equal(table.column("icd11_code"), "2C61")
    assert set(_column(table.filter(breast_cancer), "sex")) == {"F"}


def test_enterprise_values(tables: dict[str, pa.Table]) -> None:
    table = tables["enterprise_credit"]
    for name in _column(table, "enterprise_name"):
        assert re.fullmatch(r"[\u4e00-\u9fff]{2}[\u4e00-\u9fff]+(股份)?有限公司", name), name
    for equity in _column(table, "equity_structure"):
        holders = [part.split(":") for part in equity.split(";")]
        assert 1 <= len(holders) <= 4
        assert sum(int(share.rstrip("%")) for _, share in holders) == 100, equity
    for count, amount in zip(
        _column(table, "penalty_count"), _column(table, "penalty_amount"), strict=True
    ):
        assert count >= 0
        assert (amount == 0) == (count == 0)
    counts = _column(table, "penalty_count")
    assert counts.count(0) > 0.7 * len(counts)
    established = _column(table, "established_date")
    assert min(established) >= date(1990, 1, 1) and max(established) <= date(2024, 12, 31)
    assert pc.min(table.column("registered_capital")).as_py() > 0


def test_bus_values(tables: dict[str, pa.Table]) -> None:
    table = tables["bus_ridership"]
    hours = table.column("hour")
    assert pc.min(hours).as_py() >= 6 and pc.max(hours).as_py() <= 22
    dates = _column(table, "service_date")
    assert min(dates) >= date(2024, 1, 1) and max(dates) <= date(2024, 12, 31)
    peak = pc.is_in(hours, pa.array([7, 8, 18], pa.int8()))
    off_peak = pc.is_in(hours, pa.array([11, 14, 21], pa.int8()))
    boardings = table.column("boardings")
    peak_mean = pc.mean(pc.filter(boardings, peak)).as_py()
    assert peak_mean > 1.5 * pc.mean(pc.filter(boardings, off_peak)).as_py()
    stations_per_line: dict[str, set[str]] = {}
    for line, station in zip(_column(table, "line"), _column(table, "station"), strict=True):
        stations_per_line.setdefault(line, set()).add(station)
    assert "K1" in stations_per_line
    assert all(len(stations) <= 30 for stations in stations_per_line.values())


def test_social_insurance_values(tables: dict[str, pa.Table]) -> None:
    table = tables["social_insurance"]
    assert set(_column(table, "insurance_type")) == INSURANCE_TYPES
    base = table.column("contribution_base")
    assert pc.min(base).as_py() >= 3000 and pc.max(base).as_py() <= 25000
    snapshot = date(2024, 12, 31)
    for card, months in zip(_column(table, "id_card"), _column(table, "months_paid"), strict=True):
        age = (snapshot - parse_id_card(card).birth_date).days // 365
        assert 0 <= months <= min(480, 12 * (age + 1)), (card, months)
    benefits = _column(table, "benefit_amount")
    assert min(benefits) >= 0
    assert 0.05 < sum(b > 0 for b in benefits) / len(benefits) < 0.5
    resident = pc.is_in(
        table.column("insurance_type"), pa.array(["城乡居民基本养老保险", "城乡居民基本医疗保险"])
    )
    employers = table.column("employer_credit_code")
    assert pc.all(pc.equal(resident, pc.is_null(employers))).as_py()


# ----------------------------------------------------------------- atomicity


def _fail_after_first_chunk() -> Callable[[str, int, int], None]:
    def progress(dataset: str, done: int, total: int) -> None:
        raise RuntimeError(f"interrupted {dataset} at {done}/{total}")

    return progress


def test_progress_is_reported_after_each_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demodata.generator, "CHUNK_ROWS", 4_000)
    calls: list[tuple[str, int, int]] = []
    demodata.generate(
        tmp_path,
        rows=10_000,
        datasets=["bus_ridership", "enterprise_credit"],
        progress=lambda *args: calls.append(args),
    )
    assert calls == [
        ("bus_ridership", 4_000, 10_000),
        ("bus_ridership", 8_000, 10_000),
        ("bus_ridership", 10_000, 10_000),
        ("enterprise_credit", 500, 500),
    ]


def test_interrupted_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demodata.generator, "CHUNK_ROWS", 2_000)
    with pytest.raises(RuntimeError, match="interrupted health_records at 2000/10000"):
        demodata.generate(
            tmp_path, rows=10_000, datasets=["health_records"], progress=_fail_after_first_chunk()
        )
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demodata.generator, "CHUNK_ROWS", 2_000)
    previous = tmp_path / "social_insurance.parquet"
    previous.write_bytes(b"an older generation")
    with pytest.raises(RuntimeError):
        demodata.generate(
            tmp_path,
            rows=10_000,
            datasets=["social_insurance"],
            progress=_fail_after_first_chunk(),
        )
    assert previous.read_bytes() == b"an older generation"
    assert [p.name for p in tmp_path.iterdir()] == ["social_insurance.parquet"]
