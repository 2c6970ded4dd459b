"""Drawing a twin's columns: one model per column, built from what its learner kept."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shuyu_platform.data.synthetic.formats import _FAKERS, _digit_text, _fill_templates
from shuyu_platform.data.synthetic.kinds import _Floats, _Ints, _is_number, _is_text, _storage_type
from shuyu_platform.data.synthetic.limits import _NEUTRAL_DAYS
from shuyu_platform.data.synthetic.sketches import _TemplateCounter

# ============================================================================= models


class _Model:
    """How one column of the twin is drawn; values come in the column's storage type."""

    method: str = ""
    checked: bool = False
    """Whether drawn values are kept out of the raw column's values."""
    unique: bool = False
    """Whether drawn values must also be distinct within the column."""

    def __init__(self, field: pa.Field, null_rate: float) -> None:
        self.field = field
        self.kind = _storage_type(field.type)
        self.null_rate = null_rate

    def values(self, rng: np.random.Generator, n: int) -> pa.Array:
        """``n`` non-null values."""
        return self._draw(rng, n).cast(self.kind)

    def generate(self, rng: np.random.Generator, n: int) -> pa.Array:
        """``n`` values with nulls at the column's null rate."""
        values = self.values(rng, n)
        if self.null_rate <= 0.0 or n == 0:
            return values
        nulls = rng.random(n) < self.null_rate
        if not nulls.any():
            return values
        return pc.if_else(pa.array(nulls), pa.scalar(None, self.kind), values)

    def fallback(self, rng: np.random.Generator, n: int) -> pa.Array:
        """``n`` neutral values (twelve random digits for text), used to replace values
        that keep colliding with raw ones: their space is too small to avoid them."""
        return _NeutralModel(self.field, 0.0).values(rng, n)

    def _draw(self, rng: np.random.Generator, n: int) -> pa.Array:
        raise NotImplementedError


class _CategoryModel(_Model):
    """Values drawn with their learned frequencies."""

    def __init__(
        self, field: pa.Field, null_rate: float, counts: Mapping[Any, int], method: str
    ) -> None:
        super().__init__(field, null_rate)
        ordered = sorted(counts)
        self.vocabulary = pa.array(ordered).cast(self.kind)
        cdf = np.cumsum(np.array([counts[value] for value in ordered], dtype=np.float64))
        self.cdf = cdf / cdf[-1]
        self.method = method

    def _draw(self, rng: np.random.Generator, n: int) -> pa.Array:
        index = np.minimum(
            np.searchsorted(self.cdf, rng.random(n), side="right"), self.cdf.size - 1
        )
        return self.vocabulary.take(pa.array(index, type=pa.int64()))


class _NumericModel(_Model):
    """Values drawn from the sketch's quantile function between the clip quantiles."""

    def __init__(
        self, field: pa.Field, null_rate: float, knots: _Floats, decimals: int | None
    ) -> None:
        super().__init__(field, null_rate)
        self.knots = knots
        self.decimals = decimals
        self.integer = pa.types.is_integer(self.kind)
        low, high = float(knots[0]), float(knots[-1])
        if decimals is not None:
            scale = 10.0**decimals
            low_r, high_r = math.ceil(low * scale) / scale, math.floor(high * scale) / scale
            low, high = (low_r, high_r) if low_r <= high_r else (low, high)
        self.bounds = (low, high)
        self.method = "quantiles"

    def _draw(self, rng: np.random.Generator, n: int) -> pa.Array:
        positions = rng.random(n) * (self.knots.size - 1)
        numbers = np.interp(positions, np.arange(self.knots.size), self.knots)
        if self.decimals is not None:
            numbers = np.round(numbers, self.decimals)
        numbers = np.clip(numbers, *self.bounds)
        if self.integer:
            return pa.array(np.round(numbers).astype(np.int64))
        return pa.array(numbers, type=pa.float64())


