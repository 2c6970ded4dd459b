"""What the ingress tests share: a hostile file."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


@pytest.fixture(scope="session")
def parquet_bomb() -> bytes:
    """A Parquet file of under 1 KiB whose column ``x`` decodes to 16 GiB (one 8 MiB
    value, dictionary-encoded, in 2,000 rows)."""
    value = pa.array(["1" * (8 * 1024 * 1024)])
    column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(2000, dtype=np.int32)), value)
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": column}), sink, compression="zstd")
    return sink.getvalue()
