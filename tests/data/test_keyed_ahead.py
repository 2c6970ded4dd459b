"""The helper process that masks a view's keyed columns from the last batch backwards.

Every build here runs twice, with the helper and without it, and the two views must hold
the same rows in the same order. Batches of 256 rows over row groups of 700 rows make
pass 2's batches cross row-group boundaries, which the helper must cut alike. The
helper is a real process reading the raw file through the build's descriptor; the tests
make it finish before pass 2 starts (so pass 2 takes its batches), or drop part of its
work, kill it or contradict it, and check that pass 2 then masks the rest itself.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shuyu_platform.data import demodata, keyed_ahead, views
from shuyu_platform.data.keyed_ahead import Job, KeyedAhead, keyed_fields
from shuyu_platform.data.masking import tenant_key
from shuyu_platform.data.policy import DatasetPolicy, load_policies, load_policy
from shuyu_platform.data.views import build_view, generalisation_levels
from view_policies import date_shift_policy, lenient

REPO = Path(__file__).resolve().parents[2]
ROWS = 5000
KEY = tenant_key(b"platform-master-secret-for-tests", "kangning")
BUILT_ON = date(2026, 6, 15)
GROUP_ROWS = 700
BATCH_ROWS = 256


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo datasets, rewritten in row groups of ``GROUP_ROWS`` rows."""
    folder = tmp_path_factory.mktemp("raw")
    paths = demodata.generate(folder, rows=ROWS, seed=20240501)
    for path in paths.values():
        table = pq.read_table(path)
        pq.write_table(table, path, row_group_size=GROUP_ROWS)
    return paths


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "BATCH_ROWS", BATCH_ROWS)


class Helpers:
    """The helpers the builds of one test started, and what pass 2 took from them."""

    def __init__(self) -> None:
        self.started: list[KeyedAhead] = []
        self.taken = 0
        self.masked_here = 0


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Helpers]]:
    """``helpers(on_start)``: let builds start a helper on any file, call ``on_start(ahead)``
    right after each start, and count the batches pass 2 takes and masks itself."""

    def install(on_start: Callable[[KeyedAhead], None] | None = None) -> Helpers:
        seen = Helpers()
        monkeypatch.setattr(keyed_ahead, "MIN_ROWS", 0)
        start, take = KeyedAhead.start.__func__, KeyedAhead.take  # type: ignore[attr-defined]

        def started(cls: type[KeyedAhead], **options: Any) -> KeyedAhead | None:
            ahead = start(cls, **options)
            assert ahead is not None
            seen.started.append(ahead)
            if on_start is not None:
                on_start(ahead)
            return ahead

        def taken(self: KeyedAhead, table: pa.Table) -> dict[str, pa.Array] | None:
            ready = take(self, table)
            if ready is None:
                seen.masked_here += 1
            else:
                seen.taken += 1
            return ready

        monkeypatch.setattr(KeyedAhead, "start", classmethod(started))
        monkeypatch.setattr(KeyedAhead, "take", taken)
        return seen

    yield install


def finish(ahead: KeyedAhead) -> None:
    """Wait until the helper has masked every batch (nobody has claimed one yet)."""
    assert ahead._process.wait(timeout=60) == 0


def build(policy: DatasetPolicy, raw_path: Path, out: Path, **options: Any) -> pa.Table:
    build_view(
        lenient(policy),
        raw_path,
        out,
        key=KEY,
        fields=list(policy.visible_fields()),
        reference_date=BUILT_ON,
        **options,
    )
    return pq.read_table(out)


def plain(policy: DatasetPolicy, raw_path: Path, tmp_path: Path, **options: Any) -> pa.Table:
    """The view built with no helper, as every small file is."""
    assert keyed_ahead.MIN_ROWS > ROWS
    return build(policy, raw_path, tmp_path / "plain.parquet", **options)


# ======================================================================== same view


CASES = {
    "pseudonyms": ("health_records", {}),
    "pseudonyms, filtered": ("health_records", {"row_filter": {"district": ["涪城区", "游仙区"]}}),
    "noise per person": ("social_insurance", {}),
}


