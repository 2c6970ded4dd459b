"""The privacy-unit check of a raw file: out of core, once per file version, remembered.

OpenDP calibrates its noise to the policy's promise that no privacy unit (a person, an
enterprise) contributes more than ``max_contributions`` rows. :func:`check_file` verifies
that promise on the raw file before any DP query reads it.

**How it is counted.** The unit column is streamed in Arrow batches and each value
reduced to a 64-bit hash (Polars' ``Series.hash``); the hashes are kept in one NumPy
array, sorted in place, and the longest run of equal hashes is the most rows any unit
has. Eight bytes per row, whatever the unit's type: 800 MB for 100 million rows, where a
group-by of the strings themselves needed about 110 bytes per row. When the hashes of the
whole file would exceed half the memory limit (``Shuyu.data_memory_limit``), the file is
read in several passes, each keeping the hashes of one hash partition, so memory stays
under the limit and the extra cost is one more read of one column per pass (a fixed
:data:`RESERVE` is kept back for what reading Parquet costs whatever the data). Two units
whose hashes collide are counted together, which can only overstate the worst count:
a file is never passed that breaks the promise. A file that seems to break it is
counted again exactly (a group-by of the real values, restricted to the suspect hashes)
before it is refused, so a collision never refuses a good file.

**How it is remembered.** A file version is identified by its device, inode, size,
modification time and *change time* (``st_ctime_ns``). The kernel sets the change time
on every write, rename or metadata change and offers no call to set it back, so a file
replaced or rewritten in place — even one given back its old size and mtime with
``touch`` — is a new version and is checked again. The result (the worst count per unit
column, rows, and that identity) is a small JSON record next to the raw file,
``.<file>.unit-check.json``: it lives and dies with the file in the raw zone, which only
the platform and its operators can write, needs no database schema, and survives
restarts, so the first query of a new service process costs a ``stat`` and a small read
rather than a pass over the file. Hashing the content (SHA-256) instead would cost a full
read of the file on every process's first query, which is what this record avoids. A
raw zone that cannot be written keeps the result in the process only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from .query import DpError

#: Most rows a dataset may have: the engine states it to OpenDP as the public bound on
#: group sizes, which keeps integer sums from overflowing.
MAX_ROWS: Final[int] = 10**9

#: Default bound of the memory a query, check or view build may use (``Shuyu.data_memory_limit``).
DEFAULT_MEMORY_LIMIT: Final[int] = 2 * 1024**3

#: Most rows per Arrow batch of the unit column (fewer under a low memory limit).
BATCH_ROWS: Final[int] = 1 << 20

#: Memory kept back from the limit for what reading Parquet costs whatever the data
#: (decoded pages, allocator pools, thread buffers): 60-80 MiB measured.
RESERVE: Final[int] = 96 * 1024**2

#: Sorted hashes scanned per step when measuring runs (bounds the temporary arrays).
_RUN_STEP: Final[int] = 1 << 18

#: Seed of the unit hashes (any fixed value; hashes never leave the process).
_SEED: Final[int] = 0x5348_5559_55

_RECORD_VERSION: Final[int] = 1


class EngineError(DpError, RuntimeError):
    """The engine cannot answer (raw data missing, broken, or breaking its policy)."""

    default_status = 503


@dataclass(frozen=True)
class FileVersion:
    """What identifies one version of a file's content without reading it."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileVersion:
        """The version of ``path`` now (raises ``FileNotFoundError``)."""
        stat = path.stat()
        return cls(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def record_path(path: Path) -> Path:
    """Where the unit-check record of ``path`` is kept: a hidden file beside it."""
    return path.with_name(f".{path.name}.unit-check.json")


def check_file(
    path: Path, unit: str | None, most: int, memory_limit: int = DEFAULT_MEMORY_LIMIT
) -> None:
    """Refuse a raw file that is unreadable, too big, or has a unit with > ``most`` rows.

    Counts only on the first call for a version of the file (see the module docstring).
    """
    try:
        version = FileVersion.of(path)
    except FileNotFoundError:
        raise EngineError(f"the raw file {path.name} is not available; tell the operator") from None
    rows, worst = _worst(str(path), version, unit, memory_limit)
    if rows > MAX_ROWS:
        raise EngineError(f"{path.name} has {rows:,} rows, more than this engine's {MAX_ROWS:,}")
    if worst is not None and worst > most:
        exact = (
            worst if unit is None else _exact_worst(str(path), version, unit, most, memory_limit)
        )
        if exact > most:
            raise EngineError(
                f"{path.name} breaks its policy: one {unit} has {exact} rows, the policy "
                f"promises at most {most}; DP queries on it are refused until it is fixed"
            )


@functools.lru_cache(maxsize=256)
def _worst(
    path: str, version: FileVersion, unit: str | None, memory_limit: int
) -> tuple[int, int | None]:
    """(rows, most rows of one unit or None) of this version: from the record, or counted."""
    raw = Path(path)
    record = _read_record(raw, version)
    if record is not None and (unit is None or unit in record["worst"]):
        return record["rows"], record["worst"].get(unit) if unit else None
    try:
        rows = pq.ParquetFile(raw).metadata.num_rows
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise EngineError(f"the raw file {raw.name} cannot be read: {err}") from None
    worst = dict(record["worst"]) if record is not None else {}
    if unit is not None and rows <= MAX_ROWS:
        worst[unit] = most_rows_per_unit(raw, unit, rows, memory_limit)
    _write_record(raw, version, rows, worst)
    return rows, worst.get(unit) if unit else None


def most_rows_per_unit(path: Path, unit: str, rows: int, memory_limit: int) -> int:
    """Most rows any value of ``unit`` has in ``path`` (an upper bound; see module doc).

    The hashes of one pass take at most half of ``memory_limit``.
    """
    if rows == 0:
        return 0
    passes = _passes(rows, memory_limit)
    worst = 0
    for part in range(passes):
        hashes = _hashes(path, unit, rows, part, passes, memory_limit)
        hashes.sort(kind="stable" if hashes.size < 1 << 16 else "quicksort")
        worst = max(worst, longest_run(hashes))
        del hashes
    return worst


def _batch_rows(memory_limit: int) -> int:
    """Rows per batch: a batch and its copies (~128 bytes a row) in 1/16 of the limit."""
    return max(4_096, min(BATCH_ROWS, (memory_limit - RESERVE) // 16 // 128))


def _passes(rows: int, memory_limit: int) -> int:
    """Passes over the file so that one pass's hashes take at most half the limit.

    (Half of what :data:`RESERVE` leaves, and never less than 1 MiB a pass.)
    """
    return max(1, math.ceil(rows * 8 / max((memory_limit - RESERVE) // 2, 1024**2)))


def _hashes(
    path: Path, unit: str, rows: int, part: int, passes: int, memory_limit: int
) -> np.ndarray:
    """The 64-bit hashes of ``unit`` in ``path`` that fall in hash partition ``part``."""
    batch_rows = _batch_rows(memory_limit)
    capacity = rows if passes == 1 else int(rows / passes * 1.05) + batch_rows
    out = np.empty(capacity, dtype=np.uint64)
    filled = 0
    reader = pq.ParquetFile(path)
    for batch in reader.iter_batches(batch_size=batch_rows, columns=[unit]):
        hashed = pl.Series(batch.column(0)).hash(_SEED).to_numpy()
        if passes > 1:
            hashed = hashed[hashed % np.uint64(passes) == np.uint64(part)]
        if filled + hashed.size > out.size:
            out = np.resize(out, max(out.size * 5 // 4, filled + hashed.size))
        out[filled : filled + hashed.size] = hashed
        filled += hashed.size
    return out[:filled]


def longest_run(values: np.ndarray) -> int:
    """Length of the longest run of equal neighbours in sorted ``values``."""
    best = run = 0
    previous = None
    for start in range(0, values.size, _RUN_STEP):
        chunk = values[start : start + _RUN_STEP]
        changes = np.flatnonzero(chunk[1:] != chunk[:-1]) + 1
        bounds = np.concatenate(([0], changes, [chunk.size]))
        lengths = np.diff(bounds)
        if previous is not None and chunk[0] == previous:
            lengths[0] += run
        best = max(best, int(lengths.max()))
        run, previous = int(lengths[-1]), chunk[-1]
    return best


@functools.lru_cache(maxsize=16)
def _exact_worst(path: str, _version: FileVersion, unit: str, most: int, memory_limit: int) -> int:
    """The exact worst count, grouping the real values of the hashes seen too often."""
    rows = pq.ParquetFile(path).metadata.num_rows
    passes = _passes(rows, memory_limit)
    suspects: list[np.ndarray] = []
    for part in range(passes):
        hashes = _hashes(Path(path), unit, rows, part, passes, memory_limit)
        values, counts = np.unique(hashes, return_counts=True)
        suspects.append(values[counts > most])
        del hashes, values, counts
    suspect = pl.Series(np.concatenate(suspects), dtype=pl.UInt64)
    worst = (
        pl.scan_parquet(path)
        .select(unit)
        .filter(pl.col(unit).hash(_SEED).is_in(suspect.implode()))
        .group_by(unit)
        .agg(pl.len().alias("n"))
        .select(pl.col("n").max())
        .collect(engine="streaming")
        .item()
    )
    return int(worst or 0)


def _read_record(path: Path, version: FileVersion) -> dict | None:
    """The record of this version of ``path``, or None (absent, stale or unreadable)."""
    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(record, dict)
        or record.get("format") != _RECORD_VERSION
        or record.get("version") != asdict(version)
        or not isinstance(record.get("worst"), dict)
        or not isinstance(record.get("rows"), int)
    ):
        return None
    return record


def _write_record(path: Path, version: FileVersion, rows: int, worst: dict[str, int]) -> None:
    """Remember the result beside the file (atomically); keep going if it cannot be."""
    target = record_path(path)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    body = {"format": _RECORD_VERSION, "version": asdict(version), "rows": rows, "worst": worst}
    try:
        tmp.write_text(json.dumps(body, sort_keys=True))
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
