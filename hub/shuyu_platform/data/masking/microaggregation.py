"""Univariate microaggregation: groups of at least ``k`` rows, each value its group's mean.

Unlike every other rule, a value's masked form depends on the whole column, so a view
build first *fits* the groups over the rows of the view (:func:`fit_groups`, fed with
value counts batch by batch, so memory grows with the number of distinct values, not
rows) and then masks batch by batch with :meth:`MicroGroups.apply`.

Groups are cut over the sorted distinct values: values are taken in order and a group is
closed as soon as it holds ``k`` rows; a last group under ``k`` joins the one before.
Equal values are never split, so each masked value is shared by at least ``k`` rows
(fewer only when the whole column has fewer than ``k`` non-null rows: then there is
one group). Each group's value is the row-weighted mean of its members, so the column's
total is kept up to rounding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class MicroGroups:
    """The fitted groups of one microaggregated column."""

    #: The largest raw value of each group, ascending.
    upper: npt.NDArray[np.float64]
    #: Each group's mean (rounded as the rule says).
    means: npt.NDArray[np.float64]
    #: Rows in each group.
    sizes: npt.NDArray[np.int64]

    def apply(self, values: pa.Array) -> pa.Array:
        """``values`` (numeric, nulls allowed) replaced by their group's mean."""
        floats = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        valid = ~np.isnan(floats)
        if not len(self.upper):
            return pa.nulls(len(values), pa.float64())
        index = np.searchsorted(self.upper, np.where(valid, floats, 0.0), side="left")
        masked = self.means[np.minimum(index, len(self.means) - 1)]
        return pa.array(masked, type=pa.float64(), mask=~valid)


def value_counts(values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``(value, count)`` of the non-null, non-NaN values of one batch, as float64."""
    floats = pc.cast(values, pa.float64())
    floats = pc.drop_null(pc.if_else(pc.is_nan(floats), None, floats))
    counted = pc.value_counts(floats)
    return pa.table({"value": counted.field("values"), "count": counted.field("counts")})


def fit_groups(batches: Iterable[pa.Table], k: int, to: float | None = None) -> MicroGroups:
    """Fit groups of at least ``k`` rows over per-batch :func:`value_counts` tables."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    merged = pa.concat_tables(
        list(batches) or [pa.table({"value": pa.array([], pa.float64()), "count": []})]
    )
    totals = merged.group_by("value").aggregate([("count", "sum")]).sort_by("value")
    values = totals.column("value").to_numpy()
    counts = totals.column("count_sum").to_numpy().astype(np.int64)
    if not len(values):
        empty = np.array([], dtype=np.float64)
        return MicroGroups(upper=empty, means=empty, sizes=np.array([], dtype=np.int64))
    # Close a group each time the running count passes a multiple of k: a vectorised
    # greedy cut, since the running count only grows.
    running = np.cumsum(counts)
    group = np.zeros(len(values), dtype=np.int64)
    start, current, bounds = 0, 0, []
    # The loop runs once per group (not per value): jump to the first value that fills it.
    while start < len(values):
        base = running[start - 1] if start else 0
        end = int(np.searchsorted(running, base + k, side="left"))
        end = min(end, len(values) - 1)
        group[start : end + 1] = current
        bounds.append(end)
        start, current = end + 1, current + 1
    sizes = np.bincount(group, weights=counts).astype(np.int64)
    if len(sizes) > 1 and sizes[-1] < k:  # a short last group joins the one before
        group[group == len(sizes) - 1] = len(sizes) - 2
        bounds.pop()
        bounds[-1] = len(values) - 1
        sizes = np.bincount(group, weights=counts).astype(np.int64)
    sums = np.bincount(group, weights=values * counts)
    means = sums / sizes
    if to is not None:
        means = np.round(means / to) * to
    upper = values[np.asarray(bounds, dtype=np.int64)]
    return MicroGroups(upper=upper.astype(np.float64), means=means, sizes=sizes)