@pytest.mark.parametrize("case", CASES)
def test_the_helper_gives_the_view_pass_2_would_have_made(
    case: str,
    raw: dict[str, Path],
    policies: dict[str, DatasetPolicy],
    tmp_path: Path,
    helpers: Callable[..., Helpers],
) -> None:
    dataset, options = CASES[case]
    policy = policies[dataset]
    expected = plain(policy, raw[dataset], tmp_path, **options)
    seen = helpers(finish)
    view = build(policy, raw[dataset], tmp_path / "view.parquet", **options)
    assert view.equals(expected)
    assert seen.taken == -(-ROWS // BATCH_ROWS) and seen.masked_here == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.parquet", "view.parquet"]


def test_date_shifts_per_person_come_from_the_helper_alike(
    raw: dict[str, Path], tmp_path: Path, helpers: Callable[..., Helpers]
) -> None:
    policy = date_shift_policy(tmp_path)
    expected = plain(policy, raw["health_records"], tmp_path, k=1)
    seen = helpers(finish)
    view = build(policy, raw["health_records"], tmp_path / "view.parquet", k=1)
    assert view.equals(expected)
    assert seen.taken > 0 and seen.masked_here == 0


def test_pass_2_masks_what_the_helper_has_not_reached(
    raw: dict[str, Path],
    policies: dict[str, DatasetPolicy],
    tmp_path: Path,
    helpers: Callable[..., Helpers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The helper's first half of the batches is dropped, as if it had not got there."""
    policy = policies["health_records"]
    expected = plain(policy, raw["health_records"], tmp_path)
    batches = -(-ROWS // BATCH_ROWS)
    drain = KeyedAhead._drain

    def late(self: KeyedAhead) -> None:
        drain(self)
        for index in range(batches // 2):
            self._finished.pop(index, None)

    monkeypatch.setattr(KeyedAhead, "_drain", late)
    seen = helpers(finish)
    view = build(policy, raw["health_records"], tmp_path / "view.parquet")
    assert view.equals(expected)
    assert (seen.masked_here, seen.taken) == (batches // 2, batches - batches // 2)


# ====================================================================== falling back


def test_a_batch_that_is_not_pass_2s_batch_is_not_taken(
    raw: dict[str, Path],
    policies: dict[str, DatasetPolicy],
    tmp_path: Path,
    helpers: Callable[..., Helpers],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pass 2 sees other edges than the helper reported: it masks everything itself."""
    policy = policies["health_records"]
    expected = plain(policy, raw["health_records"], tmp_path)
    monkeypatch.setattr(keyed_ahead, "_edges", lambda table, columns: "[0]")
    seen = helpers(finish)
    with caplog.at_level(logging.WARNING, logger=keyed_ahead.__name__):
        view = build(policy, raw["health_records"], tmp_path / "view.parquet")
    assert view.equals(expected)
    assert seen.taken == 0
    assert "is not pass 2's batch" in caplog.text
    assert not list(tmp_path.glob(".*"))


def test_a_killed_helper_leaves_pass_2_to_mask_alone(
    raw: dict[str, Path],
    policies: dict[str, DatasetPolicy],
    tmp_path: Path,
    helpers: Callable[..., Helpers],
) -> None:
    policy = policies["social_insurance"]
    expected = plain(policy, raw["social_insurance"], tmp_path)

    def kill(ahead: KeyedAhead) -> None:
        ahead._process.kill()
        ahead._process.wait(timeout=10)

    seen = helpers(kill)
    view = build(policy, raw["social_insurance"], tmp_path / "view.parquet")
    assert view.equals(expected)
    assert seen.taken == 0 and seen.masked_here > 0


def test_a_raw_file_replaced_mid_build_feeds_the_helper_nothing(
    raw: dict[str, Path],
    policies: dict[str, DatasetPolicy],
    tmp_path: Path,
    helpers: Callable[..., Helpers],
) -> None:
    """The helper reads the build's open file, not whatever the path names afterwards."""
    policy = policies["health_records"]
    path = tmp_path / "health_records.parquet"
    path.write_bytes(raw["health_records"].read_bytes())
    expected = plain(policy, path, tmp_path)
    other = pq.read_table(raw["health_records"])
    other = other.set_column(0, "person_id", pa.array([f"X{i:09d}" for i in range(len(other))]))
    swapped = tmp_path / "swapped.parquet"
    pq.write_table(other, swapped, row_group_size=GROUP_ROWS)

    def swap(ahead: KeyedAhead) -> None:
        os.replace(swapped, path)  # before the helper has opened anything
        finish(ahead)

    seen = helpers(swap)
    view = build(policy, path, tmp_path / "view.parquet")
    assert view.equals(expected)
    assert seen.taken > 0


def test_a_killed_builds_scratch_folder_goes_with_the_next_build(
    raw: dict[str, Path], policies: dict[str, DatasetPolicy], tmp_path: Path
) -> None:
    out = tmp_path / "view.parquet"
    stale = tmp_path / ".view.parquet.tmp-999999999-0a1b2c3d.keyed"
    stale.mkdir()
    (stale / "3.arrow").write_bytes(b"left by a killed build")
    build(policies["health_records"], raw["health_records"], out)
    assert not stale.exists()


# ===================================================================== the helper


@pytest.mark.parametrize("batch_rows", [100, 256, 700, 1500])
def test_the_helpers_batches_are_pass_2s_batches(raw: dict[str, Path], batch_rows: int) -> None:
    """Batch i of any row-group order is what ``iter_batches`` gives pass 2 as its i-th."""
    parquet = pq.ParquetFile(raw["health_records"])
    order = [5, 0, 7, 2, 1, 6, 4, 3]
    assert parquet.num_row_groups == len(order)
    job = Job(
        fd=-1,
        policy=load_policy(REPO / "policies" / "health_records.yaml"),
        fields=("person_id",),
        columns=("person_id", "district"),
        key=KEY,
        reference_date=BUILT_ON,
        filters={},
        row_groups=tuple(order),
        batch_rows=batch_rows,
        folder="",
    )
    cutter = keyed_ahead._Batches(parquet, job)
    expected = list(
        parquet.iter_batches(batch_size=batch_rows, columns=list(job.columns), row_groups=order)
    )
    assert cutter.count == len(expected)
    for index in reversed(range(cutter.count)):
        assert cutter.batch(index).equals(pa.Table.from_batches([expected[index]]))


def test_the_helper_stops_at_the_batch_pass_2_has_reached(
    raw: dict[str, Path], tmp_path: Path
) -> None:
    policy = load_policy(REPO / "policies" / "health_records.yaml")
    source = pa.OSFile(str(raw["health_records"]))
    parquet = pq.ParquetFile(source)
    job = Job(
        fd=source.fileno(),
        policy=policy,
        fields=("person_id",),
        columns=("person_id",),
        key=KEY,
        reference_date=BUILT_ON,
        filters={},
        row_groups=tuple(range(parquet.num_row_groups)),
        batch_rows=BATCH_ROWS,
        folder=str(tmp_path),
    )
    count = -(-ROWS // BATCH_ROWS)
    # Once the helper has masked the last three batches, pass 2 says it has begun the
    # one before them.
    claims = itertools.chain([-1, -1, -1], itertools.repeat(count - 4))

    class Lines(list[str]):
        def write(self, text: str) -> None:
            self.append(text)

        def flush(self) -> None:
            pass

    out = Lines()
    keyed_ahead.run(job, claims, out)  # type: ignore[arg-type]
    source.close()
    assert sorted(int(p.stem) for p in tmp_path.iterdir()) == [count - 3, count - 2, count - 1]
    assert len(out) == 3


def test_only_fields_masked_alike_at_every_level_are_masked_ahead(tmp_path: Path) -> None:
    policy = date_shift_policy(tmp_path)
    names = list(policy.visible_fields())
    assert keyed_fields([policy], names) == [
        "person_id",
        "birth_date",
        "diagnosis_time",
        "surgery_record_number",
    ]
    levels = generalisation_levels(policy, names)
    assert len(levels) > 1
    changed = [
        n for n in names if any(lv.fields[n].masking != policy.fields[n].masking for lv in levels)
    ]
    assert set(keyed_fields(levels, names)) == {
        "person_id",
        "birth_date",
        "diagnosis_time",
        "surgery_record_number",
    } - set(changed)
