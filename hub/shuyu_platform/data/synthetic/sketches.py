"""What is learned from a column without keeping its values: a mergeable quantile
sketch and counts of text templates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from shuyu_platform.data.synthetic.hashing import _text_buffers
from shuyu_platform.data.synthetic.kinds import _Floats
from shuyu_platform.data.synthetic.limits import (
    _TEMPLATE_COVERAGE,
    MAX_CATEGORIES,
    MIN_COUNT,
    QUANTILES,
)

# ------------------------------------------------------------------ quantile sketch


def _levels(steps: int, tail_steps: int) -> _Floats:
    """``steps`` even quantile levels, ``tail_steps`` finer ones in each 2 % tail."""
    return np.unique(
        np.concatenate(
            [
                np.linspace(0.0, 1.0, steps + 1),
                np.linspace(0.0, 0.02, tail_steps + 1),
                np.linspace(0.98, 1.0, tail_steps + 1),
            ]
        )
    )


class _QuantileSketch:
    """Mergeable quantiles: each batch adds its :data:`QUANTILES` quantiles (and finer
    ones in the tails, where the clip quantiles lie) with its size.

    Each batch stands for a distribution spreading its weight evenly over each interval
    between consecutive quantiles (a point mass where they are equal); the sketch's
    quantiles are those of the weighted mixture. Parts are merged every 64 batches, so
    memory stays small whatever the file's size. With batches of :data:`READ_BATCH_ROWS`
    rows the clip quantiles are within a few tenths of a percent of the exact ones.
    """

    _LEVELS: Final = _levels(QUANTILES, 20)
    _MERGED_LEVELS: Final = _levels(1000, 200)
    _MERGE_PARTS: Final = 64

    def __init__(self) -> None:
        self.parts: list[tuple[_Floats, _Floats, float]] = []

    def add(self, numbers: _Floats) -> None:
        """Add one batch of finite numbers."""
        knots = np.quantile(numbers, self._LEVELS)
        self.parts.append((knots, self._LEVELS, float(numbers.size)))
        if len(self.parts) > self._MERGE_PARTS:
            weight = sum(w for _, _, w in self.parts)
            knots = self.quantiles(self._MERGED_LEVELS)
            self.parts = [(knots, self._MERGED_LEVELS, weight)]

    def quantiles(self, levels: _Floats) -> _Floats:
        """The mixture's quantiles at ``levels`` (each in 0..1)."""
        low = np.concatenate([knots[:-1] for knots, _, _ in self.parts])
        high = np.concatenate([knots[1:] for knots, _, _ in self.parts])
        mass = np.concatenate([np.diff(grid) * w for _, grid, w in self.parts])
        points = np.unique(np.concatenate([low, high]))
        at_low = np.searchsorted(points, low)
        at_high = np.searchsorted(points, high)
        point_mass = high == low
        jumps = np.zeros(points.size)
        np.add.at(jumps, at_low[point_mass], mass[point_mass])
        spread = ~point_mass
        density = mass[spread] / (high[spread] - low[spread])
        change = np.zeros(points.size)
        np.add.at(change, at_low[spread], density)
        np.add.at(change, at_high[spread], -density)
        slope = np.cumsum(change)[:-1]
        continuous = np.concatenate([[0.0], np.cumsum(slope * np.diff(points))])
        jumped = np.cumsum(jumps)
        before = continuous + jumped - jumps
        after = continuous + jumped
        xs = np.repeat(points, 2)
        cdf = np.empty(xs.size)
        cdf[0::2], cdf[1::2] = before, after
        cdf = np.maximum.accumulate(cdf)
        target = np.asarray(levels, dtype=np.float64) * cdf[-1]
        index = np.clip(np.searchsorted(cdf, target, side="left"), 1, xs.size - 1)
        x0, x1 = xs[index - 1], xs[index]
        f0, f1 = cdf[index - 1], cdf[index]
        width = f1 - f0
        share = np.divide(target - f0, width, out=np.ones_like(width), where=width > 0)
        return x0 + np.clip(share, 0.0, 1.0) * (x1 - x0)


# --------------------------------------------------------------------- templates

