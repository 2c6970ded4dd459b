"""Production inputs: what a sealed run reads, built outside every sandbox.

For each dataset a tenant holds an active grant on, and whose policy allows production
runs (``production.allowed``), the production input is the grant's fields and rows of
the raw data at full fidelity (:meth:`~shuyu_platform.data.policy.DatasetPolicy.production_fields`):
no generalisation, no suppression, no noise; direct identifiers pseudonymised with the
tenant's key (the same tokens as in its masked views) or dropped, L4 fields never.

Inputs live in the jobs zone (``jobs/inputs/<tenant>/<dataset>.parquet``), which no
interactive server mounts; only the sealed runner binds them, read-only, into a job. An
input is rebuilt when its grant, policy or raw file changed (a small JSON beside it
records what it was built from) and is written atomically, so a job never reads half of
one. Its SHA-256 goes into the job's provenance.

A job may also name the tenant's approved imports (:mod:`..ingress.imports`): each is
already stored read-only and pseudonymised; :func:`imported` checks again, when the job
runs, that it is still approved and unchanged, and the runner binds its folder.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..access import grants, suspension
from ..access.tenant_views import masking_secret
from ..core.atomic import replace_atomically
from ..core.db import session_scope
from ..core.settings import Shuyu
from ..data import supply
from ..data.masking import tenant_key
from ..data.masking.columns import mask_column
from ..data.policy import DatasetPolicy, PseudonymizeMasking
from ..ingress import imports as ingress

#: Rows read from the raw file at a time.
BATCH_ROWS = 256 * 1024


@dataclass(frozen=True)
class ProductionInput:
    """One built input: its dataset, file, SHA-256, rows and columns."""

    dataset: str
    path: Path
    sha256: str
    rows: int
    fields: tuple[str, ...]
    #: The raw version it was built from (``None``: a raw file never supplied as a version).
    raw_version: int | None = None


@dataclass(frozen=True)
class ImportedInput:
    """One approved import a job reads: its ID, stored folder and file's SHA-256."""

    id: str
    folder: Path
    sha256: str


def imported(
    settings: Shuyu, session: Any, tenant: str, named: dict[str, str]
) -> dict[str, ImportedInput]:
    """The imports a job named (name -> ID, frozen at submission), checked as it starts.

    :class:`~shuyu_platform.ingress.imports.IngressError` if one is no longer the
    tenant's approved, unchanged import (deleted meanwhile, or its file altered).
    """
    out = {}
    for name, import_id in sorted(named.items()):
        path, digest = ingress.job_input(settings, session, tenant, name, import_id)
        out[name] = ImportedInput(import_id, path, digest)
    return out


def folder(settings: Shuyu, tenant: str) -> Path:
    """Where a tenant's production inputs live (in the jobs zone)."""
    return settings.zone("jobs") / "inputs" / tenant


def _identifier(policy: DatasetPolicy, name: str) -> Any:
    """The field policy a production input masks ``name`` with: a pseudonym, or as is."""
    field = policy.fields[name]
    if not field.identifier:
        return None
    prefix = getattr(field.masking, "prefix", None)
    rule = PseudonymizeMasking(rule="pseudonymize", prefix=prefix)
    return field.model_copy(update={"masking": rule})


def _write(
    policy: DatasetPolicy,
    raw: Path,
    target: Path,
    fields: list[str],
    row_filter: dict[str, list[Any]],
    key: bytes,
) -> tuple[int, str]:
    """Stream the raw file into ``target``: granted rows and fields, identifiers masked."""
    reader = pq.ParquetFile(raw)
    missing = [f for f in [*fields, *row_filter] if f not in reader.schema_arrow.names]
    if missing:
        raise ValueError(f"fields {missing} of {policy.dataset} are not in the raw data")
    read = sorted(set(fields) | set(row_filter), key=reader.schema_arrow.names.index)
    rows = 0

    def fill(tmp: Path) -> None:
        nonlocal rows
        writer: pq.ParquetWriter | None = None
        try:
            for batch in reader.iter_batches(batch_size=BATCH_ROWS, columns=read):
                table = pa.Table.from_batches([batch])
                for name, values in row_filter.items():
                    wanted = pa.array(values).cast(table.schema.field(name).type)
                    table = table.filter(pc.is_in(table.column(name), value_set=wanted))
                columns = []
                for name in fields:
                    masked = _identifier(policy, name)
                    column = table.column(name)
                    if masked is not None:
                        column = mask_column(
                            name, column, masked, key=key, unit=None, reference_date=date.today()
                        )
                    columns.append(column)
                out = pa.table(columns, names=fields)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, out.schema, compression="zstd")
                writer.write_table(out)
                rows += out.num_rows
            if writer is None:
                empty = pa.table(
                    {n: pa.array([], reader.schema_arrow.field(n).type) for n in fields}
                )
                pq.write_table(empty, tmp)
        finally:
            if writer is not None:
                writer.close()

    _, digest = replace_atomically(target, fill, mode=0o444)
    return rows, digest


#: One build at a time in a process: two runs of a tenant must not write one input twice.
_building = threading.Lock()


def build(
    settings: Shuyu, tenant: str, policies: dict[str, DatasetPolicy]
) -> dict[str, ProductionInput]:
    """The tenant's production inputs, (re)built where stale; keyed by dataset."""
    with _building:
        return _build(settings, tenant, policies)


def _build(
    settings: Shuyu, tenant: str, policies: dict[str, DatasetPolicy]
) -> dict[str, ProductionInput]:
    with session_scope(settings.db_url) as session:
        stopped = suspension.suspended(session, "dataset")
        held = {
            g.dataset: (g.id, grants.fields_of(g), grants.row_filter_of(g))
            for g in grants.active(session, tenant=tenant)
            if g.dataset not in stopped
        }
    out: dict[str, ProductionInput] = {}
    base = folder(settings, tenant)
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    key: bytes | None = None
    for dataset, (grant_id, granted, row_filter) in sorted(held.items()):
        policy = policies.get(dataset)
        if policy is None or not policy.production.allowed:
            continue
        pinned = supply.current(settings.zone("raw"), policy)  # one version, whatever comes next
        raw = pinned.path
        if not raw.is_file():
            continue
        fields = policy.production_fields(granted)
        stat = raw.stat()
        recipe = {
            "grant": grant_id,
            "fields": fields,
            "row_filter": row_filter,
            "policy": policy.model_dump(mode="json", include={"version", "fields", "production"}),
            "raw": [stat.st_size, stat.st_mtime_ns],
            "raw_version": pinned.version,
        }
        target = base / f"{dataset}.parquet"
        meta = base / f".{dataset}.json"
        try:
            known = json.loads(meta.read_text())
        except (OSError, ValueError):
            known = {}
        if known.get("recipe") != json.loads(json.dumps(recipe)) or not target.is_file():
            key = key or tenant_key(masking_secret(settings), tenant)
            rows, digest = _write(policy, raw, target, fields, row_filter, key)
            known = {"recipe": recipe, "sha256": digest, "rows": rows}
            meta.write_text(json.dumps(known))
        out[dataset] = ProductionInput(
            dataset, target, known["sha256"], int(known["rows"]), tuple(fields), pinned.version
        )
    return out
