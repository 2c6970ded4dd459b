"""The privacy-unit check: counted out of core, right, once per file version.

The counts are compared with a plain in-memory Polars group-by on the same file. The
operator-side attack is a raw file swapped for one that breaks the promise while the
platform keeps a record saying the old one was fine: it must be counted again, even when
the new file has the old one's size, inode and modification time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shuyu_platform.dp import unit_check
from shuyu_platform.dp.unit_check import EngineError, check_file, most_rows_per_unit, record_path

MIB = 1024**2


def _write(path: Path, ids: list[int]) -> None:
    """A file whose byte size depends only on the row count (plain, uncompressed ints)."""
    table = pa.table({"person_id": pa.array(ids, pa.int64())})
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)


def _truth(path: Path, unit: str) -> int:
    return int(pl.read_parquet(path).group_by(unit).len()["len"].max())


@pytest.mark.parametrize("memory_limit", [unit_check.DEFAULT_MEMORY_LIMIT, 16 * 1024])
def test_the_streamed_count_equals_an_in_memory_group_by(tmp_path: Path, memory_limit: int) -> None:
    """One pass or many (a tiny limit forces one pass per hash partition): same worst."""
    path = tmp_path / "raw.parquet"
    ids = [f"P{i % 7_000:011d}" for i in range(20_000)] + ["P00000000042"] * 5
    pl.DataFrame({"person_id": ids}).write_parquet(path, row_group_size=3_000)
    rows = len(ids)
    assert most_rows_per_unit(path, "person_id", rows, memory_limit) == _truth(path, "person_id")


def test_longest_run_spans_the_steps_it_is_scanned_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    monkeypatch.setattr(unit_check, "_RUN_STEP", 4)
    values = np.array([1, 2, 2, 2, 2, 2, 2, 3, 4, 4, 5], dtype=np.uint64)
    assert unit_check.longest_run(values) == 6
    assert unit_check.longest_run(np.array([7], dtype=np.uint64)) == 1


def test_the_result_is_remembered_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new process (empty in-process cache) reads the record and counts nothing."""
    path = tmp_path / "raw.parquet"
    _write(path, list(range(1_000)))
    check_file(path, "person_id", 1)
    record = json.loads(record_path(path).read_text())
    assert record["worst"] == {"person_id": 1} and record["rows"] == 1_000

    unit_check._worst.cache_clear()  # as a restarted service

    def no_counting(*_: object) -> int:
        raise AssertionError("counted again although the record says this version is fine")

    monkeypatch.setattr(unit_check, "most_rows_per_unit", no_counting)
    check_file(path, "person_id", 1)