_DIGIT, _UPPER, _LOWER, _HAN = "\x01", "\x02", "\x03", "\x04"
_MARKERS: Final = re.compile(r"[\x01-\x04]")


class _TemplateCounter:
    """Counts the formats of text values, never the values.

    A value's *literal template* keeps its ASCII letters and punctuation and replaces
    each digit and each non-ASCII character by a class marker (``P12345678901`` ->
    ``P`` + 11 digit markers; ``王伟:60%`` -> 2 character markers + ``:`` + 2 digit
    markers + ``%``). Its *class template* also replaces ASCII letters by markers. A
    marker character found in the data itself is drawn like the class it marks.
    """

    def __init__(self) -> None:
        self.literal: dict[str, int] | None = {}
        self.classes: dict[str, int] | None = {}
        self.total = 0

    def update(self, values: pa.Array, weights: npt.NDArray[np.int64] | None = None) -> None:
        """Count the templates of non-null ``values`` (each counted ``weights`` times)."""
        self.total += len(values) if weights is None else int(weights.sum())
        literal, classes = _templates(values)
        self.literal = _add_counts(self.literal, literal, weights)
        if self.classes is not None:
            self.classes = _add_counts(self.classes, classes, weights)

    def frequent(self) -> tuple[dict[str, int], str]:
        """The templates to draw from with their counts, and how they were chosen."""
        if self.literal is not None:
            kept = {t: c for t, c in self.literal.items() if c >= MIN_COUNT}
            if kept and sum(kept.values()) >= _TEMPLATE_COVERAGE * self.total:
                return kept, "templates"
        if self.classes is not None:
            kept = {t: c for t, c in self.classes.items() if c >= MIN_COUNT}
            if kept:
                return kept, "templates(classes)"
        return {_DIGIT * 12: 1}, "neutral"


def _byte_table(mapping: Mapping[int, int]) -> npt.NDArray[np.uint8]:
    table = np.arange(256, dtype=np.uint8)
    for byte, marker in mapping.items():
        table[byte] = marker
    return table


#: Byte maps of the literal template (digits; lead bytes of non-ASCII characters, whose
#: continuation bytes are dropped) and of the class template (ASCII letters too).
_LITERAL_BYTES: Final = _byte_table(
    {**{b: ord(_DIGIT) for b in range(0x30, 0x3A)}, **{b: ord(_HAN) for b in range(0x80, 0x100)}}
)
_CLASS_BYTES: Final = _byte_table(
    {**{b: ord(_UPPER) for b in range(0x41, 0x5B)}, **{b: ord(_LOWER) for b in range(0x61, 0x7B)}}
)


def _templates(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The literal and class templates of non-null text ``values``, computed on bytes."""
    offsets, data = _text_buffers(values)
    first, last = int(offsets[0]), int(offsets[-1])
    text = data[first:last]
    lead = (text & 0xC0) != 0x80  # every byte but UTF-8 continuation bytes
    literal = _LITERAL_BYTES[text[lead]]
    kept = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lead, dtype=np.int64)])
    new_offsets = pa.py_buffer(kept[offsets - first])
    n = len(values)
    return (
        pa.LargeStringArray.from_buffers(n, new_offsets, pa.py_buffer(literal)),
        pa.LargeStringArray.from_buffers(n, new_offsets, pa.py_buffer(_CLASS_BYTES[literal])),
    )


def _add_counts(
    counts: dict[str, int] | None,
    templates: pa.Array,
    weights: npt.NDArray[np.int64] | None,
) -> dict[str, int] | None:
    """Add (weighted) template counts; ``None`` once more than :data:`MAX_CATEGORIES`."""
    if counts is None:
        return None
    if weights is None:
        counted = pc.value_counts(templates)
        keys, sums = counted.field("values"), counted.field("counts")
    else:
        table = pa.table({"t": templates, "w": weights})
        grouped = table.group_by("t").aggregate([("w", "sum")])
        keys, sums = grouped.column("t"), grouped.column("w_sum")
    for template, count in zip(keys.to_pylist(), sums.to_pylist(), strict=True):
        counts[template] = counts.get(template, 0) + count
    return counts if len(counts) <= MAX_CATEGORIES else None
