"""Masked views built from the demo datasets: what they hold, and what they never hold.

The demo generator writes the four raw datasets once per module; each test builds views
of them into its own folder. The strongest check scans every view, byte by byte and
cell by cell, for every raw direct identifier of every dataset.

The policies' risk limits (share of rows suppressed, average risk) are tuned for the
demo's 100,000 rows; at this module's 4,000 rows most classes are small, so
:func:`build` relaxes the limits unless asked not to. k-anonymity and l-diversity are
enforced all the same (by suppression); tests of the limits themselves are in
``test_risk.py`` and ``tests/security/test_reidentification.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shuyu_platform.data import demodata, masking, views
from shuyu_platform.data.masking import tenant_key
from shuyu_platform.data.policy import (
    DatasetPolicy,
    MicroaggregateMasking,
    load_policies,
)
from shuyu_platform.data.views import ViewBuildError, ViewReport, build_view, generalisation_levels
from view_policies import date_shift_policy, lenient

REPO = Path(__file__).resolve().parents[2]
ROWS = 4000
SEED = 20240501
SECRET = b"platform-master-secret-for-tests"
KEY = tenant_key(SECRET, "kangning")
OTHER_KEY = tenant_key(SECRET, "huaxin")
BUILT_ON = date(2026, 6, 15)


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four raw demo datasets, ``ROWS`` rows each (enterprise_credit: ``ROWS // 20``)."""
    return demodata.generate(tmp_path_factory.mktemp("raw"), rows=ROWS, seed=SEED)


def build(
    policy: DatasetPolicy,
    raw_path: Path,
    out_path: Path,
    *,
    fields: Iterable[str] | None = None,
    key: bytes = KEY,
    strict: bool = False,
    **options: Any,
) -> ViewReport:
    """Build a view of ``fields`` (default: every visible field), with the policy's risk
    limits relaxed (see the module docstring) unless ``strict``."""
    return build_view(
        policy if strict else lenient(policy),
        raw_path,
        out_path,
        key=key,
        fields=list(policy.visible_fields() if fields is None else fields),
        reference_date=BUILT_ON,
        **options,
    )


# ================================================================= identifier scanning


def identifier_values(policies: dict[str, DatasetPolicy], raw: dict[str, Path]) -> set[bytes]:
    """Every distinct raw value of every direct identifier or L4 field, UTF-8 encoded."""
    values: set[bytes] = set()
    for name, policy in policies.items():
        secret = [n for n, f in policy.fields.items() if f.identifier or f.grade == "L4"]
        if not secret:
            continue
        table = pq.read_table(raw[name], columns=secret)
        for column in table.columns:
            values.update(v.encode() for v in pc.unique(column).to_pylist() if v)
    return values


def find(blob: bytes, needles: set[bytes]) -> set[bytes]:
    """The ``needles`` that occur anywhere in ``blob`` (every window of every length)."""
    data = np.frombuffer(blob, dtype=np.uint8)
    by_length: dict[int, list[bytes]] = defaultdict(list)
    for needle in needles:
        by_length[len(needle)].append(needle)
    found: set[bytes] = set()
    for length, group in by_length.items():
        if data.size < length:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(data, length)
        as_bytes = np.ascontiguousarray(windows).view(f"S{length}").ravel()
        hits = np.isin(as_bytes, np.array(group, dtype=f"S{length}"))
        found.update(as_bytes[hits].tolist())
    return found


def cell_text(path: Path) -> bytes:
    """Every string cell, column name and metadata value of a Parquet file, NUL-separated."""
    table = pq.read_table(path)
    parts: list[str] = list(table.column_names)
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            parts.extend(value for value in column.to_pylist() if value is not None)
    for key, value in (table.schema.metadata or {}).items():
        parts.append(key.decode("utf-8", "replace") + value.decode("utf-8", "replace"))
    return "\x00".join(parts).encode()


