"""Learning a twin's marginals: one pass over the raw file feeding a learner per column
(and the filters of raw values and rows that keep real ones out)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shuyu_platform.data.policy import DatasetPolicy, FieldPolicy
from shuyu_platform.data.synthetic.drawing import (
    _CategoryModel,
    _FakeModel,
    _Model,
    _NeutralModel,
    _NumericModel,
    _TemplateModel,
    _TemporalModel,
)
from shuyu_platform.data.synthetic.formats import _recognise
from shuyu_platform.data.synthetic.hashing import _hash_column, _HashFilter, _row_hashes
from shuyu_platform.data.synthetic.kinds import (
    _decoded,
    _Floats,
    _Ints,
    _is_number,
    _is_temporal,
    _is_text,
    _storage_type,
)
from shuyu_platform.data.synthetic.limits import (
    _COVERAGE,
    _KIND_SAMPLE,
    _NEUTRAL_DAYS,
    CLIP,
    LOW_CARDINALITY,
    MAX_CATEGORIES,
    MIN_COUNT,
    MIN_NUMERIC_VALUES,
    READ_BATCH_ROWS,
)
from shuyu_platform.data.synthetic.results import SyntheticError
from shuyu_platform.data.synthetic.sketches import _QuantileSketch, _TemplateCounter


class _Learning:
    """The single pass over the raw file: marginals, and filters of raw values and rows."""

    def __init__(
        self,
        raw_path: Path,
        schema: pa.Schema,
        learners: list[_Learner],
        checked: list[int],
        check_rows: bool,
    ) -> None:
        self.raw_path = raw_path
        self.schema = schema
        self.learners = learners
        self.rows = 0
        self.expected = 0
        self.value_filters: dict[int, _HashFilter] = {}
        self.row_filter: _HashFilter | None = None
        self._checked = checked
        self._check_rows = check_rows

    def read(self, parquet: pq.ParquetFile) -> None:
        """Stream every batch of ``parquet`` through the learners and the filters."""
        self.expected = parquet.metadata.num_rows
        self.value_filters = {i: _HashFilter(self.expected) for i in self._checked}
        self.row_filter = _HashFilter(self.expected) if self._check_rows else None
        reader = parquet.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=True)
        while True:
            try:
                batch = next(reader)
            except StopIteration:
                break
            except (OSError, pa.ArrowException) as err:
                raise SyntheticError(
                    f"raw file {self.raw_path.name} is not a readable Parquet file: {err}"
                ) from None
            columns = [_decoded(column) for column in batch.columns]
            self.rows += batch.num_rows
            for learner, column in zip(self.learners, columns, strict=True):
                learner.update(column)
            for i, value_filter in self.value_filters.items():
                hashes, valid = _hash_column(columns[i])
                value_filter.add(hashes[valid])
            if self.row_filter is not None:
                self.row_filter.add(_row_hashes(columns, batch.num_rows))
        if self.rows != self.expected:
            raise SyntheticError(
                f"raw file {self.raw_path.name} holds {self.rows} rows, "
                f"its footer says {self.expected}"
            )


# ========================================================================== planning


def _learner(policy: DatasetPolicy, raw_path: Path, field: pa.Field) -> _Learner:
    """Choose how a column is learned, from its policy (grade, identifier) and its type.

    A column the policy does not describe is treated as grade L4: nothing is learned
    from its text.
    """
    kind = _storage_type(field.type)
    described = policy.fields.get(field.name)
    identifier = described is not None and described.identifier
    if _is_text(kind):
        if identifier or _sensitive_text(described):
            return _FakeLearner(field, identifier=identifier)
        keys = described.dp.public_keys if described.dp is not None else None
        return _CategoryLearner(field, public_keys=keys)
    if identifier and (_is_number(kind) or _is_temporal(kind) or pa.types.is_boolean(kind)):
        return _NeutralLearner(field)
    if pa.types.is_boolean(kind):
        return _CategoryLearner(field, public_keys=None)
    if _is_number(kind):
        return _NumericLearner(field)
    if _is_temporal(kind):
        return _TemporalLearner(field)
    raise SyntheticError(
        f"raw file {raw_path.name}: column {field.name!r} has type {field.type}, "
        f"which synthetic twins do not support"
    )


def _sensitive_text(described: FieldPolicy | None) -> bool:
    """Whether a text column's values must never be learned (L3/L4 or undescribed)."""
    if described is None:
        return True
    return described.type != "category" and described.grade in ("L3", "L4")


def _columns_to_check(learners: Sequence[_Learner]) -> list[int]:
    """Columns whose raw values are remembered, to keep them out of the twin: sensitive
    text (identifiers, L3/L4) and identifiers of other types."""
    return [
        i
        for i, learner in enumerate(learners)
        if isinstance(learner, _FakeLearner | _NeutralLearner)
    ]


# ========================================================================== learning


