"""Masked views: the Parquet files a tenant's notebooks read instead of raw data.

:func:`build_view` turns one raw Parquet file into one view file: it keeps the rows a
row filter selects, masks the requested fields as the dataset policy says
(:mod:`shuyu_platform.data.masking`), and suppresses every row whose quasi-identifier class
(the combination of its *masked* quasi-identifier values, over the policy's whole
attacker model) holds fewer than ``k`` rows, or too few distinct values of a sensitive
attribute (l-diversity), so that no combination of what an attacker knows points at
fewer than ``k`` rows or reveals a sensitive value.

The raw file is streamed batch by batch, never read whole, so views of files larger
than memory can be built:

1. pass 1 reads only the quasi-identifier, sensitive and filter columns and counts the
   rows of each class, and of each (class, sensitive value) pair, at every level of the
   fields' generalisation hierarchies (memory grows with the number of classes, not of
   rows). The finest level whose suppression stays within the policy's
   ``risk_limits.max_suppressed_share`` is chosen, and the view's risk
   (:mod:`shuyu_platform.data.risk`) is measured on the classes it keeps. A view above
   the policy's risk limits fails here with :class:`ViewRiskError`, before anything is
   written;
2. pass 2 reads the requested columns, row groups in a keyed random order, masks them
   and writes the kept rows. Rows are shuffled in windows of :data:`SHUFFLE_ROWS`
   (the whole view, when smaller) with a permutation keyed by the tenant key, so a
   row's position says nothing about the raw order, and two tenants' views cannot be
   lined up by position. Reading the next batch, masking this one and compressing the
   last one overlap in three threads. On a large file a helper process masks the keyed
   columns (pseudonyms, per-person shifts and noise) from the last batch backwards,
   from the start of pass 1 on, and pass 2 takes the batches it has finished
   (:mod:`shuyu_platform.data.keyed_ahead`).

The view is written to a hidden temporary file beside the target, fsynced and renamed
over it, so readers see either the previous view or the complete new one; an exception
or a crash never leaves a partial view behind. An exception removes the temporary file;
the next build of the same view removes one left by a killed process.

:class:`ViewReport` says what was done, with the SHA-256 of the raw input and of the
view and the measured risk (:class:`~shuyu_platform.data.risk.ViewRisk`), for the audit
record. The view's file metadata names the dataset, the policy version, the fields, the
quasi-identifiers and sensitive attributes, k, the generalisation level, the build time
and the risk (``shuyu.risk``); never any key, and no row order survives (the order key
derives from the tenant key and never leaves the platform).

This module knows no tenant, database or audit chain: callers derive the tenant key
(:func:`shuyu_platform.data.masking.tenant_key`), choose the fields and filter of a grant,
and record the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from shuyu_platform.core.atomic import replace_atomically
from shuyu_platform.data import masking
from shuyu_platform.data.masking import MicroGroups
from shuyu_platform.data.policy import DatasetPolicy, MicroaggregateMasking
from shuyu_platform.data.risk import (
    COUNT,
    ClassStatistics,
    MeanAccumulator,
    ViewRisk,
    class_statistics,
    measure,
)

from . import keyed_ahead
from .classes import ClassCounter, Coder, class_keys, kept_rows
from .keyed_ahead import KeyedAhead, filter_rows, keyed_fields
from .rawfile import open_raw

__all__ = [
    "BATCH_ROWS",
    "SHUFFLE_ROWS",
    "ViewBuildError",
    "ViewReport",
    "ViewRiskError",
    "build_view",
    "generalisation_levels",
]

#: Rows read, masked and written per batch (each batch becomes at most one row group).
BATCH_ROWS: Final[int] = 131_072

#: Rows shuffled together: a view of at most this many rows is one uniform keyed
#: permutation; a larger one is shuffled window by window, its raw row groups read in a
#: keyed random order, so a row's position reveals at most which window it is in.
SHUFFLE_ROWS: Final[int] = 1 << 20


_HASH_CHUNK: Final[int] = 8 * 1024 * 1024
_COUNT: Final[str] = COUNT

T = TypeVar("T")


class ViewBuildError(Exception):
    """A view could not be built from its raw file (missing, unreadable, not Parquet).

    Nothing was written: any previous view at the target path is untouched.
    """


class ViewRiskError(ViewBuildError):
    """The view would carry more re-identification risk than its policy allows.

    Nothing was written. ``risk`` holds the figures the build measured.
    """

    def __init__(self, message: str, risk: ViewRisk) -> None:
        super().__init__(message)
        self.risk = risk


@dataclass(frozen=True)
class ViewReport:
    """What :func:`build_view` did, for the caller's audit record."""

    dataset: str
    policy_version: int
    raw_path: Path
    out_path: Path
    fields: tuple[str, ...]
    """The view's columns, in policy order."""
    quasi_identifiers: tuple[str, ...]
    """The policy's quasi-identifiers that are in the view (k-anonymity is over these)."""
    k: int
    reference_date: date
    row_filter: dict[str, list[Any]] = field(repr=False)
    rows_in: int
    """Rows of the raw file."""
    rows_filtered_out: int
    """Rows the row filter left out."""
    rows_suppressed: int
    """Rows that passed the filter but belong to a class of fewer than ``k`` rows."""
    classes_suppressed: int
    """Quasi-identifier classes of fewer than ``k`` rows (all their rows suppressed)."""
    rows_out: int
    raw_sha256: str
    view_sha256: str
    built_at: datetime
    elapsed_seconds: float
    risk: ViewRisk | None = None
    """Re-identification risk and utility of the rows written (see :mod:`.risk`)."""

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (paths and dates as strings)."""
        data = asdict(self)
        data["risk"] = None if self.risk is None else self.risk.as_dict()
        for name in ("raw_path", "out_path"):
            data[name] = str(data[name])
        data["fields"] = list(self.fields)
        data["quasi_identifiers"] = list(self.quasi_identifiers)
        data["reference_date"] = self.reference_date.isoformat()
        data["built_at"] = self.built_at.isoformat()
        data["row_filter"] = {
            column: [_json_value(value) for value in values]
            for column, values in self.row_filter.items()
        }
        return data


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


# ============================================================================== build


def build_view(
    policy: DatasetPolicy,
    raw_path: Path,
    out_path: Path,
    *,
    key: bytes,
    fields: Sequence[str],
    reference_date: date,
    row_filter: Mapping[str, Sequence[Any]] | None = None,
    k: int | None = None,
    compression: str = "zstd",
    metadata: Mapping[str, str] | None = None,
    progress: bool = False,
) -> ViewReport:
    """Build the masked view of ``fields`` of ``raw_path`` at ``out_path``.

    ``key`` is the tenant key (:func:`shuyu_platform.data.masking.tenant_key`);
    ``reference_date`` the day ages are computed on (use the build date).
    ``row_filter`` keeps only rows whose raw column values are in the given sets
    (``{"district": ["涪城区", "游仙区"]}``; several columns must all match).
    ``k`` defaults to the policy's ``privacy.k_anonymity``; 1 disables suppression.
    ``metadata`` adds file-level key-value metadata (for instance the tenant's name);
    it must never carry key material. ``progress`` shows a progress bar per pass.

    Raises :class:`ValueError` (naming the field or column) for a field that may not be
    in a view or is missing from the raw file, or a malformed filter; and
    :class:`ViewBuildError` when the raw file is missing or not readable Parquet. In
    every error case nothing is written and a previous view at ``out_path`` is intact.
    """
    started = time.perf_counter()
    built_at = datetime.now(UTC)
    names = masking.view_fields(policy, fields)
    k = policy.privacy.k_anonymity if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not isinstance(key, bytes) or len(key) < masking.MIN_KEY_BYTES:
        raise ValueError(f"key must be a tenant key of at least {masking.MIN_KEY_BYTES} bytes")
    extra = _extra_metadata(metadata)
    raw_path, out_path = Path(raw_path), Path(out_path)
    if out_path.resolve() == raw_path.resolve():
        raise ValueError(f"the view would overwrite its raw file {raw_path.name}")
    qis = tuple(q for q in policy.privacy.quasi_identifiers if q in names)
    sensitive = tuple(a for a in policy.privacy.sensitive_attributes if a in names)
    protect = k > 1
    diversity = policy.privacy.l_diversity if protect else None
    levels = generalisation_levels(policy, names) if protect and qis else [policy]

    with (
        open_raw(raw_path, ViewBuildError) as (source, parquet),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="shuyu-hash") as hasher,
        contextlib.ExitStack() as stack,
    ):
        filters = _check_columns(policy, raw_path, parquet.schema_arrow, names, row_filter)
        abandon = threading.Event()
        raw_digest = hasher.submit(_sha256_fd, source.fileno(), abandon)
        try:
            build = _Build(
                policy, raw_path, source, parquet, key, reference_date, filters, progress
            )
            ahead = build.mask_ahead(levels, names, out_path)
            if ahead is not None:
                stack.callback(ahead.close)
            level, stats, counted, suppressed = 0, None, None, None
            if qis:
                level, stats, counted, suppressed = build.choose_level(
                    levels, qis, sensitive, k, diversity, policy.privacy.risk_limits
                )
            chosen = levels[level]
            risk = None
            if stats is not None and counted is not None:
                risk = measure(
                    stats,
                    quasi_identifiers=qis,
                    sensitive_attributes=sensitive,
                    k=k,
                    l_diversity=diversity,
                    level=level,
                    rows_considered=counted[1],
                )
                breaches = risk.breaches(policy.privacy.risk_limits) if protect else []
                if breaches:
                    raise ViewRiskError(
                        f"the view of {policy.dataset} would be above its policy's risk "
                        f"limits: {'; '.join(breaches)}. The previous view is kept.",
                        risk,
                    )
            schema = masking.view_schema(chosen, names, parquet.schema_arrow).with_metadata(
                {
                    "shuyu.dataset": policy.dataset,
                    "shuyu.title": policy.catalogue.title,
                    "shuyu.policy_version": str(policy.version),
                    "shuyu.fields": json.dumps(list(names)),
                    "shuyu.quasi_identifiers": json.dumps(list(qis)),
                    "shuyu.sensitive_attributes": json.dumps(list(sensitive)),
                    "shuyu.k_anonymity": str(k),
                    "shuyu.generalisation_level": str(level),
                    "shuyu.row_order": "keyed-random",
                    "shuyu.reference_date": reference_date.isoformat(),
                    "shuyu.row_filter_columns": json.dumps(sorted(filters)),
                    "shuyu.built_at": built_at.isoformat(),
                    **extra,
                }
            )

            def final_risk(written: _Written) -> ViewRisk:
                base = risk or _trivial_risk(qis, sensitive, k, written)
                return replace(base, mean_errors=written.mean_errors)

            def write(tmp: Path) -> _Written:
                written = build.write(
                    tmp,
                    schema,
                    chosen,
                    names,
                    qis,
                    suppressed,
                    compression,
                    raw_digest,
                    final_risk,
                    ahead,
                )
                if counted is not None and counted != (written.rows_in, written.rows_kept):
                    raise ViewBuildError(f"{raw_path.name} changed while the view was built")
                return written

            written, view_digest = replace_atomically(out_path, write)
        except BaseException:
            abandon.set()  # do not read the rest of a large raw file for nothing
            raise

    return ViewReport(
        dataset=policy.dataset,
        policy_version=policy.version,
        raw_path=raw_path,
        out_path=out_path,
        fields=names,
        quasi_identifiers=qis,
        k=k,
        reference_date=reference_date,
        row_filter={column: list(values) for column, values in (row_filter or {}).items()},
        rows_in=written.rows_in,
        rows_filtered_out=written.rows_in - written.rows_kept,
        rows_suppressed=written.rows_suppressed,
        classes_suppressed=0 if stats is None else int(stats.suppressed.sum()),
        rows_out=written.rows_out,
        raw_sha256=raw_digest.result(),
        view_sha256=view_digest,
        built_at=built_at,
        elapsed_seconds=time.perf_counter() - started,
        risk=written.risk,
    )


def generalisation_levels(policy: DatasetPolicy, names: Sequence[str]) -> list[DatasetPolicy]:
    """``policy`` at each level of its fields' hierarchies, finest (the policy) first.

    Level ``i`` masks every field of ``names`` that has a ``hierarchy`` with its
    ``i``-th coarser rule (its coarsest, when its hierarchy is shorter).
    """
    depth = max((len(policy.fields[name].hierarchy) for name in names), default=0)
    levels = [policy]
    for index in range(depth):
        fields = dict(policy.fields)
        for name in names:
            ladder = policy.fields[name].hierarchy
            if ladder:
                fields[name] = fields[name].with_masking(ladder[min(index, len(ladder) - 1)])
        levels.append(policy.model_copy(update={"fields": fields}))
    return levels


def _trivial_risk(
    qis: tuple[str, ...], sensitive: tuple[str, ...], k: int, written: _Written
) -> ViewRisk:
    """The risk of a view without quasi-identifiers: all its rows in one class."""
    rows = written.rows_out
    return ViewRisk(
        quasi_identifiers=qis,
        sensitive_attributes=sensitive,
        k=k,
        l_diversity=None,
        level=0,
        records=rows,
        classes=1 if rows else 0,
        smallest_class=rows,
        max_prosecutor_risk=1.0 / rows if rows else 0.0,
        average_prosecutor_risk=1.0 / rows if rows else 0.0,
        records_below_k_share=1.0 if 0 < rows < k else 0.0,
        unique_records=1 if rows == 1 else 0,
        lowest_l={},
        lowest_entropy_l={},
        rows_considered=written.rows_kept,
        rows_suppressed=written.rows_suppressed,
    )


def _extra_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's extra file metadata, checked not to override the build's own keys."""
    extra = dict(metadata or {})
    for name, value in extra.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError("metadata keys and values must be strings")
        if name in _reserved_metadata():
            raise ValueError(f"metadata key {name!r} is set by build_view itself")
    return extra


def _reserved_metadata() -> frozenset[str]:
    return frozenset(
        {
            "shuyu.dataset",
            "shuyu.title",
            "shuyu.policy_version",
            "shuyu.fields",
            "shuyu.quasi_identifiers",
            "shuyu.sensitive_attributes",
            "shuyu.k_anonymity",
            "shuyu.generalisation_level",
            "shuyu.row_order",
            "shuyu.risk",
            "shuyu.reference_date",
            "shuyu.row_filter_columns",
            "shuyu.built_at",
            "shuyu.raw_sha256",
            "shuyu.rows",
            "ARROW:schema",
        }
    )


# ============================================================================ reading


def _check_columns(
    policy: DatasetPolicy,
    raw_path: Path,
    raw_schema: pa.Schema,
    names: Sequence[str],
    row_filter: Mapping[str, Sequence[Any]] | None,
) -> dict[str, pa.Array]:
    """Check fields and filter against the raw schema; return the filter as value sets."""
    columns = set(raw_schema.names)
    for name in names:
        if name not in columns:
            raise ValueError(
                f"field {name!r} of dataset {policy.dataset!r} is not a column of {raw_path.name}"
            )
    unit = policy.privacy.privacy_unit
    if any(masking.needs_unit(policy.fields[n]) for n in names) and (
        unit is None or unit not in columns
    ):
        raise ValueError(
            f"dataset {policy.dataset!r}: date-shifted or noisy fields need the privacy unit "
            f"{unit!r} as a column of {raw_path.name}"
        )
    value_sets: dict[str, pa.Array] = {}
    if row_filter is None:
        return value_sets
    if not isinstance(row_filter, Mapping):
        raise ValueError("row_filter must map column names to sequences of values")
    for column, values in row_filter.items():
        if column not in columns:
            raise ValueError(f"row filter column {column!r} is not a column of {raw_path.name}")
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ValueError(
                f"row filter column {column!r}: give a sequence of values, not {values!r}"
            )
        kind = raw_schema.field(column).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        value_sets[column] = _filter_values(column, list(values), kind)
    return value_sets


def _filter_values(column: str, values: list[Any], kind: pa.DataType) -> pa.Array:
    """The filter values of ``column`` as an array of its type (``"2024-01-31"`` for a date)."""
    scalars = []
    for value in values:
        try:
            scalars.append(pa.scalar(value, type=kind))
        except (pa.ArrowException, TypeError, ValueError):
            try:
                scalars.append(pa.scalar(value).cast(kind))
            except (pa.ArrowException, TypeError, ValueError) as err:
                raise ValueError(
                    f"row filter column {column!r}: {value!r} is not a {kind} value ({err})"
                ) from None
    return pa.array(scalars, type=kind)


def _sha256_fd(fd: int, abandon: threading.Event | None = None) -> str:
    """SHA-256 (hex) of a whole file, read with ``pread`` so no file offset is shared.

    Returns an empty string when ``abandon`` is set before the end.
    """
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, _HASH_CHUNK, offset):
        if abandon is not None and abandon.is_set():
            return ""
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _prefetched(items: Iterator[T], pool: ThreadPoolExecutor) -> Iterator[T]:
    """Yield ``items``, computing the next one in ``pool`` while the caller works."""
    done = object()

    def pull() -> Any:
        return next(items, done)

    pending: Future[Any] = pool.submit(pull)
    try:
        while (item := pending.result()) is not done:
            pending = pool.submit(pull)
            yield item
    finally:
        pending.cancel()
        with contextlib.suppress(BaseException):
            pending.result()