def test_the_scanner_finds_identifiers_in_unmasked_data(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    needles = identifier_values(policies, raw)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pq.read_table(raw["health_records"]), plain, compression="none")
    # Names, ID cards, phones and person ids of every row.
    assert len(find(plain.read_bytes(), needles)) > 3 * ROWS
    assert len(find(cell_text(plain), needles)) > 3 * ROWS


@pytest.mark.parametrize("dataset", demodata.DATASETS)
def test_no_raw_identifier_appears_anywhere_in_a_view(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path, dataset: str
) -> None:
    needles = identifier_values(policies, raw)
    assert len(needles) > 4 * ROWS
    policy = policies[dataset]
    plain = build(policy, raw[dataset], tmp_path / "plain.parquet", k=1, compression="none")
    packed = build(policy, raw[dataset], tmp_path / "packed.parquet")
    assert plain.rows_out == plain.rows_in  # k = 1: every raw row is in the view
    for report in (plain, packed):
        assert not find(report.out_path.read_bytes(), needles)
        assert not find(cell_text(report.out_path), needles)


def test_no_key_material_in_a_view(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    report = build(policies["health_records"], raw["health_records"], tmp_path / "v.parquet")
    blob = report.out_path.read_bytes()
    for secret in (SECRET, KEY):
        assert secret not in blob
        assert secret.hex().encode() not in blob


# ====================================================================== what is shown


def test_a_view_holds_the_masked_fields_and_says_how_it_was_built(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    policy = policies["health_records"]
    report = build(policy, raw["health_records"], tmp_path / "health.parquet")
    view = pq.read_table(report.out_path)
    assert view.column_names == list(policy.visible_fields())
    assert report.fields == tuple(policy.visible_fields())
    assert view.num_rows == report.rows_out > 0
    assert report.rows_in == ROWS
    assert report.rows_in == report.rows_filtered_out + report.rows_suppressed + report.rows_out
    assert report.raw_sha256 == hashlib.sha256(raw["health_records"].read_bytes()).hexdigest()
    assert report.view_sha256 == hashlib.sha256(report.out_path.read_bytes()).hexdigest()
    assert report.k == 5 and report.quasi_identifiers == policy.privacy.quasi_identifiers
    assert report.elapsed_seconds > 0
    json.dumps(report.as_dict())
    assert report.risk is not None and report.risk.records == report.rows_out

    tokens = view.column("person_id").to_pylist()
    assert all(t.startswith("P-") and len(t) == 2 + masking.TOKEN_CHARS for t in tokens)
    assert len(set(tokens)) == len(tokens)
    assert set(pc.day(view.column("birth_date")).to_pylist()) == {1}
    assert set(pc.month(view.column("birth_date")).to_pylist()) == {1}
    level = generalisation_levels(policy, report.fields)[report.risk.level]
    bands = level.fields["settlement_amount"].masking
    assert set(view.column("settlement_amount").to_pylist()) <= set(bands.values)

    metadata = pq.ParquetFile(report.out_path).metadata.metadata
    assert metadata[b"shuyu.dataset"] == b"health_records"
    assert metadata[b"shuyu.policy_version"] == b"1"
    assert json.loads(metadata[b"shuyu.fields"]) == list(policy.visible_fields())
    assert metadata[b"shuyu.k_anonymity"] == b"5"
    assert metadata[b"shuyu.raw_sha256"] == report.raw_sha256.encode()
    assert metadata[b"shuyu.rows"] == str(report.rows_out).encode()
    assert metadata[b"shuyu.reference_date"] == b"2026-06-15"
    assert b"shuyu.built_at" in metadata
    assert metadata[b"shuyu.row_order"] == b"keyed-random"
    assert json.loads(metadata[b"shuyu.risk"]) == json.loads(json.dumps(report.risk.as_dict()))


def test_extra_metadata_is_written_but_cannot_override(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    policy, path = policies["bus_ridership"], raw["bus_ridership"]
    report = build(policy, path, tmp_path / "bus.parquet", metadata={"shuyu.tenant": "kangning"})
    metadata = pq.ParquetFile(report.out_path).metadata.metadata
    assert metadata[b"shuyu.tenant"] == b"kangning"
    with pytest.raises(ValueError, match=r"shuyu\.k_anonymity"):
        build(policy, path, tmp_path / "b2.parquet", metadata={"shuyu.k_anonymity": "1"})


@pytest.mark.parametrize("dataset", ["health_records", "enterprise_credit", "social_insurance"])
def test_no_quasi_identifier_class_is_smaller_than_k(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path, dataset: str
) -> None:
    policy = policies[dataset]
    k = policy.privacy.k_anonymity
    report = build(policy, raw[dataset], tmp_path / "view.parquet")
    qis = list(policy.privacy.quasi_identifiers)
    assert report.quasi_identifiers == tuple(qis)

    view = pq.read_table(report.out_path).to_pandas()
    sizes = view.groupby(qis, dropna=False).size()
    assert len(view) == report.rows_out
    assert sizes.empty or sizes.min() >= k

    # The same counts, computed independently over the whole table masked at the level
    # the build chose; every class below k (or below l) is gone, every other one kept.
    assert report.risk is not None
    level = generalisation_levels(policy, report.fields)[report.risk.level]
    masked = masking.mask_table(
        pq.read_table(raw[dataset]), level, report.fields, key=KEY, reference_date=BUILT_ON
    ).to_pandas()
    grouped = masked.groupby(qis, dropna=False)
    small = grouped.size() < k
    for sensitive in policy.privacy.sensitive_attributes:
        diversity = policy.privacy.l_diversity
        assert diversity is not None
        small |= grouped[sensitive].nunique(dropna=False) < diversity.l
    suppressed = grouped.size()[small]
    assert report.classes_suppressed == len(suppressed)
    assert report.rows_suppressed == suppressed.sum()
    assert report.rows_out == len(masked) - suppressed.sum()


def test_microaggregated_amount_does_not_single_out_an_insider_s_customer(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    """An insurer knows each customer's exact settlement amount. With the amount
    microaggregated (k = 5) it finds at least five candidate rows for every customer,
    with at least three diagnoses among them (the policy's l-diversity)."""
    policy = policies["health_records"]
    amount = policy.fields["settlement_amount"].with_masking(
        MicroaggregateMasking(rule="microaggregate", k=5, to=0.01)
    )
    amount = amount.model_copy(update={"hierarchy": []})
    policy = policy.model_copy(update={"fields": {**policy.fields, "settlement_amount": amount}})
    fields = ["settlement_amount", "icd11_code"]
    report = build(policy, raw["health_records"], tmp_path / "view.parquet", fields=fields)
    view = pq.read_table(report.out_path).to_pandas()
    source = pq.read_table(raw["health_records"], columns=["settlement_amount"]).to_pandas()
    assert source["settlement_amount"].value_counts().eq(1).mean() > 0.5  # unique when exact
    candidates = view.groupby("settlement_amount")["icd11_code"]
    assert candidates.size().min() >= 5 and candidates.nunique().min() >= 3
    # Means keep the total close (within 10 %, suppressed rows included).
    assert report.rows_suppressed < 0.1 * report.rows_in
    assert abs(view["settlement_amount"].sum() / source["settlement_amount"].sum() - 1) < 0.1


def test_suppression_has_work_to_do_in_the_demo_data(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    report = build(policies["health_records"], raw["health_records"], tmp_path / "v.parquet")
    assert report.classes_suppressed > 0 and report.rows_suppressed > 0


def test_k_can_be_raised_or_switched_off(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    policy, path = policies["social_insurance"], raw["social_insurance"]
    off = build(policy, path, tmp_path / "off.parquet", k=1)
    assert off.rows_out == off.rows_in and off.rows_suppressed == 0
    strict = build(policy, path, tmp_path / "strict.parquet", k=12)
    qis = list(policy.privacy.quasi_identifiers)
    sizes = pq.read_table(strict.out_path).to_pandas().groupby(qis)
    assert sizes.size().min() >= 12
    assert strict.rows_suppressed > 0
    with pytest.raises(ValueError, match="k must be"):
        build(policy, path, tmp_path / "bad.parquet", k=0)


def test_null_quasi_identifiers_form_their_own_class(
    policies: dict[str, DatasetPolicy], tmp_path: Path
) -> None:
    policy = policies["social_insurance"]
    table = pa.table(
        {
            "insured_id": [f"SI{n:014d}" for n in range(12)],
            "insurance_type": ["失业保险"] * 12,
            "contribution_base": [4000.0] * 12,
            "months_paid": [120] * 12,
            "district": [None] * 3 + ["涪城区"] * 9,
        }
    )
    path = tmp_path / "social_insurance.parquet"
    pq.write_table(table, path)
    report = build(policy, path, tmp_path / "view.parquet", fields=list(table.column_names), k=5)
    assert report.rows_suppressed == 3 and report.classes_suppressed == 1
    assert pq.read_table(report.out_path).column("district").null_count == 0


# ========================================================================= stability


def test_pseudonyms_are_stable_across_rebuilds_and_differ_between_tenants(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    policy, path = policies["health_records"], raw["health_records"]
    first = build(policy, path, tmp_path / "first.parquet", k=1)
    again = build(policy, path, tmp_path / "again.parquet", k=1)
    other = build(policy, path, tmp_path / "other.parquet", k=1, key=OTHER_KEY)
    ids = [pq.read_table(r.out_path).column("person_id").to_pylist() for r in (first, again, other)]
    assert ids[0] == ids[1]
    assert not set(ids[0]) & set(ids[2])
    assert pq.read_table(first.out_path).equals(pq.read_table(again.out_path))


def test_date_shift_is_stable_per_person(raw: dict[str, Path], tmp_path: Path) -> None:
    policy = date_shift_policy(tmp_path)
    path = raw["health_records"]
    fields = ["person_id", "birth_date", "diagnosis_time"]
    source = pq.read_table(path, columns=fields).to_pandas()

    def offsets(key: bytes, name: str) -> pd.DataFrame:
        report = build(policy, path, tmp_path / name, fields=fields, key=key, k=1)
        view = pq.read_table(report.out_path).to_pandas()
        # Views are written in a keyed random order: line rows up by person.
        tokens = masking.mask_column(
            "person_id", pa.array(source["person_id"]), policy.fields["person_id"], key=key
        ).to_pylist()
        view = view.set_index("person_id").loc[tokens].reset_index()
        birth = (view["birth_date"] - source["birth_date"]).map(lambda d: d.days)
        visit = (view["diagnosis_time"] - source["diagnosis_time"]).dt.days
        # One offset per person, for every date of that person.
        assert (birth == visit).all()
        assert birth.between(-30, 30).all()
        return pd.DataFrame({"person": view["person_id"], "offset": birth})

    first = offsets(KEY, "first.parquet")
    again = offsets(KEY, "again.parquet")
    other = offsets(OTHER_KEY, "other.parquet")
    assert first.equals(again)
    assert (first["offset"] != other["offset"]).mean() > 0.9
    assert first["offset"].nunique() > 50


# ========================================================================= row filter


def test_the_row_filter_keeps_only_matching_rows(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    policy, path = policies["social_insurance"], raw["social_insurance"]
    wanted = ["涪城区", "游仙区"]
    report = build(policy, path, tmp_path / "v.parquet", k=1, row_filter={"district": wanted})
    view = pq.read_table(report.out_path)
    assert set(view.column("district").to_pylist()) == set(wanted)
    districts = pq.read_table(path, columns=["district"]).column("district")
    matching = pc.sum(pc.is_in(districts, pa.array(wanted))).as_py()
    assert report.rows_out == matching == view.num_rows
    assert report.rows_filtered_out == ROWS - matching
    assert report.row_filter == {"district": wanted}


def test_the_row_filter_may_use_columns_outside_the_view(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    policy, path = policies["health_records"], raw["health_records"]
    report = build(
        policy,
        path,
        tmp_path / "v.parquet",
        fields=["person_id", "district"],
        k=1,
        row_filter={"sex": ["F"], "birth_date": ["1964-11-18", date(1998, 10, 13)]},
    )
    source = pq.read_table(path, columns=["sex", "birth_date"]).to_pandas()
    expected = (source["sex"] == "F") & source["birth_date"].isin(
        [date(1964, 11, 18), date(1998, 10, 13)]
    )
    assert report.rows_out == expected.sum()
    assert pq.read_table(report.out_path).column_names == ["person_id", "district"]


def test_a_filter_that_matches_nothing_gives_an_empty_view(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    policy, path = policies["health_records"], raw["health_records"]
    report = build(policy, path, tmp_path / "v.parquet", row_filter={"district": []})
    view = pq.read_table(report.out_path)
    assert report.rows_out == view.num_rows == 0
    assert report.rows_filtered_out == ROWS
    assert view.column_names == list(policy.visible_fields())


@pytest.mark.parametrize(
    ("row_filter", "message"),
    [
        ({"county": ["涪城区"]}, "'county' is not a column"),
        ({"district": "涪城区"}, "sequence of values"),
        ({"birth_date": ["not a date"]}, "'birth_date'"),
    ],
)
def test_a_malformed_row_filter_is_refused(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    tmp_path: Path,
    row_filter: dict[str, Any],
    message: str,
) -> None:
    out = tmp_path / "v.parquet"
    with pytest.raises(ValueError, match=message):
        build(policies["health_records"], raw["health_records"], out, row_filter=row_filter)
    assert not list(tmp_path.iterdir())


# ============================================================================= errors


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["person_id", "name"], r"'name'.*L4"),
        (["id_card"], r"'id_card'.*L4"),
        (["phone", "sex"], r"'phone'.*L4"),
        (["diagnosis"], r"no field 'diagnosis'"),
    ],
)
def test_forbidden_or_unknown_fields_are_refused(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    tmp_path: Path,
    fields: list[str],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        build(
            policies["health_records"], raw["health_records"], tmp_path / "v.parquet", fields=fields
        )
    assert not list(tmp_path.iterdir())


def test_a_field_missing_from_the_raw_file_is_named(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    path = tmp_path / "health_records.parquet"
    pq.write_table(pq.read_table(raw["health_records"]).drop_columns(["icd11_code"]), path)
    with pytest.raises(ValueError, match=r"'icd11_code'.*not a column of health_records.parquet"):
        build(policies["health_records"], path, tmp_path / "v.parquet")


def test_a_view_never_overwrites_its_raw_file(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path]
) -> None:
    path = raw["bus_ridership"]
    with pytest.raises(ValueError, match="overwrite"):
        build(policies["bus_ridership"], path, path)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: b"this is not a Parquet file\n" * 40,
        lambda data: data[: len(data) // 2],
        lambda data: data[:2000] + bytes(30000) + data[32000:],
        lambda data: b"",
    ],
    ids=["text", "truncated", "damaged-pages", "empty"],
)
def test_a_corrupt_raw_file_is_a_specific_error_and_writes_nothing(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path, corrupt: Any
) -> None:
    policy = policies["health_records"]
    good = build(policy, raw["health_records"], tmp_path / "views" / "health_records.parquet")
    before = good.out_path.read_bytes()
    bad = tmp_path / "raw" / "health_records.parquet"
    bad.parent.mkdir()
    bad.write_bytes(corrupt(raw["health_records"].read_bytes()))
    with pytest.raises(ViewBuildError, match=r"health_records\.parquet is not a readable Parquet"):
        build(policy, bad, good.out_path)
    assert good.out_path.read_bytes() == before
    assert os.listdir(good.out_path.parent) == [good.out_path.name]


def test_a_missing_raw_file_is_a_specific_error(
    policies: dict[str, DatasetPolicy], tmp_path: Path
) -> None:
    with pytest.raises(ViewBuildError, match=r"health_records\.parquet does not exist"):
        build(
            policies["health_records"],
            tmp_path / "health_records.parquet",
            tmp_path / "v.parquet",
        )
    assert not list(tmp_path.iterdir())


# ======================================================================= atomicity


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read raw files in batches of 500 rows, so a build has many steps to fail in."""
    monkeypatch.setattr(views, "BATCH_ROWS", 500)


@pytest.mark.usefixtures("small_batches")
def test_a_build_interrupted_while_writing_leaves_the_previous_view(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = policies["health_records"]
    out = tmp_path / "views" / "health_records.parquet"
    previous = build(policy, raw["health_records"], out)
    assert pq.ParquetFile(out).metadata.num_row_groups > 2
    before = out.read_bytes()

    real_write = pq.ParquetWriter.write_table
    calls = []

    def failing_write(self: pq.ParquetWriter, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_write(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing_write)
    with pytest.raises(OSError, match="No space left"):
        build(policy, raw["health_records"], out, key=OTHER_KEY)
    assert len(calls) == 3
    assert out.read_bytes() == before
    assert hashlib.sha256(before).hexdigest() == previous.view_sha256
    assert os.listdir(out.parent) == [out.name]


@pytest.mark.usefixtures("small_batches")
def test_a_build_interrupted_while_masking_leaves_the_previous_view(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = policies["health_records"]
    out = tmp_path / "health_records.parquet"
    build(policy, raw["health_records"], out)
    before = out.read_bytes()
    real_mask = masking.mask_table
    calls = []

    def failing_mask(*args: Any, **kwargs: Any) -> pa.Table:
        calls.append(1)
        if len(calls) == 12:  # pass 1 has 8 batches: this is in pass 2
            raise KeyboardInterrupt
        return real_mask(*args, **kwargs)

    monkeypatch.setattr(masking, "mask_table", failing_mask)
    with pytest.raises(KeyboardInterrupt):
        build(policy, raw["health_records"], out, key=OTHER_KEY)
    assert out.read_bytes() == before
    assert os.listdir(out.parent) == [out.name]


def test_temporary_files_of_dead_builds_are_cleaned_up(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = tmp_path / f".bus.parquet.tmp-{int(finished.stdout)}-0badc0de"
    alive = tmp_path / f".bus.parquet.tmp-{os.getppid()}-0badc0de"
    dead.write_bytes(b"half a view")
    alive.write_bytes(b"another build still writing")
    build(policies["bus_ridership"], raw["bus_ridership"], tmp_path / "bus.parquet")
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, "bus.parquet"])


# ========================================================================= streaming


@pytest.mark.usefixtures("small_batches")
def test_a_build_streams_and_never_reads_a_whole_file(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def whole_file(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("read the whole file at once")

    monkeypatch.setattr(pq.ParquetFile, "read", whole_file)
    monkeypatch.setattr(pq, "read_table", whole_file)
    report = build(policies["health_records"], raw["health_records"], tmp_path / "v.parquet")
    # Rows are shuffled, then written in row groups of (here) 500 rows.
    assert pq.ParquetFile(report.out_path).metadata.num_row_groups == -(-report.rows_out // 500)


def test_progress_bars_are_shown_on_request(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    build(policies["health_records"], raw["health_records"], tmp_path / "v.parquet", progress=True)
    shown = capsys.readouterr().err
    assert "health_records: counting classes" in shown
    assert "health_records: writing view" in shown
    build(policies["health_records"], raw["health_records"], tmp_path / "w.parquet")
    assert capsys.readouterr().err == ""
