"""Column kinds as twins see them: storage types, and the array aliases the stages share."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

_UInt64s = npt.NDArray[np.uint64]
_Bools = npt.NDArray[np.bool_]
_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]


def _decoded(column: pa.Array) -> pa.Array:
    """``column`` with a dictionary encoding undone (twins draw plain values)."""
    if pa.types.is_dictionary(column.type):
        return column.dictionary_decode()
    return column


def _storage_type(kind: pa.DataType) -> pa.DataType:
    """The type values are drawn in: the column's type, or its dictionary's value type."""
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_temporal(kind: pa.DataType) -> bool:
    return pa.types.is_date(kind) or pa.types.is_timestamp(kind)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind)