@dataclass
class _Written:
    """Row counts of pass 2."""

    rows_in: int = 0
    rows_kept: int = 0
    rows_suppressed: int = 0
    rows_out: int = 0
    mean_errors: dict[str, Any] = field(default_factory=dict)
    risk: ViewRisk | None = None


class _Build:
    """The two passes of one view build over one open raw file."""

    def __init__(
        self,
        policy: DatasetPolicy,
        raw_path: Path,
        source: pa.NativeFile,
        parquet: pq.ParquetFile,
        key: bytes,
        reference_date: date,
        filters: dict[str, pa.Array],
        progress: bool,
    ) -> None:
        self.policy = policy
        self.raw_path = raw_path
        self.source = source
        self.parquet = parquet
        self.key = key
        self.reference_date = reference_date
        self.filters = filters
        self.progress = progress
        self.total = parquet.metadata.num_rows
        self._fitted: dict[tuple[str, int, float | None], masking.MicroGroups] = {}

    def _columns(self, names: Sequence[str]) -> list[str]:
        """Raw columns to read for ``names``: them, the filter columns and the unit."""
        wanted = [*names, *self.filters]
        unit = self.policy.privacy.privacy_unit
        if unit is not None and any(masking.needs_unit(self.policy.fields[n]) for n in names):
            wanted.append(unit)
        return [name for name in self.parquet.schema_arrow.names if name in set(wanted)]

    def _batches(
        self,
        names: Sequence[str],
        label: str,
        row_groups: Sequence[int] | None = None,
        dictionary: Sequence[str] = (),
    ) -> Iterator[tuple[int, pa.Table]]:
        """``(rows read, filtered raw batch)`` pairs, read ahead in a helper thread, from
        the row groups ``row_groups`` in that order (default: all, in file order). Text
        columns named in ``dictionary`` come dictionary-encoded as Parquet stores them."""
        parquet = self.parquet
        if dictionary:
            parquet = pq.ParquetFile(
                self.source,
                metadata=self.parquet.metadata,
                read_dictionary=list(dictionary),
                pre_buffer=False,
            )
        reader = parquet.iter_batches(
            batch_size=BATCH_ROWS,
            columns=self._columns(names),
            row_groups=row_groups,
            use_threads=True,
        )
        bar = tqdm(
            total=self.total,
            unit="row",
            unit_scale=True,
            desc=f"{self.policy.dataset}: {label}",
            disable=not self.progress,
        )
        with bar, ThreadPoolExecutor(max_workers=1, thread_name_prefix="shuyu-read") as pool:
            for batch in _prefetched(self._read(reader), pool):
                bar.update(batch.num_rows)
                yield batch.num_rows, self._filter(pa.Table.from_batches([batch]))

    def _read(self, reader: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``reader``'s batches, with a read or decoding failure as :class:`ViewBuildError`."""
        while True:
            try:
                batch = next(reader)
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as err:
                raise ViewBuildError(
                    f"{self.raw_path.name} is not a readable Parquet file: {err}"
                ) from None
            yield batch

    def _filter(self, table: pa.Table) -> pa.Table:
        return filter_rows(table, self.filters)

    def _mask(
        self,
        table: pa.Table,
        names: Sequence[str],
        policy: DatasetPolicy | None = None,
        premasked: Mapping[str, pa.Array] | None = None,
    ) -> pa.Table:
        policy = policy or self.policy
        return masking.mask_table(
            table,
            policy,
            names,
            key=self.key,
            reference_date=self.reference_date,
            groups=self._groups(policy, names),
            premasked=premasked,
        )

    def mask_ahead(
        self, levels: Sequence[DatasetPolicy], names: Sequence[str], out_path: Path
    ) -> KeyedAhead | None:
        """Start the helper that masks the keyed fields for pass 2 while pass 1 runs
        (:mod:`shuyu_platform.data.keyed_ahead`), on a file large enough to gain by it."""
        keyed = keyed_fields(levels, names)
        if self.total < keyed_ahead.MIN_ROWS or not keyed:
            return None
        return KeyedAhead.start(
            source=self.source,
            out_path=out_path,
            policy=levels[0],
            fields=keyed,
            columns=self._columns(keyed),
            key=self.key,
            reference_date=self.reference_date,
            filters=self.filters,
            row_groups=self._row_groups(self._order()),
            batch_rows=BATCH_ROWS,
        )

    def _groups(self, policy: DatasetPolicy, names: Sequence[str]) -> dict[str, MicroGroups]:
        """The microaggregation groups of ``policy``'s fields in ``names``, each fitted
        once over the view's rows (after the row filter) in a pass reading that column."""
        groups = {}
        for name in names:
            rule = policy.fields[name].masking
            if not isinstance(rule, MicroaggregateMasking):
                continue
            fitted = (name, rule.k, rule.to)
            if fitted not in self._fitted:
                counts = (
                    masking.value_counts(batch.column(name))
                    for _, batch in self._batches([name], f"{name}: groups")
                )
                self._fitted[fitted] = masking.fit_groups(counts, rule.k, rule.to)
            groups[name] = self._fitted[fitted]
        return groups

    # ------------------------------------------------------------------- pass 1

    def _codes(
        self,
        table: pa.Table,
        name: str,
        policy: DatasetPolicy,
        coder: Coder,
        label: str,
        distinct: dict[str, tuple[pa.Array, pa.Array]],
    ) -> pa.Array:
        """The :class:`Coder` codes (under ``label``) of column ``name`` of ``table`` masked
        as ``policy`` says.

        A rule that maps each value on its own is applied to the batch's distinct raw
        values only (``distinct`` keeps them, and each row's index into them, for the
        other levels of the same batch), and so is the coding: a birth date column of
        131,072 rows holds some 30,000 days, masked at every level. Rules keyed per
        privacy unit mask every row.
        """
        if masking.needs_unit(policy.fields[name]):
            return coder.encode(label, self._mask(table, [name], policy).column(name))
        if name not in distinct:
            distinct[name] = _distinct_values(table.column(name))
        values, indices = distinct[name]
        masked = masking.mask_table(
            pa.table({name: values}),
            policy,
            [name],
            key=self.key,
            reference_date=self.reference_date,
            groups=self._groups(policy, [name]),
        )
        return coder.encode(label, masked.column(name)).take(indices)

    def choose_level(
        self,
        levels: Sequence[DatasetPolicy],
        qis: Sequence[str],
        sensitive: Sequence[str],
        k: int,
        diversity: Any,
        limits: Any,
    ) -> tuple[int, ClassStatistics, tuple[int, int], pa.Table | None]:
        """Pass 1: count classes and (class, sensitive value) pairs at every level, and
        choose the finest level whose suppression for k and l stays within
        ``limits.max_suppressed_share`` (the coarsest, when none does).

        Returns the level, its class statistics, (rows read, rows kept) and the class keys
        (as :func:`class_keys` makes them) of the classes to suppress, or ``None``.
        Rows are counted by small integer codes of their values (:class:`Coder`), once
        for every level together; memory holds one row per combination and per
        (combination, sensitive value), never the rows.
        """
        # One count over every level at once: the key columns of level 0, then those of
        # each coarser level's hierarchical quasi-identifiers. Each level's counts are
        # then summed out of the (small) merged tables.
        varying = [
            [q for q in qis if level.fields[q].masking != levels[0].fields[q].masking]
            for level in levels
        ]
        columns = [f"L0:{q}" for q in qis] + [
            f"L{i}:{q}" for i in range(1, len(levels)) for q in varying[i]
        ]
        coder = Coder()
        counter = ClassCounter(len(columns), len(sensitive))
        rows_in = rows_kept = 0
        # Text columns come as Parquet's own dictionaries: their distinct values without
        # decoding every row's text or hashing it again.
        schema = self.parquet.schema_arrow
        text = [
            name
            for name in (*qis, *sensitive)
            if pa.types.is_string(schema.field(name).type)
            or pa.types.is_large_string(schema.field(name).type)
        ]
        counting = self._batches([*qis, *sensitive], "counting classes", dictionary=text)
        with contextlib.closing(counting) as batches:
            for read, table in batches:
                rows_in += read
                rows_kept += table.num_rows
                distinct: dict[str, tuple[pa.Array, pa.Array]] = {}
                codes = [self._codes(table, q, levels[0], coder, f"L0:{q}", distinct) for q in qis]
                for i in range(1, len(levels)):
                    codes += [
                        self._codes(table, q, levels[i], coder, f"L{i}:{q}", distinct)
                        for q in varying[i]
                    ]
                codes += [self._codes(table, a, levels[0], coder, a, distinct) for a in sensitive]
                counter.add(codes)
        classes, pairs = counter.classes(), counter.pairs()
        level_classes = []
        for i in range(len(levels)):
            wanted = [f"L{i}:{q}" if q in varying[i] else f"L0:{q}" for q in qis]
            level_classes.append(
                (
                    _project(classes, columns, wanted),
                    {
                        sensitive[int(code[1:])]: _project(t, columns, wanted)
                        for code, t in pairs.items()
                    },
                )
            )
        # The finest level within the share; when none is, the one suppressing least.
        target = limits.level_suppressed_share
        target = limits.max_suppressed_share if target is None else target
        candidates = []
        for index, (level_counts, level_pairs) in enumerate(level_classes):
            level_stats = class_statistics(level_counts, level_pairs, k=k, l_diversity=diversity)
            candidates.append((index, level_stats))
            if level_stats.rows_suppressed <= target * rows_kept:
                break
        within = [c for c in candidates if c[1].rows_suppressed <= target * rows_kept]
        chosen, stats = (
            within[0] if within else min(candidates, key=lambda c: (c[1].rows_suppressed, c[0]))
        )
        suppressed = None
        if stats.suppressed.any():
            codes = stats.suppressed_keys()
            wanted = [f"L{chosen}:{q}" if q in varying[chosen] else f"L0:{q}" for q in qis]
            values = pa.table(
                {
                    q: coder.decode(name, codes.column(f"q{i}").to_numpy())
                    for i, (q, name) in enumerate(zip(qis, wanted, strict=True))
                }
            )
            suppressed = class_keys(values, qis)
        return chosen, stats, (rows_in, rows_kept), suppressed

    # ------------------------------------------------------------------- pass 2

    def write(
        self,
        tmp: Path,
        schema: pa.Schema,
        policy: DatasetPolicy,
        names: Sequence[str],
        qis: Sequence[str],
        suppressed: pa.Table | None,
        compression: str,
        raw_digest: Future[str],
        final_risk: Callable[[_Written], ViewRisk],
        ahead: KeyedAhead | None = None,
    ) -> _Written:
        """Pass 2: mask (as ``policy``, the chosen level, says, taking the keyed fields
        from ``ahead`` where it has them), suppress, shuffle and write every batch into
        the new file ``tmp``."""
        writer = pq.ParquetWriter(str(tmp), schema, compression=compression)
        try:
            counts = self._write_batches(writer, schema, policy, names, qis, suppressed, ahead)
            counts.risk = final_risk(counts)
            writer.add_key_value_metadata(
                {
                    "shuyu.raw_sha256": raw_digest.result(),
                    "shuyu.rows": str(counts.rows_out),
                    "shuyu.risk": json.dumps(counts.risk.as_dict()),
                }
            )
        except BaseException:
            with contextlib.suppress(Exception):
                writer.close()
            raise
        writer.close()
        return counts

    def _order(self) -> np.random.Generator:
        """The keyed random generator of this tenant's row order for this dataset."""
        seed = hmac.digest(
            self.key, b"shuyu.views.row-order\x00" + self.policy.dataset.encode(), "sha256"
        )
        return np.random.default_rng(np.random.SeedSequence(int.from_bytes(seed, "big")))

    def _row_groups(self, rng: np.random.Generator) -> list[int]:
        """Pass 2's order of the row groups: the first draw of :meth:`_order`."""
        return rng.permutation(self.parquet.num_row_groups).tolist()

    def _write_batches(
        self,
        writer: pq.ParquetWriter,
        schema: pa.Schema,
        policy: DatasetPolicy,
        names: Sequence[str],
        qis: Sequence[str],
        suppressed: pa.Table | None,
        ahead: KeyedAhead | None,
    ) -> _Written:
        """Mask each batch here while the previous window is shuffled and compressed in
        a helper thread; rows are written window by window in a keyed random order."""
        counts = _Written()
        rng = self._order()
        row_groups = self._row_groups(rng)
        means = MeanAccumulator(*_utility_columns(policy, schema, names, qis))
        window: list[pa.Table] = []
        held = 0
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="shuyu-write") as pool,
            contextlib.closing(self._batches(names, "writing view", row_groups)) as batches,
        ):
            pending: Future[None] | None = None

            def flush() -> None:
                nonlocal pending, held
                if not held:
                    return
                order = pa.array(rng.permutation(held))
                tables = list(window)
                window.clear()
                held = 0
                if pending is not None:
                    pending.result()  # a failed write stops the build here
                pending = pool.submit(_shuffle_and_write, writer, tables, order)

            for read, table in batches:
                counts.rows_in += read
                counts.rows_kept += table.num_rows
                ready = None if ahead is None else ahead.take(table)
                view = self._mask(table, names, policy, ready)
                kept = None
                if suppressed is not None and view.num_rows:
                    kept = kept_rows(view, qis, suppressed)
                means.add(table, view, kept)
                if kept is not None:
                    view = view.filter(pa.array(kept))
                counts.rows_suppressed += table.num_rows - view.num_rows
                counts.rows_out += view.num_rows
                if view.num_rows:
                    window.append(view)
                    held += view.num_rows
                if held >= SHUFFLE_ROWS:
                    flush()
            flush()
            if pending is not None:
                pending.result()
        counts.mean_errors = means.errors()
        return counts


