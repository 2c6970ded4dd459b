"""Counting quasi-identifier classes by packed codes, against a plain Python count."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from shuyu_platform.data.classes import ClassCounter, count_codes, merge_counts
from shuyu_platform.data.risk import COUNT


def as_counter(table: pa.Table) -> Counter[tuple[int, ...]]:
    """A count table as {code combination: rows}."""
    keys = [name for name in table.column_names if name != COUNT]
    rows = zip(*(table.column(name).to_pylist() for name in keys), strict=True)
    return Counter(dict(zip(rows, table.column(COUNT).to_pylist(), strict=True)))


def test_packed_counts_equal_a_plain_count_with_nulls_and_weights() -> None:
    rng = np.random.default_rng(7)
    codes = [rng.integers(-1, high, 5000) for high in (2, 40, 9, 3)]
    names = ["c0", "c1", "c2", "s0"]
    table = count_codes(codes, names)
    assert table.schema.types == [pa.int32()] * 4 + [pa.int64()]
    assert as_counter(table) == Counter(zip(*(c.tolist() for c in codes), strict=True))
    weights = rng.integers(1, 1000, 5000)
    weighted: Counter[tuple[int, ...]] = Counter()
    for row, weight in zip(zip(*(c.tolist() for c in codes), strict=True), weights, strict=True):
        weighted[row] += int(weight)
    assert as_counter(count_codes(codes, names, weights=weights)) == weighted


def test_codes_too_wide_to_pack_are_grouped_by_arrow() -> None:
    """Seven columns of a million codes each overflow 62 bits: the same counts come back."""
    codes = [np.array([999_999, 5, 5, -1], dtype=np.int64) for _ in range(7)]
    names = [f"c{i}" for i in range(7)]
    expected = Counter(zip(*(c.tolist() for c in codes), strict=True))
    assert as_counter(count_codes(codes, names)) == expected
    doubled = as_counter(count_codes(codes, names, weights=np.full(4, 2)))
    assert doubled == Counter({key: 2 * count for key, count in expected.items()})


@pytest.mark.parametrize("rows", [0, 1, 3000])
def test_class_counter_merges_batches_into_one_row_per_class(rows: int) -> None:
    rng = np.random.default_rng(rows)
    counter = ClassCounter(2, 1)
    everything: list[tuple[int, int, int]] = []
    for _ in range(3):
        batch = [pa.array(rng.integers(-1, high, rows).astype(np.int32)) for high in (4, 7, 5)]
        counter.add(batch)
        everything += zip(*(b.to_pylist() for b in batch), strict=True)
    classes = counter.classes()
    assert classes is not None
    assert as_counter(classes) == Counter((a, b) for a, b, _ in everything)
    assert as_counter(counter.pairs()["s0"]) == Counter(everything)
    assert merge_counts([]) is None