class _Learner:
    """Learns the marginal of one column, batch by batch, and turns it into a model."""

    def __init__(self, field: pa.Field) -> None:
        self.field = field
        self.kind = _storage_type(field.type)
        self.rows = 0
        self.nulls = 0

    def update(self, column: pa.Array) -> None:
        """Learn from one raw batch of the column (dictionary encoding undone)."""
        self.rows += len(column)
        self.nulls += column.null_count
        values = column.drop_null() if column.null_count else column
        if len(values):
            self._update(values)

    def _update(self, values: pa.Array) -> None:
        raise NotImplementedError

    @property
    def values(self) -> int:
        """Non-null values seen."""
        return self.rows - self.nulls

    @property
    def null_rate(self) -> float:
        """Share of nulls to draw: the raw share, 0 for a non-nullable column."""
        if not self.field.nullable or self.rows == 0:
            return 0.0
        return self.nulls / self.rows

    def model(self) -> _Model:
        """The model the twin's column is drawn from."""
        raise NotImplementedError


class _CategoryLearner(_Learner):
    """Frequencies of each value; overflows into templates for a free-text column."""

    def __init__(self, field: pa.Field, *, public_keys: Sequence[str] | None) -> None:
        super().__init__(field)
        self.public_keys = tuple(public_keys) if public_keys is not None else None
        self.counts: dict[Any, int] | None = {}
        self.templates: _TemplateCounter | None = None

    def _update(self, values: pa.Array) -> None:
        if self.counts is not None:
            counted = pc.value_counts(values)
            for value, count in zip(
                counted.field("values").to_pylist(),
                counted.field("counts").to_pylist(),
                strict=True,
            ):
                self.counts[value] = self.counts.get(value, 0) + count
            if len(self.counts) > MAX_CATEGORIES:
                self.templates = _TemplateCounter()
                self.templates.update(
                    pa.array(list(self.counts), type=self.kind),
                    np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts)),
                )
                self.counts = None
        elif self.templates is not None:
            self.templates.update(values)

    def model(self) -> _Model:
        if self.counts is not None:
            allowed = set(self.public_keys) if self.public_keys is not None else None
            kept = {
                value: count
                for value, count in self.counts.items()
                if count >= MIN_COUNT and (allowed is None or value in allowed)
            }
            if kept:
                method = "categorical" if allowed is None else "categorical(public_keys)"
                return _CategoryModel(self.field, self.null_rate, kept, method)
            if self.public_keys is not None:
                uniform = dict.fromkeys(self.public_keys, 1)
                return _CategoryModel(self.field, self.null_rate, uniform, "public_keys(uniform)")
            if pa.types.is_boolean(self.kind):
                both = {False: 1, True: 1}
                return _CategoryModel(self.field, self.null_rate, both, "uniform")
            self.templates = _TemplateCounter()
            if self.counts:
                self.templates.update(
                    pa.array(list(self.counts), type=self.kind),
                    np.fromiter(self.counts.values(), dtype=np.int64, count=len(self.counts)),
                )
        assert self.templates is not None
        return _TemplateModel(
            self.field, self.null_rate, self.templates, identifier=False, checked=False
        )


class _NumericLearner(_Learner):
    """A merged quantile sketch, the frequent values of a low-cardinality column, and the
    number of decimals of a float column."""

    def __init__(self, field: pa.Field) -> None:
        super().__init__(field)
        self.sketch = _QuantileSketch()
        self.counts: dict[float, int] | None = {}
        self.integer = pa.types.is_integer(self.kind)
        self.decimals: int | None = 0
        self.finite = 0

    def _update(self, values: pa.Array) -> None:
        numbers = values.to_numpy(zero_copy_only=False).astype(np.float64)
        numbers = numbers[np.isfinite(numbers)]
        if not numbers.size:
            return
        self.finite += numbers.size
        self.sketch.add(numbers)
        if self.counts is not None:
            distinct, counts = np.unique(numbers, return_counts=True)
            if distinct.size > LOW_CARDINALITY:
                self.counts = None
            else:
                for value, count in zip(distinct.tolist(), counts.tolist(), strict=True):
                    self.counts[value] = self.counts.get(value, 0) + count
                if len(self.counts) > LOW_CARDINALITY:
                    self.counts = None
        if not self.integer and self.decimals is not None:
            found = _decimals(numbers)
            self.decimals = None if found is None else max(self.decimals, found)

    def model(self) -> _Model:
        if self.finite < MIN_NUMERIC_VALUES:
            return _NeutralModel(self.field, self.null_rate)
        knots = self.sketch.quantiles(np.linspace(CLIP[0], CLIP[1], 99))
        low, high = float(knots[0]), float(knots[-1])
        if self.counts is not None:
            kept = {
                value: count
                for value, count in self.counts.items()
                if count >= MIN_COUNT and low <= value <= high
            }
            if kept:
                return _CategoryModel(self.field, self.null_rate, kept, "values(low-cardinality)")
        decimals = 0 if self.integer else self.decimals
        return _NumericModel(self.field, self.null_rate, knots, decimals)


