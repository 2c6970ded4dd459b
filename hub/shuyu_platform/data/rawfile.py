"""Opening a raw Parquet file for a streaming read, with one error for every way it fails.

View builds and synthetic twins both read raw files batch by batch; this is where such a
file is opened, so that "missing", "unreadable" and "not Parquet" read the same everywhere
and the file is read through one descriptor that a replacement cannot change mid-build.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def open_raw(
    raw_path: Path, error: type[Exception], *, prefix: str = ""
) -> Iterator[tuple[pa.NativeFile, pq.ParquetFile]]:
    """Open ``raw_path`` once and yield its descriptor and Parquet reader.

    Every failure becomes ``error(prefix + <file name> + what is wrong)``. Reads are
    positional (``pread``), so another thread (a hash) can share the descriptor, and a raw
    file replaced meanwhile does not change what the caller reads.
    """
    name = f"{prefix}{raw_path.name}"
    try:
        source = pa.OSFile(str(raw_path))
    except FileNotFoundError:
        raise error(f"{name} does not exist in the raw zone") from None
    except (OSError, pa.ArrowException) as err:
        raise error(f"{name} cannot be opened: {err}") from None
    try:
        try:
            # No pre-buffering: it keeps every column chunk read until the reader goes,
            # which would make memory grow with the file.
            parquet = pq.ParquetFile(source, pre_buffer=False)
        except (OSError, pa.ArrowException) as err:
            raise error(f"{name} is not a readable Parquet file: {err}") from None
        yield source, parquet
    finally:
        source.close()