def _distinct_values(column: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """``column``'s distinct values, null last, and each row's index into them."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    encoded = array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
    dictionary = encoded.dictionary
    values = pa.concat_arrays([dictionary, pa.nulls(1, dictionary.type)])
    indices = encoded.indices.cast(pa.int32()).fill_null(len(dictionary))
    return values, indices


def _shuffle_and_write(writer: pq.ParquetWriter, tables: list[pa.Table], order: pa.Array) -> None:
    """Write the window ``tables`` in the row ``order`` drawn for it (in the writer's
    thread: the gather of every column is as long as masking a batch, and the loop that
    masks the next batches need not wait for it)."""
    _write_slices(writer, pa.concat_tables(tables).take(order))


def _write_slices(writer: pq.ParquetWriter, table: pa.Table) -> None:
    """Write ``table`` as row groups of at most :data:`BATCH_ROWS` rows."""
    for start in range(0, table.num_rows, BATCH_ROWS):
        part = table.slice(start, BATCH_ROWS)
        writer.write_table(part, row_group_size=part.num_rows)


def _utility_columns(
    policy: DatasetPolicy, schema: pa.Schema, names: Sequence[str], qis: Sequence[str]
) -> tuple[str | None, list[str]]:
    """The column group means are taken over (the first categorical quasi-identifier, or
    none) and the numeric fields whose means are compared with raw."""
    group = next((q for q in qis if policy.fields[q].type == "category"), None)
    numeric = [
        name
        for name in names
        if policy.fields[name].type in ("int", "float")
        and (
            pa.types.is_integer(schema.field(name).type)
            or pa.types.is_floating(schema.field(name).type)
        )
    ]
    return group, numeric


def _project(table: pa.Table | None, columns: list[str], wanted: list[str]) -> pa.Table | None:
    """Counts of ``table`` (codes ``c0``.. of ``columns``, maybe sensitive codes ``s0``..,
    a count) summed over the ``wanted`` columns only, renamed to one level's class keys
    ``q0``.. (and ``s0``..)."""
    if table is None:
        return None
    keep = [f"c{columns.index(name)}" for name in wanted]
    extra = [c for c in table.column_names if c.startswith("s")]
    summed = table.group_by([*keep, *extra]).aggregate([(_COUNT, "sum")])
    return summed.rename_columns([*(f"q{i}" for i in range(len(keep))), *extra, _COUNT])
