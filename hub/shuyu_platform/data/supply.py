"""Versioned raw data, as source departments supply it (R21 data in, R23 withdrawal).

A source department delivers a new version of one of its datasets (Parquet or CSV) with
``shuyu supply <dataset> <file>`` or through the supply API of the platform service.
:func:`supply` then

1. validates it against the dataset's policy while streaming it, batch by batch: the
   columns (none missing, none extra), each value's type, nullability and the identifier
   formats a field declares (``format: id_card | mobile | uscc``). The first problem is
   refused with :class:`SupplyError` naming its row (1-based, the header not counted) and
   column, and nothing is written;
2. writes the validated rows once to ``raw/<dataset>/<version>.parquet`` (read-only; its
   SHA-256, rows, who and when in :class:`~shuyu_platform.core.models.RawVersion`, and a
   ``supply.store`` audit record);
3. makes it current in one step: ``raw/<dataset>.parquet``, the path every reader opens
   (views, twins, DP engines), is a symbolic link that is replaced by ``rename``. A
   supply killed at any point leaves the previous version current; a later supply
   removes what the killed one left (:func:`~shuyu_platform.core.atomic.remove_stale_temporaries`);
4. records ``supply.current`` with the old and new version and hash, and applies the
   retention setting (``c.Shuyu.raw_versions_kept``): older superseded versions are
   deleted (``supply.expire``).

The link is the truth about which version is current; the database follows it
(:func:`reconcile` repairs the database after a supply killed between the two). A
version can be withdrawn (:func:`withdraw`, R23): its file is deleted so nothing is
computed on it again, and if it was current the newest remaining version becomes
current. Readers that must not see a change mid-computation pin a version with
:func:`current`, which returns the version's own file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core import audit
from ..core.atomic import (
    fsync_directory,
    remove_stale_temporaries,
    replace_atomically,
    temporary_path,
)
from ..core.db import session_scope, stamp
from ..core.models import RawVersion
from .identifiers import valid_id_card_rows, valid_uscc_rows
from .masking.schema import CANONICAL_TYPES
from .policy import DatasetPolicy

__all__ = [
    "BATCH_ROWS",
    "Current",
    "Supplied",
    "SupplyError",
    "current",
    "history",
    "reconcile",
    "supply",
    "validate",
    "withdraw",
]

#: Rows validated and written at a time (bounds the memory a supply needs).
BATCH_ROWS = 500_000


_FORMAT_LABELS = {
    "id_card": "a valid resident ID card number (GB 11643: check character, birth date)",
    "mobile": "a mainland mobile number (11 digits, 1[3-9]...)",
    "uscc": "a valid unified social credit code (GB 32100 check characters)",
}


class SupplyError(ValueError):
    """A supply, withdrawal or version that cannot be accepted; ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Supplied:
    """What :func:`supply` stored and made current."""

    dataset: str
    version: int
    sha256: str
    rows: int
    bytes: int
    previous: int | None
    previous_sha256: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (API answers, CLI output)."""
        return {
            "dataset": self.dataset,
            "version": self.version,
            "sha256": self.sha256,
            "rows": self.rows,
            "bytes": self.bytes,
            "previous_version": self.previous,
            "previous_sha256": self.previous_sha256,
        }


@dataclass(frozen=True)
class Current:
    """The current raw version of a dataset: its own file (pinned), or the unversioned file."""

    dataset: str
    version: int | None
    """``None``: a raw file written before versioning (the demo generator's)."""
    path: Path


# ------------------------------------------------------------------------- paths


def link_path(raw_dir: Path, policy: DatasetPolicy) -> Path:
    """``raw/<dataset>.parquet``: what every reader opens (a link to the current version)."""
    return raw_dir / policy.raw_file


def version_path(raw_dir: Path, dataset: str, version: int) -> Path:
    """``raw/<dataset>/<version>.parquet``: one supplied version, never changed."""
    return raw_dir / dataset / f"{version}.parquet"


def linked_version(raw_dir: Path, policy: DatasetPolicy) -> int | None:
    """The version ``raw/<dataset>.parquet`` links to (``None``: no link, or a plain file)."""
    try:
        target = os.readlink(link_path(raw_dir, policy))
    except (FileNotFoundError, OSError):
        return None
    stem = Path(target).stem
    return int(stem) if Path(target).parent.name == policy.dataset and stem.isdigit() else None


def current(raw_dir: Path, policy: DatasetPolicy) -> Current:
    """The current version and its own file, to pin for one computation."""
    version = linked_version(raw_dir, policy)
    if version is None:
        return Current(policy.dataset, None, link_path(raw_dir, policy))
    return Current(policy.dataset, version, version_path(raw_dir, policy.dataset, version))


# -------------------------------------------------------------------- validation


def target_schema(policy: DatasetPolicy, raw_dir: Path) -> pa.Schema:
    """The Arrow schema a new version is stored in: the current version's (so views and
    twins read it as before), or one derived from the policy's types."""
    path = link_path(raw_dir, policy)
    names = list(policy.fields)
    if path.exists():
        with contextlib.suppress(OSError, pa.ArrowException):
            schema = pq.read_schema(path)
            if schema.names == names:
                return schema
    return pa.schema(
        [
            pa.field(name, CANONICAL_TYPES[field.type], nullable=field.nullable)
            for name, field in policy.fields.items()
        ],
        metadata={"shuyu.dataset": policy.dataset},
    )


def _check_columns(policy: DatasetPolicy, names: list[str], what: str) -> None:
    expected = list(policy.fields)
    missing = [name for name in expected if name not in names]
    if missing:
        raise SupplyError(
            f"{what}: column {missing[0]!r} is missing (the policy of {policy.dataset} "
            f"needs {', '.join(expected)}); nothing was stored"
        )
    extra = [name for name in names if name not in policy.fields]
    if extra:
        raise SupplyError(
            f"{what}: column {extra[0]!r} is not a field of {policy.dataset}; nothing was stored"
        )
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise SupplyError(f"{what}: column {twice!r} appears twice; nothing was stored")


def _batches(source: Path, policy: DatasetPolicy) -> Iterator[pa.RecordBatch]:
    """The supplied file's rows, batch by batch, columns in policy order."""
    names = list(policy.fields)
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        try:
            parquet = pq.ParquetFile(source)
        except (OSError, pa.ArrowException) as err:
            raise SupplyError(f"{source.name} is not a readable Parquet file: {err}") from None
        _check_columns(policy, parquet.schema_arrow.names, source.name)
        try:
            yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=names)
        except (OSError, pa.ArrowException) as err:
            raise SupplyError(f"{source.name} could not be read to the end: {err}") from None
    elif suffix == ".csv":
        try:
            header = pacsv.open_csv(source).schema.names
        except (OSError, pa.ArrowException) as err:
            raise SupplyError(f"{source.name} is not a readable CSV file: {err}") from None
        _check_columns(policy, header, source.name)
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=64 * 1024 * 1024),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                null_values=[""],
                include_columns=names,
            ),
        )
        try:
            yield from reader
        except (OSError, pa.ArrowException) as err:
            raise SupplyError(f"{source.name} could not be read to the end: {err}") from None
    else:
        raise SupplyError(f"{source.name}: a version is supplied as .parquet or .csv", 415)


