"""Equivalence classes over a view's quasi-identifiers: value codes, counts per class (and per
sensitive value), class keys, and which rows a suppression keeps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shuyu_platform.data.risk import (
    COUNT,
)

#: Class counts of pass 1 are merged once this many partial counts have piled up.
_MERGE_ROWS: Final[int] = 1_000_000
_COUNT: Final[str] = COUNT


class Coder:
    """Small integer codes for the values of each key column, shared by all batches, so
    pass 1 groups rows by a few int32 columns instead of by their values. Null (and NaN,
    which says no more) is code -1, a class of its own."""

    def __init__(self) -> None:
        self.known: dict[str, pa.Array] = {}

    def encode(self, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The codes of ``column``'s values (new values get the next codes)."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        distinct = pc.unique(column).drop_null()
        known = self.known.get(name)
        if known is None:
            known = distinct
        elif len(distinct):
            fresh = distinct.filter(pc.invert(pc.is_in(distinct, value_set=known)))
            if len(fresh):
                known = pa.concat_arrays([known, fresh])
        self.known[name] = known
        return pc.index_in(column, value_set=known).fill_null(-1)

    def decode(self, name: str, codes: np.ndarray) -> pa.Array:
        """The values of ``codes`` (-1: null)."""
        return self.known[name].take(pa.array(np.maximum(codes, 0), mask=codes < 0))


class ClassCounter:
    """Pass 1 counts: rows per combination of key codes, and per (combination,
    sensitive value code) for each sensitive attribute."""

    def __init__(self, keys: int, sensitive: int) -> None:
        self.keys = [f"c{i}" for i in range(keys)]
        self.sensitive = [f"s{i}" for i in range(sensitive)]
        self.partial: list[pa.Table] = []
        self.partial_pairs: dict[str, list[pa.Table]] = {name: [] for name in self.sensitive}
        self.pending = 0
        self.merged: pa.Table | None = None
        self.merged_pairs: dict[str, pa.Table | None] = dict.fromkeys(self.sensitive)

    def add(self, codes: list[pa.Array]) -> None:
        """Count one batch, given as the codes of each key column, then of each sensitive
        attribute."""
        arrays = [_int64(code) for code in codes]
        keys = arrays[: len(self.keys)]
        self.partial.append(count_codes(keys, self.keys))
        self.pending += self.partial[-1].num_rows
        for name, values in zip(self.sensitive, arrays[len(self.keys) :], strict=True):
            grouped = count_codes([*keys, values], [*self.keys, name])
            self.partial_pairs[name].append(grouped)
            self.pending += grouped.num_rows
        if self.pending >= _MERGE_ROWS:
            self._merge()

    def _merge(self) -> None:
        self.merged = merge_counts([t for t in [self.merged, *self.partial] if t is not None])
        self.partial = []
        for name in self.sensitive:
            tables = [
                t for t in [self.merged_pairs[name], *self.partial_pairs[name]] if t is not None
            ]
            self.merged_pairs[name] = merge_counts(tables)
            self.partial_pairs[name] = []
        self.pending = 0

    def classes(self) -> pa.Table | None:
        """Rows per combination (``None`` when no row was counted)."""
        self._merge()
        return self.merged

    def pairs(self) -> dict[str, pa.Table]:
        """Rows per (combination, value) of each sensitive attribute, by its column name
        ``s0``..."""
        self._merge()
        return {name: t for name, t in self.merged_pairs.items() if t is not None}


# ===================================================================== k-anonymity


def filler(kind: pa.DataType) -> pa.Scalar:
    """Some valid value of ``kind``, put where a class key is null (a flag says so)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pa.scalar("", kind)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.scalar(b"", kind)
    if pa.types.is_boolean(kind):
        return pa.scalar(False)
    if pa.types.is_date32(kind):
        return pa.scalar(date(1970, 1, 1), kind)
    return pa.scalar(0, pa.int64()).cast(kind)  # numbers, timestamps


