"""The big raw input the data benchmarks share: demo health records of a chosen size.

The file is generated into a temporary folder and removed afterwards, or kept in
``SHUYU_BENCH_DIR`` and reused by later runs with the same row count.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

DATASET = "health_records"
SEED = 20240501


@contextlib.contextmanager
def workspace(name: str) -> Iterator[Path]:
    """``SHUYU_BENCH_DIR`` (kept), or a temporary folder removed afterwards."""
    kept = os.environ.get("SHUYU_BENCH_DIR")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        yield Path(kept)
    else:
        with tempfile.TemporaryDirectory(prefix=f"shuyu-bench-{name}-") as folder:
            yield Path(folder)


def raw_file(folder: Path, rows: int) -> Path:
    """The raw demo file of ``rows`` rows in ``folder``, generated unless already there."""
    from shuyu_platform.data import demodata

    path = folder / f"{DATASET}.parquet"
    with contextlib.suppress(OSError, ValueError):
        if pq.ParquetFile(path).metadata.num_rows == rows:
            print(f"  reusing {path.name} ({rows:,} rows)")
            return path
    print(f"  generating {rows:,} rows of {DATASET} ...", flush=True)
    started = time.perf_counter()
    demodata.generate(folder, rows=rows, seed=SEED, datasets=DATASET)
    print(f"  generated in {time.perf_counter() - started:.1f} s")
    return path