def test_a_file_rewritten_in_place_with_its_old_size_and_mtime_is_checked_again(
    tmp_path: Path,
) -> None:
    """The operator-side attack: same inode, size and mtime; only the ctime tells."""
    path = tmp_path / "raw.parquet"
    _write(path, list(range(1_000)))
    check_file(path, "person_id", 1)
    before = path.stat()
    bad = tmp_path / "bad.parquet"
    _write(bad, [*range(999), 0])  # person 0 twice
    assert bad.stat().st_size == before.st_size
    time.sleep(0.05)  # past the filesystem clock's tick, as any real swap is
    with open(path, "r+b") as handle:  # in place: the inode stays
        handle.write(bad.read_bytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    with pytest.raises(EngineError, match="one person_id has 2 rows"):
        check_file(path, "person_id", 1)


def test_a_replaced_file_is_checked_again_and_a_forged_record_does_not_help(
    tmp_path: Path,
) -> None:
    """A new file renamed over the old: new inode, so the old record no longer applies."""
    path = tmp_path / "raw.parquet"
    _write(path, list(range(1_000)))
    check_file(path, "person_id", 1)
    record = record_path(path).read_text()
    bad = tmp_path / "bad.parquet"
    _write(bad, [*range(998), 0, 0])  # person 0 three times
    os.replace(bad, path)
    record_path(path).write_text(record)  # the old "fine" record put back beside it
    with pytest.raises(EngineError, match="one person_id has 3 rows"):
        check_file(path, "person_id", 1)
    assert json.loads(record_path(path).read_text())["worst"] == {"person_id": 3}


def test_a_hash_collision_never_refuses_a_good_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value hashing alike looks like one unit with all rows; the exact recount saves it."""
    path = tmp_path / "raw.parquet"
    _write(path, list(range(50)))

    def one_hash(path: Path, unit: str, rows: int, part: int, *_: int):  # type: ignore[no-untyped-def]
        import numpy as np

        return np.zeros(rows if part == 0 else 0, dtype=np.uint64)

    monkeypatch.setattr(unit_check, "_hashes", one_hash)
    monkeypatch.setattr(pl.Expr, "hash", lambda self, seed: pl.lit(0, pl.UInt64))
    check_file(path, "person_id", 1)  # exact recount: every person has one row


def test_a_record_that_cannot_be_written_still_checks(tmp_path: Path) -> None:
    """The record's place is taken (as by a read-only raw zone): the check still runs."""
    path = tmp_path / "raw.parquet"
    _write(path, [1, 1])
    record_path(path).mkdir()
    with pytest.raises(EngineError, match="2 rows"):
        check_file(path, "person_id", 1)
    assert not list(tmp_path.glob("*.tmp-*"))


_PEAK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import polars as pl
    from shuyu_platform.dp.unit_check import check_file

    def peak_kib():
        # VmHWM, not getrusage's ru_maxrss: after exec that also counts the parent's peak
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    path, limit, how = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    warm = path.with_name("warm.parquet")  # loads the libraries' code and thread pools
    check_file(warm, "person_id", 1, limit)
    pl.scan_parquet(warm).group_by("person_id").len().collect(engine="streaming")
    with open("/proc/self/clear_refs", "w") as reset:  # peak RSS := RSS now (Linux >= 4.0)
        reset.write("5")
    base = peak_kib()
    if how == "check":
        check_file(path, "person_id", 1, limit)
    else:  # what the check used to do: a streaming group-by of the values
        pl.scan_parquet(path).group_by("person_id").len().select(pl.col("len").max()).collect(
            engine="streaming"
        )
    print((peak_kib() - base) * 1024)
    """
)


def _growth(path: Path, limit: int, how: str) -> int:
    """Bytes the peak RSS of a fresh process rose above its RSS before the work."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path), str(limit), how],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.strip())


@pytest.mark.slow
def test_the_check_of_millions_of_rows_keeps_under_a_low_memory_limit(tmp_path: Path) -> None:
    """4M distinct ids, a 128 MiB limit: two passes, and RSS grows by less than the limit.

    The same file's group-by of the values (the check as it was) grows RSS past it,
    which shows the measurement would catch a check that ignored the limit.
    """
    path = tmp_path / "raw.parquet"
    rows = 4_000_000
    ids = pl.int_range(rows, dtype=pl.Int64).cast(pl.String).str.zfill(11)
    pl.select(pl.format("P{}", ids).alias("person_id")).write_parquet(path, row_group_size=250_000)
    pl.read_parquet(path, n_rows=1_000).write_parquet(tmp_path / "warm.parquet")
    limit = 128 * MIB
    assert unit_check._passes(rows, limit) == 2
    growth = _growth(path, limit, "check")
    unbounded = _growth(path, limit, "group-by")
    print(f"RSS growth: check {growth / MIB:.1f} MiB, group-by {unbounded / MIB:.1f} MiB")
    assert growth <= limit, f"RSS grew by {growth / MIB:.0f} MiB, above {limit / MIB:.0f} MiB"
    assert unbounded > limit


def test_the_memory_setting_reaches_the_engine_and_refuses_nonsense(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from traitlets import TraitError

    from shuyu_platform.core.settings import Shuyu

    monkeypatch.delenv("SHUYU_DATA_MEMORY_LIMIT", raising=False)
    assert Shuyu().data_memory_bytes == unit_check.DEFAULT_MEMORY_LIMIT
    assert Shuyu(data_memory_limit="512M").data_memory_bytes == 512 * MIB
    assert Shuyu(data_memory_limit="1G").service_environment()["SHUYU_DATA_MEMORY_LIMIT"] == "1G"
    monkeypatch.setenv("SHUYU_DATA_MEMORY_LIMIT", "3G")
    assert Shuyu().data_memory_bytes == 3 * 1024**3
    with pytest.raises(TraitError, match="data_memory_limit"):
        Shuyu(data_memory_limit="lots")
