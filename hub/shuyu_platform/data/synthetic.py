"""Synthetic twins: each dataset's raw schema filled with invented rows, for every tenant (R5).

A tenant without a grant still has to write and test its code against something shaped
like the real data. :func:`build_synthetic` writes ``synthetic/<dataset>.parquet``: the raw
file's exact schema (column names, types, order, nullability) holding plausible values
and no real row. The sandbox mounts that folder read-only for every tenant.

What is learned from the raw file, and what is not
--------------------------------------------------

The raw file is streamed batch by batch (memory does not grow with its size) and only
coarse per-column marginals are kept:

* **categorical** columns (``type: category``, L1/L2 strings, booleans) keep the
  frequency of each value seen at least :data:`MIN_COUNT` times, so a rare value, which
  could point at one person, never appears. When the policy lists ``dp.public_keys``,
  only those keys are drawn. A column with more than :data:`MAX_CATEGORIES` distinct
  values is treated as text (see templates below);
* **numeric** columns keep a quantile sketch (:data:`QUANTILES` quantiles per batch, finer
  in the tails, merged) and draw values between the 1st and the 99th percentile only,
  never the extremes; floats keep the raw number of decimals. A numeric column with at most
  :data:`LOW_CARDINALITY` distinct values (an hour, a count) draws from its frequent
  values inside that range instead;
* **dates and timestamps** keep a histogram of months (coarsened to years or decades when
  too few months reach :data:`MIN_COUNT`), and timestamps a histogram of the hour of day;
  days, minutes and seconds are drawn uniformly;
* **free text and identifiers** (``identifier: true``, L3/L4 strings, or a column the
  policy does not describe) are never learned. The build only recognises their *format*
  from a small sample: resident ID card, unified social credit code, mobile number,
  Chinese personal name, enterprise name, or else a *template* of character classes
  shared by at least :data:`MIN_COUNT` values (``P`` followed by eleven digits, say), in
  which every digit and every Chinese character is drawn afresh. ID cards, credit codes
  and phones come from :mod:`shuyu_platform.data.identifiers` and pass their checksums; names
  come from a generic list of surnames and given-name characters, never from the data;
* every column keeps its null rate (0 for a non-nullable column).

Columns are drawn **independently of each other**: cross-column correlations (diagnosis
and cost, sex and name, insurance type and employer) are deliberately not preserved. A
twin is for writing code, not for analysis. The same ``(raw file, seed, rows)`` always
gives the same rows.

No real row
-----------

After drawing, the build checks and redraws:

* every value of a *checked* column (an identifier, or sensitive text: the columns whose
  values are invented) is absent from the raw values of that column. Identifier values
  are also unique within their column (personal and enterprise names excepted). A value
  still colliding after :data:`_FALLBACK_AFTER` rounds (its format leaves too few free
  values) is redrawn as a neutral value (twelve random digits for text) instead;
* no synthetic row equals a raw row. A row holding a value in a checked column already
  differs from every raw row; the remaining rows (all rows of a dataset without
  identifiers or sensitive text) are compared by a 64-bit hash of the whole row, and
  their unchecked columns redrawn.

Raw values and rows are remembered during the single pass over the raw file as 64-bit
hashes in Bloom filters (:class:`_HashFilter`): a filter has no false negatives, so a
value it does not hold is certainly not a raw value; a false positive (about 1.4 %) only
causes a needless redraw. The memory cost is one filter per checked column, plus one of
the rows when some rows can lack a checked value: :data:`FILTER_BITS_PER_VALUE` bits per
raw row, rounded up to a power of two, at most :data:`MAX_FILTER_BITS` bits. That is 2 MiB
per filter for a million raw rows (12 MiB for health_records' six checked columns) and
never more than 32 MiB per filter, whatever the size (beyond about 16 million rows, false
positives and so redraws grow). The twin's own identifier hashes (8 bytes per row and
unique column) are kept to keep identifiers distinct. If collisions remain after
:data:`MAX_ATTEMPTS` rounds the build fails rather than write a twin it cannot vouch for.

Writing
-------

The twin is written in row groups of :data:`CHUNK_ROWS` rows, zstd-compressed, into a
hidden temporary file beside the target, fsynced and renamed over it: readers see the
previous twin or the complete new one, and a failed build leaves the previous twin
untouched. The file's metadata says it is synthetic (``shuyu.synthetic: "true"``) and
names the dataset, the policy version, the seed and how each column was drawn. A raw file
that is missing or not readable Parquet raises :class:`SyntheticError` naming it, before
anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import operator
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shuyu_platform.core.atomic import replace_atomically
from shuyu_platform.data.demodata import DISTRICTS
from shuyu_platform.data.identifiers import (
    USCC_ALPHABET,
    build_id_cards,
    build_org_codes,
    build_usccs,
    is_mobile,
    is_valid_id_card,
    is_valid_uscc,
)
from shuyu_platform.data.policy import DatasetPolicy, FieldPolicy

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_MAX_ROWS",
    "MIN_COUNT",
    "SyntheticError",
    "SyntheticReport",
    "build_all",
    "build_synthetic",
]

#: Rows of a twin when ``rows`` is not given: the raw row count, at most this.
DEFAULT_MAX_ROWS: Final[int] = 100_000

#: A category, value, month or template seen fewer times than this is never drawn.
MIN_COUNT: Final[int] = 10

#: Quantiles kept per raw batch of a numeric column.
QUANTILES: Final[int] = 100

#: Numeric values are drawn between these quantiles (the extremes are never reproduced).
CLIP: Final[tuple[float, float]] = (0.01, 0.99)

#: A numeric column with at most this many distinct values is drawn like a category.
LOW_CARDINALITY: Final[int] = 64

#: A numeric column needs this many values for a quantile sketch; else neutral values.
MIN_NUMERIC_VALUES: Final[int] = 100

#: Distinct values (or templates) tracked per column before it counts as free text.
MAX_CATEGORIES: Final[int] = 10_000

#: Rows read per raw batch.
READ_BATCH_ROWS: Final[int] = 131_072

#: Rows generated, checked and written per chunk (one Parquet row group each).
CHUNK_ROWS: Final[int] = 65_536

#: Rounds of redrawing collisions before the build gives up.
MAX_ATTEMPTS: Final[int] = 100

#: Rounds after which colliding values are redrawn as neutral values instead.
_FALLBACK_AFTER: Final[int] = 20

#: Bloom filter size per raw value, and the largest filter (32 MiB).
FILTER_BITS_PER_VALUE: Final[int] = 16
MAX_FILTER_BITS: Final[int] = 1 << 28

#: Share of a sample that must pass a format check for the column to get that format.
_KIND_SHARE: Final[float] = 0.9
#: Sampled values a format is recognised from.
_KIND_SAMPLE: Final[int] = 256
#: Share of values the learned buckets or templates must cover to be used.
_COVERAGE: Final[float] = 0.8
_TEMPLATE_COVERAGE: Final[float] = 0.5

#: Dates used when a date column gives too little to learn from.
_NEUTRAL_DAYS: Final[tuple[int, int]] = (
    (date(2000, 1, 1) - date(1970, 1, 1)).days,
    (date(2025, 1, 1) - date(1970, 1, 1)).days,
)

_UInt64s = npt.NDArray[np.uint64]
_Bools = npt.NDArray[np.bool_]
_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]


# ============================================================================ results


class SyntheticError(Exception):
    """A synthetic twin could not be built (raw file missing or unreadable, unsupported
    column type, or no way to invent values unlike the raw ones).

    Nothing was written: any previous twin at the target path is untouched.
    """


@dataclass(frozen=True)
class SyntheticReport:
    """What :func:`build_synthetic` did, for the command line and the audit record."""

    dataset: str
    policy_version: int
    raw_path: Path
    out_path: Path
    seed: int
    rows_raw: int
    """Rows of the raw file."""
    rows_out: int
    """Rows of the twin."""
    columns: dict[str, str]
    """How each column was drawn (``categorical``, ``quantiles``, ``fake:id_card``...)."""
    values_redrawn: int
    """Values redrawn because they equalled a raw value or repeated an identifier."""
    rows_redrawn: int
    """Rows redrawn because they equalled a raw row."""
    synthetic_sha256: str
    built_at: datetime
    elapsed_seconds: float

    @property
    def path(self) -> Path:
        """The twin's file (same as ``out_path``)."""
        return self.out_path

    @property
    def rows(self) -> int:
        """Rows of the twin (same as ``rows_out``)."""
        return self.rows_out

    def __str__(self) -> str:
        return (
            f"{self.dataset}: {self.rows_out:,} invented rows (raw {self.rows_raw:,}) "
            f"-> {self.out_path.name} in {self.elapsed_seconds:.1f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (paths and times as strings)."""
        data = asdict(self)
        data["raw_path"] = str(self.raw_path)
        data["out_path"] = str(self.out_path)
        data["built_at"] = self.built_at.isoformat()
        return data


# ================================================================================ API


def build_synthetic(
    policy: DatasetPolicy,
    raw_path: Path,
    out_path: Path,
    *,
    rows: int | None = None,
    seed: int = 0,
) -> SyntheticReport:
    """Write the synthetic twin of ``raw_path`` at ``out_path`` and report on it.

    ``rows`` defaults to the raw row count, at most :data:`DEFAULT_MAX_ROWS`. The same
    raw file, ``seed`` and ``rows`` always give the same twin. Raises
    :class:`SyntheticError` (naming the file) when the raw file is missing, not readable
    Parquet or has a column type twins do not support, and :class:`ValueError` for a bad
    ``rows``. On any error nothing is written and a previous twin is untouched.
    """
    started = time.perf_counter()
    built_at = datetime.now(UTC)
    raw_path, out_path = Path(raw_path), Path(out_path)
    seed = _require_int(seed, "seed")
    if rows is not None and _require_int(rows, "rows") < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    if out_path.resolve() == raw_path.resolve():
        raise ValueError(f"the twin would overwrite its raw file {raw_path.name}")

    with _open_raw(raw_path) as parquet:
        schema = parquet.schema_arrow
        learners = [_learner(policy, raw_path, schema.field(i)) for i in range(len(schema.names))]
        checked = _columns_to_check(learners)
        check_rows = not any(not schema.field(i).nullable for i in checked)
        learned = _Learning(raw_path, schema, learners, checked, check_rows)
        learned.read(parquet)

    models = [learner.model() for learner in learners]
    checks = {
        i: _Check(learned.value_filters[i], models[i].unique)
        for i in sorted(learned.value_filters)
        if models[i].checked
    }
    total = min(learned.rows, DEFAULT_MAX_ROWS) if rows is None else rows
    methods = {field.name: model.method for field, model in zip(schema, models, strict=True)}
    out_schema = _twin_schema(policy, schema, seed, total, methods)
    generator = _Generator(policy.dataset, seed, out_schema, models, checks, learned.row_filter)

    def write(tmp: Path) -> None:
        _write_parquet(tmp, out_schema, generator.chunks(total))

    _, digest = replace_atomically(out_path, write, mode=0o644)
    return SyntheticReport(
        dataset=policy.dataset,
        policy_version=policy.version,
        raw_path=raw_path,
        out_path=out_path,
        seed=seed,
        rows_raw=learned.rows,
        rows_out=total,
        columns=methods,
        values_redrawn=generator.values_redrawn,
        rows_redrawn=generator.rows_redrawn,
        synthetic_sha256=digest,
        built_at=built_at,
        elapsed_seconds=time.perf_counter() - started,
    )


def build_all(
    policies: Mapping[str, DatasetPolicy],
    raw_dir: Path,
    synthetic_dir: Path,
    *,
    rows: int | None = None,
    seed: int = 0,
) -> list[SyntheticReport]:
    """Build ``synthetic_dir/<dataset>.parquet`` for every policy, in dataset order.

    A dataset whose policy does not list ``synthetic`` among its provision modes gets no
    twin (a stale one is deleted). When some twins cannot be built the others still
    are, then one :class:`SyntheticError` names every failure.
    """
    raw_dir, synthetic_dir = Path(raw_dir), Path(synthetic_dir)
    synthetic_dir.mkdir(parents=True, exist_ok=True)
    reports: list[SyntheticReport] = []
    failures: list[str] = []
    for name in sorted(policies):
        policy = policies[name]
        out_path = synthetic_dir / f"{policy.dataset}.parquet"
        if "synthetic" not in policy.catalogue.provision_modes:
            out_path.unlink(missing_ok=True)
            continue
        try:
            reports.append(
                build_synthetic(policy, raw_dir / policy.raw_file, out_path, rows=rows, seed=seed)
            )
        except SyntheticError as err:
            failures.append(f"{policy.dataset}: {err}")
    if failures:
        raise SyntheticError("synthetic twins not built: " + "; ".join(failures))
    return reports


def _require_int(value: int, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not a bool")
    return operator.index(value)


# ============================================================================ reading


@contextlib.contextmanager
def _open_raw(raw_path: Path) -> Iterator[pq.ParquetFile]:
    """Open the raw file, turning every way it can be missing or broken into an error."""
    try:
        source = pa.OSFile(str(raw_path))
    except FileNotFoundError:
        raise SyntheticError(f"raw file {raw_path.name} does not exist") from None
    except (OSError, pa.ArrowException) as err:
        raise SyntheticError(f"raw file {raw_path.name} cannot be opened: {err}") from None
    try:
        try:
            parquet = pq.ParquetFile(source, pre_buffer=False)
        except (OSError, pa.ArrowException) as err:
            raise SyntheticError(
                f"raw file {raw_path.name} is not a readable Parquet file: {err}"
            ) from None
        yield parquet
    finally:
        source.close()


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


def _decoded(column: pa.Array) -> pa.Array:
    """``column`` with a dictionary encoding undone (twins draw plain values)."""
    if pa.types.is_dictionary(column.type):
        return column.dictionary_decode()
    return column


def _storage_type(kind: pa.DataType) -> pa.DataType:
    """The type values are drawn in: the column's type, or its dictionary's value type."""
    return kind.value_type if pa.types.is_dictionary(kind) else kind


# ========================================================================== planning


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_temporal(kind: pa.DataType) -> bool:
    return pa.types.is_date(kind) or pa.types.is_timestamp(kind)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_float32(kind) or pa.types.is_float64(kind)


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


# ------------------------------------------------------------- format recognition


def _recognise(sample: Sequence[str]) -> str:
    """The fake kind a column's sampled values call for (``template`` if none fits)."""
    if not sample:
        return "template"
    checks: tuple[tuple[str, Callable[[str], bool]], ...] = (
        ("id_card", is_valid_id_card),
        ("credit_code", is_valid_uscc),
        ("phone", is_mobile),
        ("person_name", _looks_like_name),
        ("enterprise_name", lambda s: _ENTERPRISE_RE.fullmatch(s) is not None),
    )
    for kind, check in checks:
        if sum(1 for value in sample if check(value)) >= _KIND_SHARE * len(sample):
            return kind
    return "template"


def _looks_like_name(value: str) -> bool:
    if _NAME_RE.fullmatch(value) is None:
        return False
    return value[0] in _SURNAME_SET or value[:2] in _COMPOUND_SURNAMES


_NAME_RE: Final = re.compile(r"[\u4e00-\u9fff]{2,4}")
_ENTERPRISE_RE: Final = re.compile(
    r".*[\u4e00-\u9fff].*(公司|合作社|企业|厂|商行|店|中心|事务所|工作室)"
)

# ======================================================================== fake values

# Common surnames, most frequent first, and a few compound ones. Generic lists: nothing
# here comes from any dataset.
_SURNAMES: Final = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
_SURNAME_SET: Final = frozenset(_SURNAMES)
_COMPOUND_SURNAMES: Final = ("欧阳", "司马", "诸葛", "上官", "皇甫")
_GIVEN_CHARS: Final = (
    "伟强磊军勇杰涛明超刚平辉鹏华飞斌宇浩凯健俊帆旭宁龙林波成国建文志兵峰东亮海鑫洋雷阳晨博宏"
    "春毅诚彬松山川江昊然轩睿哲翔泽豪铭楠鸿振兴福德荣昌盛永庆云天逸皓霖煜锐钧航芳娜敏静丽艳娟"
    "霞秀英玲燕萍红梅琳婷雪慧倩颖琴兰丹洁蓉莉晶月欣怡佳琪璐瑶悦雯萱涵馨妍彤茜岚琼凤桂芬淑珍翠"
)
_PLACES: Final = ("绵阳", "四川", "涪城", "游仙", "安州", "三台", "盐亭", "梓潼", "北川", "江油")
_TRADE_CHARS: Final = (
    "鑫华盛源达兴恒泰丰瑞宏远诚信德润康佳明辉腾越新锦金利通安永顺汇博创富祥鼎中天宇"
)
_INDUSTRY_WORDS: Final = (
    "商贸", "科技", "建筑工程", "物流", "餐饮管理", "信息技术", "农业开发", "机械制造",
    "文化传播", "物业服务", "医药", "环保科技", "企业管理咨询", "汽车服务", "电子",
)  # fmt: skip
_LEGAL_FORMS: Final = ("有限公司", "有限责任公司", "股份有限公司")
_MOBILE_SEGMENTS: Final = np.array(
    [
        130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156,
        157, 158, 159, 166, 173, 175, 176, 177, 178, 180, 181, 182, 183, 185, 186, 187,
        188, 189, 191, 198, 199,
    ],
    dtype=np.int64,
)  # fmt: skip
_REGION_CODES: Final = np.array([int(code) for code in DISTRICTS.values()], dtype=np.int64)
#: Birth dates of invented ID card holders: adults born 1944-2006.
_BIRTH_DAYS: Final = (
    (date(1944, 1, 1) - date(1970, 1, 1)).days,
    (date(2007, 1, 1) - date(1970, 1, 1)).days,
)
_HAN_FILLER: Final = np.array([ord(c) for c in _SURNAMES + _GIVEN_CHARS], dtype=np.uint32)
_USCC_BYTES: Final = np.frombuffer(USCC_ALPHABET.encode("ascii"), dtype=np.uint8)


def _pick(rng: np.random.Generator, words: Sequence[str], n: int) -> pa.Array:
    """``n`` items of ``words`` drawn uniformly."""
    return pa.array(list(words), type=pa.string()).take(
        pa.array(rng.integers(0, len(words), n), type=pa.int64())
    )


def _join(*parts: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _digit_text(numbers: _Ints, width: int) -> pa.Array:
    """Non-negative integers as zero-padded decimal strings of ``width`` characters."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = ((numbers[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    return _ascii_rows(digits)


def _ascii_rows(matrix: npt.NDArray[np.uint8]) -> pa.Array:
    """An (n, width) matrix of ASCII bytes as n strings."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def _fake_id_cards(rng: np.random.Generator, n: int) -> pa.Array:
    cards = build_id_cards(
        _REGION_CODES[rng.integers(0, _REGION_CODES.size, n)],
        rng.integers(*_BIRTH_DAYS, n).astype("datetime64[D]"),
        rng.integers(0, 1000, n),
    )
    return _ascii_rows(np.ascontiguousarray(cards).view(np.uint8).reshape(n, 18))


def _fake_credit_codes(rng: np.random.Generator, n: int) -> pa.Array:
    legacy = (rng.integers(0, 10, (n, 8)) + ord("0")).astype(np.uint8)
    reform = np.concatenate(
        [
            np.broadcast_to(np.frombuffer(b"MA6", dtype=np.uint8), (n, 3)),
            _USCC_BYTES[rng.integers(0, _USCC_BYTES.size, (n, 5))],
        ],
        axis=1,
    )
    bodies = np.where((rng.random(n) < 0.5)[:, None], reform, legacy)
    orgs = build_org_codes(np.ascontiguousarray(bodies, dtype=np.uint8).view("S8").ravel())
    codes = build_usccs(_REGION_CODES[rng.integers(0, _REGION_CODES.size, n)], orgs)
    return _ascii_rows(np.ascontiguousarray(codes).view(np.uint8).reshape(n, 18))


def _fake_phones(rng: np.random.Generator, n: int) -> pa.Array:
    segment = _MOBILE_SEGMENTS[rng.integers(0, _MOBILE_SEGMENTS.size, n)]
    return _digit_text(segment * 10**8 + rng.integers(0, 10**8, n), 11)


def _fake_names(rng: np.random.Generator, n: int) -> pa.Array:
    weights = 1.0 / (np.arange(len(_SURNAMES)) + 8.0)
    surname_index = rng.choice(len(_SURNAMES), size=n, p=weights / weights.sum())
    surnames = pa.array(list(_SURNAMES), type=pa.string()).take(pa.array(surname_index))
    compound = rng.random(n) < 0.01
    surnames = pc.if_else(pa.array(compound), _pick(rng, _COMPOUND_SURNAMES, n), surnames)
    first = _pick(rng, _GIVEN_CHARS, n)
    second = pc.if_else(pa.array(rng.random(n) < 0.7), _pick(rng, _GIVEN_CHARS, n), "")
    return _join(surnames, first, second)


def _fake_enterprise_names(rng: np.random.Generator, n: int) -> pa.Array:
    return _join(
        _pick(rng, _PLACES, n),
        _pick(rng, _TRADE_CHARS, n),
        _pick(rng, _TRADE_CHARS, n),
        _pick(rng, _INDUSTRY_WORDS, n),
        _pick(rng, _LEGAL_FORMS, n),
    )


_FAKERS: Final[dict[str, Callable[[np.random.Generator, int], pa.Array]]] = {
    "id_card": _fake_id_cards,
    "credit_code": _fake_credit_codes,
    "phone": _fake_phones,
    "person_name": _fake_names,
    "enterprise_name": _fake_enterprise_names,
}


def _fill_templates(rng: np.random.Generator, templates: Sequence[str], index: _Ints) -> pa.Array:
    """One string per entry of ``index``: its template with every marker drawn afresh."""
    n = index.size
    out: list[pa.Array] = []
    order = np.argsort(index, kind="stable")
    for which in np.unique(index).tolist():
        template = templates[which]
        k = int(np.count_nonzero(index == which))
        if not template:
            out.append(pa.array([""] * k, type=pa.string()))
            continue
        codes = np.frombuffer(template.encode("utf-32-le"), dtype=np.uint32)
        matrix = np.broadcast_to(codes, (k, codes.size)).copy()
        for marker, low, size in ((_DIGIT, 48, 10), (_UPPER, 65, 26), (_LOWER, 97, 26)):
            at = codes == ord(marker)
            if at.any():
                matrix[:, at] = low + rng.integers(0, size, (k, int(at.sum())))
        at = codes == ord(_HAN)
        if at.any():
            matrix[:, at] = _HAN_FILLER[rng.integers(0, _HAN_FILLER.size, (k, int(at.sum())))]
        out.append(pa.array(matrix.view(f"<U{codes.size}").ravel(), type=pa.string()))
    grouped = pa.concat_arrays(out) if out else pa.array([], type=pa.string())
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return grouped.take(pa.array(inverse))


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


# ========================================================================= generating


@dataclass
class _Check:
    """A column whose drawn values must not be raw values (and maybe must be distinct)."""

    raw: _HashFilter
    unique: bool
    seen: list[_UInt64s] | None = None


class _Generator:
    """Draws the twin chunk by chunk, redrawing every value or row that is not new."""

    def __init__(
        self,
        dataset: str,
        seed: int,
        schema: pa.Schema,
        models: Sequence[_Model],
        checks: Mapping[int, _Check],
        row_filter: _HashFilter | None,
    ) -> None:
        self.dataset = dataset
        self.seed = seed
        self.schema = schema
        self.models = models
        self.checks = checks
        self.row_filter = row_filter
        self.values_redrawn = 0
        self.rows_redrawn = 0

    def _rng(self, column: int, *labels: str | int) -> np.random.Generator:
        return _rng(self.seed, self.dataset, self.schema.field(column).name, *labels)

    def chunks(self, total: int) -> Iterator[pa.Table]:
        """The twin's rows as tables of at most :data:`CHUNK_ROWS` rows."""
        for chunk, start in enumerate(range(0, total, CHUNK_ROWS)):
            n = min(CHUNK_ROWS, total - start)
            arrays = [
                model.generate(self._rng(i, "chunk", chunk), n)
                for i, model in enumerate(self.models)
            ]
            for i, check in self.checks.items():
                arrays[i] = self._new_values(i, check, arrays[i], chunk)
            self._new_rows(arrays, chunk)
            columns = [
                array.cast(field.type) if array.type != field.type else array
                for array, field in zip(arrays, self.schema, strict=True)
            ]
            yield pa.Table.from_arrays(columns, schema=self.schema)

    def _new_values(self, i: int, check: _Check, array: pa.Array, chunk: int) -> pa.Array:
        """Redraw values of column ``i`` found among the raw values (or repeated)."""
        earlier = np.concatenate(check.seen) if check.seen else np.zeros(0, dtype=np.uint64)
        for attempt in range(MAX_ATTEMPTS + 1):
            hashes, valid = _hash_column(array)
            bad = valid & check.raw.contains(hashes)
            if check.unique:
                bad |= valid & np.isin(hashes, earlier)
                bad |= _repeats(hashes, valid & ~bad)
            count = int(np.count_nonzero(bad))
            if not count:
                break
            if attempt == MAX_ATTEMPTS:
                raise SyntheticError(
                    f"cannot invent values of {self.dataset}.{self.schema.field(i).name} "
                    f"unlike the raw ones: {count} still collide after {MAX_ATTEMPTS} redraws"
                )
            rng = self._rng(i, "redraw", chunk, attempt)
            model = self.models[i]
            redrawn = (
                model.values(rng, count)
                if attempt < _FALLBACK_AFTER
                else model.fallback(rng, count)
            )
            array = pc.replace_with_mask(array, pa.array(bad), redrawn)
            self.values_redrawn += count
        if check.unique:
            check.seen = [*(check.seen or []), hashes[valid]]
        return array

    def _new_rows(self, arrays: list[pa.Array], chunk: int) -> None:
        """Redraw, in place, rows equal to a raw row.

        Only rows whose checked columns are all null can equal a raw row; the other
        columns of such rows are redrawn until their row hash is not a raw one.
        """
        n = len(arrays[0]) if arrays else 0
        candidates = np.ones(n, dtype=bool)
        for i in self.checks:
            candidates &= np.asarray(arrays[i].is_null())
        if not candidates.any():
            return
        if self.row_filter is None:
            raise AssertionError("rows without a checked value need the raw row filter")
        redraw = [i for i in range(len(arrays)) if i not in self.checks]
        for attempt in range(MAX_ATTEMPTS + 1):
            bad = candidates & self.row_filter.contains(_row_hashes(arrays, n))
            count = int(np.count_nonzero(bad))
            if not count:
                return
            if attempt == MAX_ATTEMPTS:
                raise SyntheticError(
                    f"cannot invent rows of {self.dataset} unlike the raw ones: {count} "
                    f"still equal a raw row after {MAX_ATTEMPTS} redraws"
                )
            mask = pa.array(bad)
            for i in redraw:
                fresh = self.models[i].generate(self._rng(i, "row-redraw", chunk, attempt), count)
                arrays[i] = pc.replace_with_mask(arrays[i], mask, fresh)
            self.rows_redrawn += count


def _repeats(hashes: _UInt64s, among: _Bools) -> _Bools:
    """Positions in ``among`` whose hash occurred at an earlier position in ``among``."""
    repeated = np.zeros(hashes.size, dtype=bool)
    positions = np.flatnonzero(among)
    if positions.size:
        _, first = np.unique(hashes[positions], return_index=True)
        later = np.ones(positions.size, dtype=bool)
        later[first] = False
        repeated[positions[later]] = True
    return repeated


def _rng(seed: int, *labels: str | int) -> np.random.Generator:
    """An independent PCG64 generator for ``(seed, *labels)``, stable across runs."""
    text = "\x1f".join(["shuyu.synthetic.v1", str(seed), *(str(label) for label in labels)])
    entropy = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


# ============================================================================ hashing

_M1: Final = np.uint64(0xBF58476D1CE4E5B9)
_M2: Final = np.uint64(0x94D049BB133111EB)
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_STRING_BASE: Final = np.uint64(0x100000001B3)
_NULL_HASH: Final = np.uint64(0x6E756C6C6E756C6C)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix64(values: _UInt64s) -> _UInt64s:
    """The splitmix64 finaliser: a bijective 64-bit mix (wraps on overflow)."""
    z = values + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


_powers_cache: list[_UInt64s] = [np.ones(1, dtype=np.uint64)]


def _powers(length: int) -> _UInt64s:
    """``_STRING_BASE ** i`` modulo 2**64 for ``i`` in ``0..length``."""
    table = _powers_cache[0]
    if table.size <= length:
        table = np.cumprod(
            np.concatenate([[1], np.full(max(length, 2 * table.size), _STRING_BASE)]).astype(
                np.uint64
            ),
            dtype=np.uint64,
        )
        _powers_cache[0] = table
    return table


def _hash_column(column: pa.Array) -> tuple[_UInt64s, _Bools]:
    """A 64-bit hash of each value of a column, and which values are not null.

    Equal values always get equal hashes (so a value whose hash is not among the raw
    hashes is certainly not a raw value); different values almost never do. NaN and
    -0.0 are folded into NaN and 0.0.
    """
    column = _decoded(column)
    n = len(column)
    valid = ~np.asarray(column.is_null(), dtype=bool) if column.null_count else np.ones(n, bool)
    kind = column.type
    if _is_text(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        bits = _text_hashes(column)
    elif pa.types.is_boolean(kind):
        bits = np.asarray(column.fill_null(False), dtype=bool).astype(np.uint64)
    else:
        width = kind.bit_width // 8
        dtype = {
            "f": {4: np.float32, 8: np.float64},
            "i": {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64},
        }
        buffer = column.buffers()[1]
        if pa.types.is_floating(kind):
            numbers = np.frombuffer(buffer, dtype=dtype["f"][width])[column.offset :][:n]
            numbers = numbers.astype(np.float64) + 0.0
            numbers = np.where(np.isnan(numbers), np.nan, numbers)
            bits = numbers.view(np.uint64)
        else:
            raw = np.frombuffer(buffer, dtype=dtype["i"][width])[column.offset :][:n]
            bits = raw.astype(np.int64).view(np.uint64)
    hashes = _mix64(bits)
    hashes[~valid] = _NULL_HASH
    return hashes, valid


def _text_buffers(column: pa.Array) -> tuple[_Ints, npt.NDArray[np.uint8]]:
    """A text column's value offsets (``len + 1`` of them) and its bytes, without copies."""
    n = len(column)
    large = pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type)
    buffers = column.buffers()
    if buffers[1] is None:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, np.uint8)
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if large else np.int32)
    offsets = offsets[column.offset : column.offset + n + 1].astype(np.int64)
    data = np.zeros(0, np.uint8) if buffers[2] is None else np.frombuffer(buffers[2], np.uint8)
    return offsets, data


def _text_hashes(column: pa.Array) -> _UInt64s:
    """Polynomial hashes of the UTF-8 bytes of each string, mixed with its length."""
    n = len(column)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    offsets, data = _text_buffers(column)
    first, last = int(offsets[0]), int(offsets[-1])
    lengths = np.diff(offsets)
    width = int(lengths.max())
    powers = _powers(width)
    if width and int(lengths.min()) == width:  # fixed width (codes): one matrix product
        matrix = data[first:last].reshape(n, width).astype(np.uint64) + np.uint64(1)
        sums = (matrix * powers[:width]).sum(axis=1, dtype=np.uint64)
        return sums ^ _mix64(lengths.astype(np.uint64))
    position = np.arange(last - first, dtype=np.int64) - np.repeat(offsets[:-1] - first, lengths)
    terms = (data[first:last].astype(np.uint64) + np.uint64(1)) * powers[position]
    running = np.concatenate([np.zeros(1, dtype=np.uint64), np.cumsum(terms, dtype=np.uint64)])
    sums = running[offsets[1:] - first] - running[offsets[:-1] - first]
    return sums ^ _mix64(lengths.astype(np.uint64))


def _row_hashes(columns: Sequence[pa.Array], n: int) -> _UInt64s:
    """A 64-bit hash of each row of ``columns`` (order matters, nulls count)."""
    hashes = np.full(n, np.uint64(0x5EED), dtype=np.uint64)
    for column in columns:
        values, _ = _hash_column(column)
        hashes = _mix64((hashes * _STRING_BASE) ^ values)
    return hashes


class _HashFilter:
    """A Bloom filter of 64-bit hashes with two probes.

    It never forgets a hash it was given (no false negatives); it may claim one it was
    not given (a false positive, about 1.4 % at 16 bits per value), which only causes a
    needless redraw. Sized for ``expected`` hashes: :data:`FILTER_BITS_PER_VALUE` bits
    each, at least 2**16 and at most :data:`MAX_FILTER_BITS` bits.
    """

    def __init__(self, expected: int) -> None:
        wanted = max(1, expected) * FILTER_BITS_PER_VALUE
        bits = min(MAX_FILTER_BITS, max(1 << 16, 1 << math.ceil(math.log2(wanted))))
        self.mask = np.uint64(bits - 1)
        self.bytes = np.zeros(bits // 8, dtype=np.uint8)

    def _probes(self, hashes: _UInt64s) -> tuple[_UInt64s, _UInt64s]:
        return hashes & self.mask, _mix64(hashes ^ _M2) & self.mask

    def add(self, hashes: _UInt64s) -> None:
        """Remember ``hashes``."""
        for probe in self._probes(hashes):
            byte = (probe >> np.uint64(3)).astype(np.int64)
            bit = (probe & np.uint64(7)).astype(np.uint8)
            for shift in range(8):
                chosen = byte[bit == shift]
                # Repeated indices all write the same value, so fancy indexing is exact.
                self.bytes[chosen] |= np.uint8(1 << shift)

    def contains(self, hashes: _UInt64s) -> _Bools:
        """Whether each hash may have been added (certainly not, where False)."""
        found = np.ones(hashes.size, dtype=bool)
        for probe in self._probes(hashes):
            byte = (probe >> np.uint64(3)).astype(np.int64)
            bit = (probe & np.uint64(7)).astype(np.uint8)
            found &= ((self.bytes[byte] >> bit) & 1).astype(bool)
        return found


# ============================================================================ writing


def _twin_schema(
    policy: DatasetPolicy, raw: pa.Schema, seed: int, rows: int, methods: Mapping[str, str]
) -> pa.Schema:
    """The raw schema (fields and their metadata) with the twin's own file metadata."""
    return pa.schema(list(raw)).with_metadata(
        {
            "shuyu.synthetic": "true",
            "shuyu.dataset": policy.dataset,
            "shuyu.title": policy.catalogue.title,
            "shuyu.policy_version": str(policy.version),
            "shuyu.seed": str(seed),
            "shuyu.rows": str(rows),
            "shuyu.synthetic.columns": json.dumps(dict(methods), ensure_ascii=False),
            "shuyu.synthetic.note": (
                "Invented rows for writing code: each column drawn independently from "
                "coarse marginals of the raw data; no real row; correlations not kept."
            ),
        }
    )


def _write_parquet(path: Path, schema: pa.Schema, tables: Iterable[pa.Table]) -> None:
    """Write ``tables`` as zstd-compressed row groups of a new Parquet file at ``path``."""
    writer = pq.ParquetWriter(str(path), schema, compression="zstd")
    try:
        for table in tables:
            writer.write_table(table, row_group_size=max(1, table.num_rows))
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        raise
    writer.close()