def _decimals(numbers: _Floats) -> int | None:
    """The fewest decimals (at most 6) that write every number exactly, or ``None``."""
    for places in range(7):
        scaled = numbers * 10.0**places
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))):
            return places
    return None


class _TemporalLearner(_Learner):
    """Counts per month (since 1970) and, for timestamps, per hour of day."""

    def __init__(self, field: pa.Field) -> None:
        super().__init__(field)
        self.months: dict[int, int] = {}
        self.hours = np.zeros(24, dtype=np.int64)
        self.timestamp = pa.types.is_timestamp(self.kind)

    def _update(self, values: pa.Array) -> None:
        seconds = _epoch_seconds(values)
        days = np.floor_divide(seconds, 86_400)
        months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
        distinct, counts = np.unique(months, return_counts=True)
        for month, count in zip(distinct.tolist(), counts.tolist(), strict=True):
            self.months[month] = self.months.get(month, 0) + count
        if self.timestamp:
            self.hours += np.bincount(np.floor_divide(seconds % 86_400, 3600), minlength=24)

    def model(self) -> _Model:
        level, starts, lengths, weights = _date_buckets(self.months, self.values)
        hours = None
        if self.timestamp:
            kept = np.where(self.hours >= MIN_COUNT, self.hours, 0)
            hours = kept.astype(np.float64) if kept.sum() else np.ones(24)
        return _TemporalModel(self.field, self.null_rate, level, starts, lengths, weights, hours)


def _epoch_seconds(values: pa.Array) -> _Ints:
    """Whole seconds since 1970 of non-null date or timestamp values."""
    kind = values.type
    if pa.types.is_date32(kind):
        return pc.cast(values, pa.int32()).to_numpy().astype(np.int64) * 86_400
    numbers = pc.cast(values, pa.int64()).to_numpy()
    if pa.types.is_date64(kind):
        return np.floor_divide(numbers, 1000)
    per_second = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}[kind.unit]
    return np.floor_divide(numbers, per_second)


def _month_days(months: _Ints) -> _Ints:
    """Day number (since 1970) of the first day of each month number (since 1970)."""
    return months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _date_buckets(months: dict[int, int], total: int) -> tuple[str, _Ints, _Ints, _Floats]:
    """The finest of month, year or decade buckets whose frequent buckets (at least
    :data:`MIN_COUNT` values each) hold :data:`_COVERAGE` of the values.

    Returns the level, each bucket's first day and length in days, and its weight; a
    single neutral bucket when no level qualifies.
    """
    if months and total:
        month = np.array(sorted(months), dtype=np.int64)
        counts = np.array([months[m] for m in month.tolist()], dtype=np.float64)
        for level, width in (("months", 1), ("years", 12), ("decades", 120)):
            keys, inverse = np.unique(np.floor_divide(month, width), return_inverse=True)
            sums = np.bincount(inverse, weights=counts)
            keep = sums >= MIN_COUNT
            if keep.any() and sums[keep].sum() >= _COVERAGE * total:
                first = _month_days(keys[keep] * width)
                after = _month_days((keys[keep] + 1) * width)
                return level, first, after - first, sums[keep]
    first, after = _NEUTRAL_DAYS
    return (
        "neutral",
        np.array([first], dtype=np.int64),
        np.array([after - first], dtype=np.int64),
        np.ones(1),
    )


class _FakeLearner(_Learner):
    """Learns only the *format* of sensitive text: a recognised kind, or templates."""

    def __init__(self, field: pa.Field, *, identifier: bool) -> None:
        super().__init__(field)
        self.identifier = identifier
        self.sample: list[str] = []
        self.fake: str | None = None
        self.templates: _TemplateCounter | None = _TemplateCounter()

    def _update(self, values: pa.Array) -> None:
        if self.fake is None:
            step = max(1, len(values) // 1024)
            picked = np.arange(0, len(values), step, dtype=np.int64)[:1024]
            self.sample.extend(values.take(pa.array(picked)).to_pylist())
            if len(self.sample) >= _KIND_SAMPLE:
                self._decide()
        if self.templates is not None:
            self.templates.update(values)

    def _decide(self) -> None:
        self.fake = _recognise(self.sample)
        self.sample = []
        if self.fake != "template":
            self.templates = None

    def model(self) -> _Model:
        if self.fake is None:
            self._decide()
        if self.fake == "template":
            assert self.templates is not None
            return _TemplateModel(
                self.field, self.null_rate, self.templates, identifier=self.identifier, checked=True
            )
        assert self.fake is not None
        return _FakeModel(self.field, self.null_rate, self.fake, identifier=self.identifier)


class _NeutralLearner(_Learner):
    """A non-text identifier: only its null rate is learned."""

    def _update(self, values: pa.Array) -> None:
        pass

    def model(self) -> _Model:
        return _NeutralModel(self.field, self.null_rate, identifier=True)