class _TemporalModel(_Model):
    """Dates drawn by bucket frequency, uniformly within a bucket; timestamps also by
    hour-of-day frequency, uniformly within the hour."""

    def __init__(
        self,
        field: pa.Field,
        null_rate: float,
        level: str,
        starts: _Ints,
        lengths: _Ints,
        weights: _Floats,
        hours: _Floats | None,
    ) -> None:
        super().__init__(field, null_rate)
        self.starts, self.lengths = starts, lengths
        self.cdf = np.cumsum(weights) / weights.sum()
        self.hours = None if hours is None else np.cumsum(hours) / hours.sum()
        self.method = level if hours is None else f"{level}+hours"

    def _draw(self, rng: np.random.Generator, n: int) -> pa.Array:
        bucket = np.minimum(
            np.searchsorted(self.cdf, rng.random(n), side="right"), self.cdf.size - 1
        )
        days = self.starts[bucket] + np.floor(rng.random(n) * self.lengths[bucket]).astype(np.int64)
        if self.hours is None:
            if pa.types.is_date64(self.kind):
                return pa.array(days * 86_400_000, type=pa.date64())
            return pa.array(days.astype(np.int32), type=pa.date32())
        hour = np.minimum(np.searchsorted(self.hours, rng.random(n), side="right"), 23)
        seconds = days * 86_400 + hour * 3600 + rng.integers(0, 3600, n)
        return pa.array(seconds, type=pa.timestamp("s", tz=self.kind.tz))


class _FakeModel(_Model):
    """Format-valid invented values of a recognised kind (ID card, name...)."""

    def __init__(self, field: pa.Field, null_rate: float, fake: str, *, identifier: bool) -> None:
        super().__init__(field, null_rate)
        self.fake = _FAKERS[fake]
        self.method = f"fake:{fake}"
        self.checked = True
        self.unique = identifier and fake not in ("person_name", "enterprise_name")

    def _draw(self, rng: np.random.Generator, n: int) -> pa.Array:
        return self.fake(rng, n)


class _TemplateModel(_Model):
    """Text drawn from frequent templates, every marker filled with a random character."""

    def __init__(
        self,
        field: pa.Field,
        null_rate: float,
        counter: _TemplateCounter,
        *,
        identifier: bool,
        checked: bool,
    ) -> None:
        super().__init__(field, null_rate)
        frequent, how = counter.frequent()
        self.templates = sorted(frequent)
        cdf = np.cumsum([frequent[t] for t in self.templates], dtype=np.float64)
        self.cdf = cdf / cdf[-1]
        self.method = f"fake:{how}"
        self.checked = checked
        self.unique = identifier

    def _draw(self, rng: np.random.Generator, n: int) -> pa.Array:
        index = np.minimum(
            np.searchsorted(self.cdf, rng.random(n), side="right"), self.cdf.size - 1
        )
        return _fill_templates(rng, self.templates, index)


class _NeutralModel(_Model):
    """Values that say nothing about the raw data (too few values, or an identifier)."""

    def __init__(self, field: pa.Field, null_rate: float, *, identifier: bool = False) -> None:
        super().__init__(field, null_rate)
        self.method = "neutral"
        self.checked = self.unique = identifier

    def _draw(self, rng: np.random.Generator, n: int) -> pa.Array:
        kind = self.kind
        if _is_text(kind):
            return _digit_text(rng.integers(0, 10**12, n), 12)
        if pa.types.is_boolean(kind):
            return pa.array(rng.random(n) < 0.5)
        if pa.types.is_integer(kind):
            bits = kind.bit_width - (1 if pa.types.is_signed_integer(kind) else 0)
            return pa.array(rng.integers(0, min(10**9, 2**bits - 1) + 1, n))
        if _is_number(kind):
            return pa.array(np.round(rng.uniform(0.0, 1000.0, n), 2))
        days = rng.integers(*_NEUTRAL_DAYS, n)
        if pa.types.is_timestamp(kind):
            seconds = days * 86_400 + rng.integers(0, 86_400, n)
            return pa.array(seconds, type=pa.timestamp("s", tz=kind.tz))
        if pa.types.is_date64(kind):
            return pa.array(days * 86_400_000, type=pa.date64())
        return pa.array(days.astype(np.int32), type=pa.date32())
