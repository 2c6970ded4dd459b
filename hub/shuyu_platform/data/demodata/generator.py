"""Writing the demo datasets: deterministic, streamed in chunks, atomic files."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from shuyu_platform.core.atomic import fsync_directory

from .bus import _bus_builder
from .columns import _ChunkBuilder, _rng
from .enterprise import _enterprise_builder
from .health import _health_builder
from .schemas import DATASETS, _require_dataset, schema
from .social import _social_builder

#: Rows generated (and written as one Parquet row group) per chunk. Part of the output
#: format: changing it changes every file.
CHUNK_ROWS: Final[int] = 250_000

#: Largest ``rows`` accepted (keeps derived identifiers unique and arithmetic in 64 bits).
MAX_ROWS: Final[int] = 100_000_000

ProgressCallback = Callable[[str, int, int], None]


def row_count(dataset: str, rows: int) -> int:
    """Return how many rows ``dataset`` gets when :func:`generate` is asked for ``rows``.

    ``enterprise_credit`` gets ``max(rows // 20, 50)``; every other dataset gets ``rows``.
    """
    rows = _require_rows(rows)
    if _require_dataset(dataset) == "enterprise_credit":
        return max(rows // 20, 50)
    return rows


def generate(
    raw_dir: Path,
    *,
    rows: int = 100_000,
    seed: int = 20240501,
    datasets: Iterable[str] = DATASETS,
    progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Write ``raw_dir/<dataset>.parquet`` for each of ``datasets`` and return the paths.

    ``rows`` sets the size (see :func:`row_count`), ``seed`` the content: the same pair
    always produces byte-identical files. ``datasets`` may also be a single dataset name.
    Unknown names raise :class:`ValueError` before anything is written. Each file is
    written to ``<name>.parquet.tmp-<pid>``, fsynced and renamed over the final name; on
    any exception the temporary file is removed and the exception re-raised, leaving any
    previous file at the final path untouched.
    """
    rows = _require_rows(rows)
    seed = _require_seed(seed)
    names = _resolve_datasets(datasets)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in names:
        path = raw_dir / f"{name}.parquet"
        _write_dataset(path, name, row_count(name, rows), seed, progress)
        written[name] = path
    return written


def _require_rows(rows: int) -> int:
    rows = operator.index(rows)
    if not 0 <= rows <= MAX_ROWS:
        raise ValueError(f"rows must be in 0..{MAX_ROWS}, got {rows}")
    return rows


def _require_seed(seed: int) -> int:
    if isinstance(seed, bool):
        raise TypeError("seed must be an integer, not a bool")
    return operator.index(seed)


def _resolve_datasets(datasets: Iterable[str]) -> tuple[str, ...]:
    names = (datasets,) if isinstance(datasets, str) else tuple(datasets)
    return tuple(dict.fromkeys(_require_dataset(name) for name in names))


# ========================================================================== writing


def _write_dataset(
    path: Path, dataset: str, total: int, seed: int, progress: ProgressCallback | None
) -> None:
    """Generate ``dataset`` chunk by chunk and write it atomically to ``path``."""
    done = 0

    def chunk_written(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(dataset, done, total)

    _write_atomically(path, schema(dataset), _tables(dataset, total, seed), chunk_written)


def _tables(dataset: str, total: int, seed: int) -> Iterator[pa.Table]:
    """Yield the dataset's chunks as Arrow tables, in order."""
    build = _BUILDERS[dataset](seed, total)
    target = schema(dataset)
    for index, start in enumerate(range(0, total, CHUNK_ROWS)):
        n = min(CHUNK_ROWS, total - start)
        columns = build(_rng(seed, dataset, "chunk", index), start, n)
        yield pa.Table.from_arrays(columns, schema=target)


def _write_atomically(
    path: Path,
    table_schema: pa.Schema,
    tables: Iterable[pa.Table],
    chunk_written: Callable[[int], None],
) -> None:
    """Stream ``tables`` into ``path`` via a fsynced temporary file and ``os.replace``."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as sink:
            with pq.ParquetWriter(sink, table_schema, compression="zstd") as writer:
                for table in tables:
                    writer.write_table(table, row_group_size=table.num_rows)
                    chunk_written(table.num_rows)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


_BUILDERS: Final[dict[str, Callable[[int, int], _ChunkBuilder]]] = {
    "health_records": _health_builder,
    "enterprise_credit": _enterprise_builder,
    "bus_ridership": _bus_builder,
    "social_insurance": _social_builder,
}
