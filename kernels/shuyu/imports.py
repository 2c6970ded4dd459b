"""The tenant's approved imports: its own data, brought in after review, read-only.

An approved import (the platform's Imports page) is mounted in the tenant's sandboxes at
``/data/imports/<name>/`` (its Parquet file and ``import.json``), with its declared
identifier columns already replaced by pseudonyms keyed to that import. A sealed job
that named it (``shuyu.jobs.submit(..., imports=["customers"])``) finds it at the same
place, so the same code runs in both::

    import shuyu
    shuyu.imports.list()                    # name, id, rows, columns, identifier columns
    df = shuyu.imports.read("customers")    # pandas DataFrame
    table = shuyu.imports.table("customers", columns=["customer_id_card"])  # pyarrow
    shuyu.imports.path("customers")         # the Parquet file, for pyarrow/duckdb users

Everything is read from the mounted files; nothing passes through the platform API.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .data import DataNotFound

__all__ = ["ImportNotFound", "folder", "list", "names", "path", "read", "table"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_COLUMNS = ["name", "id", "rows", "columns", "identifiers", "sensitive", "scenario"]


class ImportNotFound(DataNotFound):
    """No approved import of that name here; the message says which ones there are."""


def folder() -> Path:
    """Where the imports are mounted (``/data/imports``, or ``$SHUYU_IMPORTS``)."""
    return Path(os.environ.get("SHUYU_IMPORTS", "/data/imports"))


def names() -> list[str]:
    """The approved imports mounted here, sorted."""
    base = folder()
    if not base.is_dir():
        return []
    return sorted(
        p.name
        for p in base.iterdir()
        if _NAME.match(p.name) and (p / f"{p.name}.parquet").is_file()
    )


def path(name: str) -> Path:
    """The Parquet file of import ``name``; :class:`ImportNotFound` if there is none."""
    if not isinstance(name, str) or not _NAME.match(name) or name not in names():
        have = ", ".join(names()) or "none"
        where = (
            " A sealed job sees only the imports it named (shuyu.jobs.submit(..., imports=[...]))."
            if os.environ.get("SHUYU_JOB") == "1"
            else " File an import request on the platform's Imports page; it appears here once"
            " approved."
        )
        raise ImportNotFound(f"No approved import named {name!r}; available: {have}.{where}")
    return folder() / name / f"{name}.parquet"


def _description(name: str) -> dict[str, Any]:
    """The import's ``import.json`` (id, name, scenario, fields, rows), ``{}`` if unreadable."""
    try:
        return dict(json.loads((folder() / name / "import.json").read_text()))
    except (OSError, ValueError):
        return {}


def list() -> pd.DataFrame:  # shadows the builtin here on purpose: shuyu.imports.list()
    """One row per approved import: name, id, rows, columns, identifier and sensitive
    columns (as declared in its request), scenario."""
    rows = []
    for name in names():
        meta = pq.read_metadata(path(name))
        about = _description(name)
        fields = about.get("fields", {})
        rows.append(
            {
                "name": name,
                "id": about.get("id"),
                "rows": meta.num_rows,
                "columns": [meta.schema.column(i).name for i in range(meta.num_columns)],
                "identifiers": sorted(c for c, f in fields.items() if f.get("identifier")),
                "sensitive": sorted(c for c, f in fields.items() if f.get("sensitive")),
                "scenario": about.get("scenario", ""),
            }
        )
    return pd.DataFrame(rows, columns=_COLUMNS)


def table(name: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Import ``name`` as a pyarrow Table (only ``columns``, if given)."""
    file = path(name)
    if columns:
        have = pq.read_schema(file).names
        missing = [c for c in columns if c not in have]
        if missing:
            raise KeyError(f"import {name!r} has no column {missing[0]!r}; columns: {have}")
    return pq.read_table(file, columns=[*columns] if columns else None)


def read(name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Import ``name`` as a DataFrame; ``attrs["fields"]`` is what its request declared
    of each column (``identifier``, ``sensitive``)."""
    frame = table(name, columns).to_pandas()
    about = _description(name)
    frame.attrs["import"] = name
    frame.attrs["id"] = about.get("id")
    declared = about.get("fields", {})
    frame.attrs["fields"] = {c: declared[c] for c in frame.columns if c in declared}
    return frame
