"""The tenant's masked views and the synthetic twins, as files mounted in the sandbox.

``shuyu.views`` reads ``/data/views`` (only the datasets the tenant's grants name, masked
by policy); ``shuyu.synthetic`` reads ``/data/synthetic`` (every dataset's schema with
invented rows, for writing code before a grant exists). Both are read-only mounts: the
kernel reads them directly with pyarrow, so nothing passes through the platform API
but the field descriptions, which come from the public catalogue.

    import shuyu
    shuyu.views.list()                       # one row per view: rows, fields, expiry
    df = shuyu.views.read("health_records")  # pandas DataFrame
    df.attrs["fields"]                       # the catalogue's description of each column
    shuyu.views.path("health_records")       # the Parquet file, for pyarrow/duckdb users
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from .client import PlatformError, get


class DataNotFound(LookupError):
    """The asked-for dataset has no file here; the message says which ones exist."""


class DataZone:
    """One read-only folder of Parquet files, one per dataset."""

    def __init__(self, env: str, default: str, kind: str) -> None:
        self._env = env
        self._default = default
        self.kind = kind

    @property
    def folder(self) -> Path:
        """Where the files are mounted in this sandbox."""
        return Path(os.environ.get(self._env, self._default))

    def names(self) -> list[str]:
        """Datasets that have a file here, sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.parquet") if p.is_file())

    def path(self, name: str) -> Path:
        """The Parquet file of ``name``; :class:`DataNotFound` if there is none."""
        candidate = self.folder / f"{name}.parquet"
        if "/" in name or name.startswith(".") or not candidate.is_file():
            have = ", ".join(self.names()) or "none"
            hint = (
                " Apply for a grant of the dataset, or use shuyu.synthetic to prototype."
                if self.kind == "view"
                else ""
            )
            if self.kind == "view" and name.isidentifier():
                hint = _suspended(name) or hint
            raise DataNotFound(f"No {self.kind} named {name!r}; available: {have}.{hint}")
        return candidate

    def list(self) -> pd.DataFrame:
        """One row per dataset: name, rows, columns, size, and for views the grant's expiry."""
        expiry: dict[str, Any] = {}
        if self.kind == "view":
            try:
                expiry = {g["dataset"]: g["expires_at"] for g in get("api/grants")["grants"]}
            except PlatformError:
                expiry = {}
        rows = []
        for name in self.names():
            meta = pq.read_metadata(self.folder / f"{name}.parquet")
            row: dict[str, Any] = {
                "dataset": name,
                "rows": meta.num_rows,
                "columns": [meta.schema.column(i).name for i in range(meta.num_columns)],
                "bytes": (self.folder / f"{name}.parquet").stat().st_size,
            }
            if self.kind == "view":
                row["expires_at"] = expiry.get(name)
            rows.append(row)
        return pd.DataFrame(
            rows,
            columns=["dataset", "rows", "columns", "bytes"]
            + (["expires_at"] if self.kind == "view" else []),
        )

    def read(self, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The dataset as a DataFrame; ``attrs["fields"]`` describes each column."""
        table = pq.read_table(self.path(name), columns=list(columns) if columns else None)
        frame = table.to_pandas()
        frame.attrs["dataset"] = name
        frame.attrs["kind"] = self.kind
        frame.attrs["fields"] = _field_descriptions(name, list(frame.columns))
        return frame


def _field_descriptions(dataset: str, columns: list[str]) -> dict[str, dict[str, Any]]:
    """The catalogue's entries for these columns (empty if the platform cannot be asked)."""
    try:
        entry = get(f"api/catalogue/{dataset}")
    except PlatformError:
        return {}
    by_name = {f["name"]: f for f in entry.get("fields", [])}
    return {c: by_name[c] for c in columns if c in by_name}


views = DataZone("SHUYU_VIEWS", "/data/views", "view")
synthetic = DataZone("SHUYU_SYNTHETIC", "/data/synthetic", "synthetic twin")


def _suspended(dataset: str) -> str:
    """Why a dataset's view is missing if its supply is suspended (R23), else ''."""
    try:
        supply = get(f"api/catalogue/{dataset}").get("supply", {})
    except PlatformError:
        return ""
    if supply.get("status") != "suspended":
        return ""
    return f" The dataset's supply is suspended: {supply.get('reason', '')}."
