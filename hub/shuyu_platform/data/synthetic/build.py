"""Building twins: read the raw file once, draw the twin, write it atomically."""

from __future__ import annotations

import contextlib
import json
import operator
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shuyu_platform.core.atomic import replace_atomically
from shuyu_platform.data.policy import DatasetPolicy
from shuyu_platform.data.rawfile import open_raw
from shuyu_platform.data.synthetic.hashing import _hash_column, _HashFilter
from shuyu_platform.data.synthetic.limits import DEFAULT_MAX_ROWS, READ_BATCH_ROWS
from shuyu_platform.data.synthetic.marginals import _columns_to_check, _learner, _Learning
from shuyu_platform.data.synthetic.no_real_row import _Check, _Generator
from shuyu_platform.data.synthetic.results import SyntheticError, SyntheticReport


def build_synthetic(
    policy: DatasetPolicy,
    raw_path: Path,
    out_path: Path,
    *,
    rows: int | None = None,
    seed: int = 0,
    raw_identifiers: RawIdentifiers | None = None,
) -> SyntheticReport:
    """Write the synthetic twin of ``raw_path`` at ``out_path`` and report on it.

    ``rows`` defaults to the raw row count, at most :data:`DEFAULT_MAX_ROWS`. The same
    raw file, ``seed`` and ``rows`` always give the same twin. ``raw_identifiers``
    (:func:`raw_identifiers`; :func:`build_all` passes it) keeps every identifier value
    of every raw dataset out of the twin's identifier columns, not only the values of
    the same column: one person appears in several datasets. Raises
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

    with open_raw(raw_path, SyntheticError, prefix="raw file ") as (_, parquet):
        schema = parquet.schema_arrow
        learners = [_learner(policy, raw_path, schema.field(i)) for i in range(len(schema.names))]
        checked = _columns_to_check(learners)
        check_rows = not any(not schema.field(i).nullable for i in checked)
        learned = _Learning(raw_path, schema, learners, checked, check_rows)
        learned.read(parquet)

    models = [learner.model() for learner in learners]
    identifiers = {i for i, field in enumerate(schema) if field.name in policy.identifier_fields()}
    elsewhere = raw_identifiers.filter if raw_identifiers is not None else None
    checks = {
        i: _Check(
            learned.value_filters[i],
            models[i].unique,
            elsewhere=elsewhere if i in identifiers else None,
        )
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
    known = raw_identifiers(policies, raw_dir)
    for name in sorted(policies):
        policy = policies[name]
        out_path = synthetic_dir / f"{policy.dataset}.parquet"
        if "synthetic" not in policy.catalogue.provision_modes:
            out_path.unlink(missing_ok=True)
            continue
        try:
            reports.append(
                build_synthetic(
                    policy,
                    raw_dir / policy.raw_file,
                    out_path,
                    rows=rows,
                    seed=seed,
                    raw_identifiers=known,
                )
            )
        except SyntheticError as err:
            failures.append(f"{policy.dataset}: {err}")
    if failures:
        raise SyntheticError("synthetic twins not built: " + "; ".join(failures))
    return reports


class RawIdentifiers:
    """Every identifier value of every raw dataset, as 64-bit hashes in one Bloom filter
    (no false negatives; see :mod:`.hashing`)."""

    def __init__(self, expected: int) -> None:
        self.filter = _HashFilter(expected)
        self.values = 0
        """Identifier values added (with repeats)."""

    def add(self, column: pa.Array) -> None:
        """Remember the non-null values of one raw identifier column (one batch)."""
        hashes, valid = _hash_column(column)
        self.filter.add(hashes[valid])
        self.values += int(valid.sum())


def raw_identifiers(policies: Mapping[str, DatasetPolicy], raw_dir: Path) -> RawIdentifiers:
    """The identifier values (``identifier: true`` columns) of every raw dataset in
    ``raw_dir``, read column by column and batch by batch. A dataset whose raw file is
    missing or unreadable is left out here; its own build reports it."""
    sources: list[tuple[Path, list[str]]] = []
    expected = 0
    for name in sorted(policies):
        policy = policies[name]
        columns = list(policy.identifier_fields())
        path = Path(raw_dir) / policy.raw_file
        if not columns:
            continue
        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException):
            continue
        sources.append((path, columns))
        expected += rows * len(columns)
    known = RawIdentifiers(expected)
    for path, columns in sources:
        try:
            parquet = pq.ParquetFile(path)
            present = [c for c in columns if c in parquet.schema_arrow.names]
            for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=present):
                for column in batch.columns:
                    known.add(column)
        except (OSError, pa.ArrowException):
            continue
    return known


def _require_int(value: int, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not a bool")
    return operator.index(value)


# ============================================================================ reading


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