def _first_failing_row(column: pa.Array, target: pa.DataType) -> int:
    """Index of the first value that does not cast to ``target`` (bisection of casts)."""
    low, high = 0, len(column)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            pc.cast(column.slice(low, middle - low), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
        else:
            low = middle
    return low


def _string_matrix(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 18-byte strings as an (n, 18) byte matrix, and the indices they came from."""
    values = values.cast(pa.string()) if values.type != pa.string() else values
    eighteen = pc.equal(pc.binary_length(values), 18).fill_null(False)
    index = np.flatnonzero(eighteen.to_numpy(zero_copy_only=False))
    chosen = pc.filter(values, eighteen)
    offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int32)[
        chosen.offset : chosen.offset + len(chosen) + 1
    ]
    data = (
        np.frombuffer(chosen.buffers()[2], dtype=np.uint8) if len(chosen) else np.zeros(0, np.uint8)
    )
    matrix = data[offsets[0] : offsets[0] + 18 * len(chosen)].reshape(len(chosen), 18)
    return matrix, index


def _format_failures(values: pa.Array, kind: str, today: date) -> int | None:
    """Index of the first non-null value not of format ``kind``, or ``None``."""
    present = pc.is_valid(values)
    if kind == "mobile":
        good = pc.match_substring_regex(values, r"^1[3-9][0-9]{9}$")
        bad = pc.and_(present, pc.invert(good.fill_null(False)))
    else:
        ok = np.zeros(len(values), dtype=bool)
        matrix, index = _string_matrix(values)
        ok[index] = (
            valid_id_card_rows(matrix, today) if kind == "id_card" else valid_uscc_rows(matrix)
        )
        bad = pc.and_(present, pa.array(~ok))
    first = pc.index(bad, True).as_py()
    return None if first < 0 else first


def _checked_batch(
    batch: pa.RecordBatch, policy: DatasetPolicy, schema: pa.Schema, offset: int, today: date
) -> pa.RecordBatch:
    """``batch`` cast to ``schema`` after every check; :class:`SupplyError` at the first failure."""
    columns = []
    for name, field in policy.fields.items():
        column = batch.column(name)
        target = schema.field(name).type
        where = f"column {name!r}"
        if column.type != target:
            try:
                column = pc.cast(column, target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                row = _first_failing_row(column, target)
                value = column[row].as_py()
                raise SupplyError(
                    f"row {offset + row + 1}, {where}: {str(value)[:40]!r} is not a "
                    f"{field.type} value ({column.type} given, {target} expected); "
                    "nothing was stored"
                ) from None
        if not field.nullable and column.null_count:
            row = pc.index(pc.is_null(column), True).as_py()
            raise SupplyError(
                f"row {offset + row + 1}, {where}: empty, but the field may not be null; "
                "nothing was stored"
            )
        if field.format is not None:
            row = _format_failures(column, field.format, today)
            if row is not None:
                raise SupplyError(
                    f"row {offset + row + 1}, {where}: not {_FORMAT_LABELS[field.format]}; "
                    "nothing was stored"
                )
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def validate(source: Path, policy: DatasetPolicy, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The supplied rows, checked against ``policy`` and cast to ``schema``, as batches.

    Raises :class:`SupplyError` at the first row that fails (naming row and column);
    an empty file is refused too.
    """
    offset = 0
    today = date.today()
    for batch in _batches(Path(source), policy):
        yield _checked_batch(batch, policy, schema, offset, today)
        offset += batch.num_rows
    if offset == 0:
        raise SupplyError(f"{Path(source).name} holds no rows; nothing was stored")


# ------------------------------------------------------------------------ supply


@contextlib.contextmanager
def _dataset_lock(raw_dir: Path, dataset: str) -> Iterator[None]:
    """One supply or withdrawal of a dataset at a time (across processes)."""
    folder = raw_dir / dataset
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(folder / ".lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _link(raw_dir: Path, policy: DatasetPolicy, version: int) -> None:
    """Point ``raw/<dataset>.parquet`` at ``version`` in one rename."""
    link = link_path(raw_dir, policy)
    remove_stale_temporaries(link)
    tmp = temporary_path(link)
    os.symlink(f"{policy.dataset}/{version}.parquet", tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(raw_dir)


def _adopt_plain_file(session: Session, raw_dir: Path, policy: DatasetPolicy) -> None:
    """Record a raw file from before versioning (a plain file) as version 1, unchanged."""
    link = link_path(raw_dir, policy)
    if link.is_symlink() or not link.is_file():
        return
    if session.scalar(select(RawVersion.id).where(RawVersion.dataset == policy.dataset)):
        return
    target = version_path(raw_dir, policy.dataset, 1)
    if not target.exists():
        os.link(link, target)
    os.chmod(target, 0o444)
    with target.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    session.add(
        RawVersion(
            dataset=policy.dataset,
            version=1,
            sha256=digest,
            rows=pq.read_metadata(target).num_rows,
            bytes=target.stat().st_size,
            source_name="(raw file from before versioning)",
            supplied_by="platform",
            supplied_at=stamp(),
            status="current",
            current_since=stamp(),
        )
    )
    session.flush()


def _next_version(session: Session, raw_dir: Path, dataset: str) -> int:
    known = session.scalars(select(RawVersion.version).where(RawVersion.dataset == dataset)).all()
    on_disk = [int(p.stem) for p in (raw_dir / dataset).glob("*.parquet") if p.stem.isdigit()]
    return max([0, *known, *on_disk]) + 1


def supply(
    raw_dir: Path,
    db_url: str,
    policy: DatasetPolicy,
    source: Path,
    *,
    actor: str,
    actor_kind: audit.ActorKind = "user",
    keep: int = 3,
    source_name: str | None = None,
) -> Supplied:
    """Validate ``source``, store it as the dataset's next version and make it current.

    ``keep`` versions stay on disk (the current one included); older superseded ones are
    deleted. Raises :class:`SupplyError` (nothing written, the current version unchanged)
    when the file does not fit the policy.
    """
    raw_dir = Path(raw_dir)
    name = source_name or Path(source).name
    with _dataset_lock(raw_dir, policy.dataset):
        reconcile(raw_dir, db_url, policy)
        with session_scope(db_url) as session:
            version = _next_version(session, raw_dir, policy.dataset)
        plain = link_path(raw_dir, policy)
        if version == 1 and plain.is_file() and not plain.is_symlink():
            version = 2  # 1 is the raw file from before versioning, adopted once this succeeds
        schema = target_schema(policy, raw_dir)
        out = version_path(raw_dir, policy.dataset, version)

        def write(tmp: Path) -> int:
            rows = 0
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                for batch in validate(Path(source), policy, schema):
                    writer.write_batch(batch, row_group_size=BATCH_ROWS)
                    rows += batch.num_rows
            return rows

        rows, digest = replace_atomically(out, write, mode=0o444)
        size = out.stat().st_size
        with session_scope(db_url) as session:
            _adopt_plain_file(session, raw_dir, policy)
            session.add(
                RawVersion(
                    dataset=policy.dataset,
                    version=version,
                    sha256=digest,
                    rows=rows,
                    bytes=size,
                    source_name=name[:500],
                    supplied_by=actor,
                    supplied_at=stamp(),
                    status="stored",
                )
            )
            audit.record(
                session,
                actor=actor,
                actor_kind=actor_kind,
                action="supply.store",
                target=f"dataset:{policy.dataset}",
                detail={"version": version, "sha256": digest, "rows": rows, "file": name[:500]},
            )
        before = linked_version(raw_dir, policy)
        _link(raw_dir, policy, version)
        with session_scope(db_url) as session:
            previous = _mark_current(session, policy.dataset, version)
            before = previous.version if previous is not None else before
            audit.record(
                session,
                actor=actor,
                actor_kind=actor_kind,
                action="supply.current",
                target=f"dataset:{policy.dataset}",
                detail={
                    "version": version,
                    "sha256": digest,
                    "previous_version": before,
                    "previous_sha256": previous.sha256 if previous else "",
                },
            )
            _expire(session, raw_dir, policy.dataset, keep, actor=actor, actor_kind=actor_kind)
    return Supplied(
        dataset=policy.dataset,
        version=version,
        sha256=digest,
        rows=rows,
        bytes=size,
        previous=before,
        previous_sha256=previous.sha256 if previous else "",
    )


def _versions(session: Session, dataset: str) -> list[RawVersion]:
    """Every recorded version of ``dataset``, oldest first."""
    query = select(RawVersion).where(RawVersion.dataset == dataset).order_by(RawVersion.version)
    return list(session.scalars(query).all())


def _mark_current(session: Session, dataset: str, version: int) -> RawVersion | None:
    """Make ``version`` the current row; return the row that was current before."""
    rows = _versions(session, dataset)
    previous = None
    for row in rows:
        if row.version == version:
            if row.status != "current":
                row.status, row.current_since = "current", stamp()
        elif row.status == "current":
            row.status, previous = "superseded", row
    if previous is None:
        earlier = [r for r in rows if r.version < version and r.status == "superseded"]
        previous = max(earlier, key=lambda r: r.version) if earlier else None
    session.flush()
    return previous


def _delete_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, 0o600)
        path.unlink()
    fsync_directory(path.parent)


def _expire(
    session: Session,
    raw_dir: Path,
    dataset: str,
    keep: int,
    *,
    actor: str,
    actor_kind: audit.ActorKind,
) -> None:
    """Delete superseded versions beyond the newest ``keep`` (audited)."""
    rows = session.scalars(
        select(RawVersion)
        .where(RawVersion.dataset == dataset, RawVersion.status.in_(("current", "superseded")))
        .order_by(RawVersion.version.desc())
    ).all()
    for row in rows[max(keep, 1) :]:
        if row.status != "superseded":
            continue
        _delete_file(version_path(raw_dir, dataset, row.version))
        row.status, row.ended_by, row.ended_at = "expired", actor, stamp()
        row.end_reason = f"retention: {keep} versions kept"
        audit.record(
            session,
            actor=actor,
            actor_kind=actor_kind,
            action="supply.expire",
            target=f"dataset:{dataset}",
            detail={"version": row.version, "sha256": row.sha256, "kept": keep},
        )


def reconcile(raw_dir: Path, db_url: str, policy: DatasetPolicy) -> None:
    """Make the database's ``current`` row agree with the link (after a killed supply)."""
    linked = linked_version(Path(raw_dir), policy)
    with session_scope(db_url) as session:
        for row in _versions(session, policy.dataset):
            if row.version == linked and row.status in ("stored", "superseded"):
                row.status, row.current_since = "current", row.current_since or stamp()
            elif row.version != linked and row.status == "current":
                row.status = "superseded"


def withdraw(
    raw_dir: Path,
    db_url: str,
    policy: DatasetPolicy,
    version: int,
    *,
    actor: str,
    reason: str,
    actor_kind: audit.ActorKind = "user",
) -> int | None:
    """Withdraw ``version`` (R23): delete its file so nothing is computed on it again.

    If it is current, the newest remaining version becomes current first (the caller
    rebuilds views and twin); the only version cannot be withdrawn (suspend the dataset
    instead). Returns the version current afterwards.
    """
    raw_dir = Path(raw_dir)
    if not reason.strip():
        raise SupplyError("a withdrawal needs a reason", 400)
    with _dataset_lock(raw_dir, policy.dataset):
        reconcile(raw_dir, db_url, policy)
        with session_scope(db_url) as session:
            rows = {r.version: r for r in _versions(session, policy.dataset)}
        row = rows.get(version)
        if row is None:
            raise SupplyError(f"{policy.dataset} has no version {version}", 404)
        if row.status in ("withdrawn", "expired"):
            raise SupplyError(f"version {version} of {policy.dataset} is {row.status} already", 409)
        now_current = linked_version(raw_dir, policy)
        if row.status == "current" or now_current == version:
            fallback = [
                v for v, r in rows.items() if v != version and r.status in ("superseded", "stored")
            ]
            fallback = [v for v in fallback if version_path(raw_dir, policy.dataset, v).exists()]
            if not fallback:
                raise SupplyError(
                    f"version {version} is the only version of {policy.dataset}; suspend the "
                    "dataset instead (shuyu dataset suspend)",
                    409,
                )
            now_current = max(fallback)
            _link(raw_dir, policy, now_current)
        _delete_file(version_path(raw_dir, policy.dataset, version))
        with session_scope(db_url) as session:
            stored = session.scalars(
                select(RawVersion).where(
                    RawVersion.dataset == policy.dataset, RawVersion.version == version
                )
            ).one()
            stored.status, stored.ended_by, stored.ended_at = "withdrawn", actor, stamp()
            stored.end_reason = reason.strip()[:2000]
            if now_current is not None:
                _mark_current(session, policy.dataset, now_current)
            audit.record(
                session,
                actor=actor,
                actor_kind=actor_kind,
                action="supply.withdraw",
                target=f"dataset:{policy.dataset}",
                detail={
                    "version": version,
                    "sha256": stored.sha256,
                    "reason": stored.end_reason,
                    "current_version": now_current,
                },
            )
    return now_current


def history(db_url: str, dataset: str | None = None) -> list[dict[str, Any]]:
    """Every recorded version (of one dataset), newest first, for operators."""
    with session_scope(db_url) as session:
        query = select(RawVersion).order_by(RawVersion.dataset, RawVersion.version.desc())
        if dataset is not None:
            query = query.where(RawVersion.dataset == dataset)
        return [version_dict(row) for row in session.scalars(query).all()]


def version_dict(row: RawVersion) -> dict[str, Any]:
    """One version as shown to operators and in the catalogue."""
    return {
        "dataset": row.dataset,
        "version": row.version,
        "status": row.status,
        "sha256": row.sha256,
        "rows": row.rows,
        "bytes": row.bytes,
        "file": row.source_name,
        "supplied_by": row.supplied_by,
        "supplied_at": row.supplied_at,
        "current_since": row.current_since,
        "ended_by": row.ended_by,
        "ended_at": row.ended_at,
        "end_reason": row.end_reason,
    }


def current_version(session: Session, dataset: str) -> int | None:
    """The number of the dataset's current version (``None``: never supplied)."""
    return session.scalar(
        select(RawVersion.version).where(
            RawVersion.dataset == dataset, RawVersion.status == "current"
        )
    )


def current_rows(session: Session) -> dict[str, dict[str, Any]]:
    """The current version's record of every dataset ever supplied, in one query."""
    rows = session.scalars(select(RawVersion).where(RawVersion.status == "current"))
    return {row.dataset: version_dict(row) for row in rows}


def current_row(db_url: str, dataset: str) -> dict[str, Any] | None:
    """The current version's record (``None``: the dataset was never supplied)."""
    with session_scope(db_url) as session:
        row = session.scalars(
            select(RawVersion).where(RawVersion.dataset == dataset, RawVersion.status == "current")
        ).first()
        return version_dict(row) if row else None