def class_keys(view: pa.Table, qis: Sequence[str]) -> pa.Table:
    """The quasi-identifier class of each row, as join-able key columns.

    Arrow's joins never match null keys, so each quasi-identifier becomes two columns:
    its value with nulls (and NaN, which is no more informative) filled in, and a null
    flag. Rows with equal flags and values are in the same class.
    """
    arrays: list[pa.Array | pa.ChunkedArray] = []
    names: list[str] = []
    for index, name in enumerate(qis):
        column = view.column(name)
        if pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
        arrays += [column.fill_null(filler(column.type)), pc.is_null(column)]
        names += [f"q{index}", f"q{index}_null"]
    return pa.Table.from_arrays(arrays, names=names)


def merge_counts(tables: list[pa.Table]) -> pa.Table | None:
    """Add up partial class counts into one row per class."""
    if not tables:
        return None
    combined = pa.concat_tables(tables)
    keys = [name for name in combined.column_names if name != _COUNT]
    return count_codes(
        [_int64(combined.column(name)) for name in keys],
        keys,
        weights=_int64(combined.column(_COUNT)),
    )


def count_codes(
    codes: Sequence[np.ndarray], names: Sequence[str], weights: np.ndarray | None = None
) -> pa.Table:
    """Rows (or the sum of ``weights``) per distinct combination of one or more code
    columns ``codes`` (integers from -1 up), as int32 columns ``names`` and :data:`COUNT`.

    The codes of a row are packed into one int64 (mixed radix, each column's radix its
    largest code + 2), so rows are counted by sorting one column rather than by hashing
    many; when the radices' product does not fit, Arrow groups the columns.
    """
    radices = [int(column.max()) + 2 if len(column) else 1 for column in codes]
    if math.prod(radices) >= 1 << 62:
        table = pa.table(dict(zip(names, codes, strict=True)))
        if weights is None:
            grouped = table.group_by(list(names)).aggregate([([], _COUNT)])
        else:
            table = table.append_column(_COUNT, pa.array(weights))
            grouped = table.group_by(list(names)).aggregate([(_COUNT, "sum")])
        keys = [grouped.column(name).cast(pa.int32()) for name in names]
        counts = grouped.column(grouped.num_columns - 1).cast(pa.int64())
        return pa.Table.from_arrays([*keys, counts], names=[*names, _COUNT])
    packed = np.zeros(len(codes[0]), dtype=np.int64)
    for column, radix in zip(codes, radices, strict=True):
        packed *= radix
        packed += column + 1
    order = np.argsort(packed)  # equal keys are counted together in any order
    ordered = packed[order]
    starts = np.flatnonzero(np.concatenate(([len(ordered) > 0], ordered[1:] != ordered[:-1])))
    keys = ordered[starts]
    if weights is None:
        counts = np.diff(np.append(starts, len(ordered)))
    elif len(starts):
        counts = np.add.reduceat(np.asarray(weights, dtype=np.int64)[order], starts)
    else:
        counts = np.zeros(0, dtype=np.int64)
    digits = []
    for radix in reversed(radices):
        keys, digit = np.divmod(keys, radix)
        digits.append(pa.array((digit - 1).astype(np.int32)))
    arrays = [*digits[::-1], pa.array(counts.astype(np.int64))]
    return pa.Table.from_arrays(arrays, names=[*names, _COUNT])


def _int64(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An integer column without nulls as an int64 numpy array."""
    return np.asarray(column.to_numpy(), dtype=np.int64)


def kept_rows(view: pa.Table, qis: Sequence[str], suppressed: pa.Table) -> np.ndarray:
    """Which rows of ``view`` have a class not among the ``suppressed`` class keys."""
    keys = class_keys(view, qis)
    keys = keys.append_column("row", pa.array(np.arange(view.num_rows, dtype=np.int64)))
    hits = keys.join(suppressed, keys=suppressed.column_names, join_type="left semi")
    keep = np.ones(view.num_rows, dtype=bool)
    if hits.num_rows:
        keep[hits.column("row").to_numpy()] = False
    return keep
