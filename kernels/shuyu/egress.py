"""Export requests from a tenant's kernel: the only way a result leaves the sandbox.

Downloads are switched off in the sandbox. To take something out, file a request with
a purpose; it is frozen as sent, checked automatically and reviewed by the operator::

    import shuyu
    shuyu.egress.request("analysis.ipynb", cells=[4, 7], purpose="理赔率汇总表，用于产品定价")
    shuyu.egress.request_file("results/summary.csv", purpose="...")
    shuyu.egress.list()          # the tenant's requests: status, checks verdict
    shuyu.egress.status(rid)     # one request with the reviewers' comments
    shuyu.egress.publish("showcase.ipynb", releases=[rid], purpose="...")  # a dashboard

A sum or mean by group can be dominated by one or two contributors (one large firm),
which the table alone does not show. Display such tables with :func:`table`: it attaches
the contributor statistics the automatic dominance checks (n-k and p%) need::

    shuyu.egress.table(df, by="district", value="settlement_amount", contributor="person_id")

The same page is served in the browser: ``shuyu/export`` on your server.

Cells are counted from 0 in the notebook as saved on disk, so save the notebook first:
what is sent is the outputs stored in the file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .client import get, post

__all__ = [
    "StatsTable",
    "list",
    "publish",
    "request",
    "request_file",
    "resubmit",
    "status",
    "table",
    "unpublish",
]

#: Largest file sent with a request (the service refuses larger snapshots anyway).
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Largest contributions listed per cell (the checks need the top two or three).
TOP = 3
#: Aggregations :func:`table` offers.
AGGREGATIONS = ("sum", "mean")


class StatsTable:
    """An aggregated table that says how it was computed when displayed.

    ``frame`` is the table itself; ``kind`` is ``"frequency"`` (counts) or
    ``"magnitude"`` (sums, means); ``stats`` the per-cell contributor statistics of a
    magnitude table (total, largest contributions, number of contributors, negative
    contributors) in the form the platform's disclosure checks read from the output's
    ``metadata.shuyu.cell_stats``. The kind goes in ``metadata.shuyu.kind``.
    """

    def __init__(
        self, frame: pd.DataFrame, stats: dict[str, Any] | None, kind: str = "magnitude"
    ) -> None:
        self.frame = frame
        self.stats = stats
        self.kind = kind

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        data = {"text/plain": repr(self.frame), "text/html": self.frame.to_html()}
        meta: dict[str, Any] = {"kind": self.kind}
        if self.stats is not None:
            meta["cell_stats"] = self.stats
        return data, {"shuyu": meta}

    def __repr__(self) -> str:
        return repr(self.frame)


def table(
    data: pd.DataFrame,
    by: str | Sequence[str],
    value: str | None = None,
    *,
    agg: str = "sum",
    columns: str | None = None,
    contributor: str | None = None,
    margins: bool = False,
) -> StatsTable:
    """A table for export, computed here so the checks know how it was computed.

    Without ``value`` it is a frequency table: the number of rows per group of ``by``
    (``value_counts``/``groupby().size()``), or per ``by`` × ``columns`` cell (a
    crosstab). With ``value`` it is ``agg`` (``sum`` or ``mean``) of ``value`` per
    group, with contributor statistics for the dominance checks: a contributor is one
    value of ``contributor`` (say a pseudonymised person or firm id), whose rows are
    added up; without it, every row is a contributor. ``margins`` adds an ``All`` row
    (and column) as ``pd.crosstab`` does. Categories with no rows show as zero cells
    when the key is categorical; rows whose key is missing form a group of their own
    (shown as NaN) rather than being dropped. The result's column is ``count`` or
    ``<value>_<agg>`` unless ``columns`` spreads it.
    """
    keys = [by] if isinstance(by, str) else [str(k) for k in by]
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {', '.join(AGGREGATIONS)}, not {agg!r}")
    wanted = [*keys, *([value] if value else []), *([columns] if columns else [])]
    wanted += [contributor] if contributor else []
    missing = [c for c in wanted if c not in data]
    if missing:
        raise KeyError(f"no column {', '.join(map(repr, missing))} in the data")
    if value is None:
        return StatsTable(_counts(data, keys, columns, margins), None, "frequency")
    groups = [*keys, *([columns] if columns else [])]
    name = f"{value}_{agg}"
    grouped = data.groupby(groups, observed=True, dropna=False)[value].agg(agg)
    frame = grouped.unstack(columns) if columns else grouped.to_frame(name)
    cells = [
        _cell(label, part, keys, columns)
        for label, part in _contributions(data, groups, value, contributor)
    ]
    if columns:
        # Combinations with no rows show as blanks: they are zero-contributor cells.
        seen = {(repr(c["row"]), repr(c["column"])) for c in cells}
        for row_label in frame.index:
            for column_label in frame.columns:
                key = (repr(_label(row_label)), repr(_label(column_label)))
                if key not in seen:
                    cells.append(
                        {
                            "row": _label(row_label),
                            "column": _label(column_label),
                            "total": 0.0,
                            "top": [],
                            "count": 0,
                            "n_negative": 0,
                        }
                    )
    if margins:
        frame, cells = _margins(data, keys, columns, value, agg, contributor, frame, cells)
    return StatsTable(frame, {"column": name, "cells": cells}, "magnitude")


def _counts(
    data: pd.DataFrame, keys: list[str], columns: str | None, margins: bool
) -> pd.DataFrame:
    """Rows per group (or per row × column cell), zero for empty category combinations."""
    if columns:
        return pd.crosstab([data[k] for k in keys], data[columns], margins=margins, dropna=False)
    frame = data.groupby(keys, observed=False, dropna=False).size().to_frame("count")
    if margins:
        frame.loc["All" if len(keys) == 1 else ("All",) * len(keys), "count"] = len(data)
    return frame


def _contributions(
    data: pd.DataFrame, groups: list[str], value: str, contributor: str | None
) -> list[tuple[Any, pd.Series]]:
    """Each cell's contributions: one per contributor (their rows added up) or per row."""
    per = (
        data.groupby([*groups, contributor], observed=True, dropna=False)[value].sum(min_count=1)
        if contributor
        else data.set_index(groups)[value]
    )
    return [*per.groupby(level=[*range(len(groups))], dropna=False)]


def _cell(label: Any, contributions: pd.Series, keys: list[str], columns: str | None) -> dict:
    """One cell's statistics; ``count`` counts contributors with a value (0: all missing)."""
    values = contributions.dropna().astype(float)
    parts = label if isinstance(label, tuple) else (label,)
    cell: dict[str, Any] = {
        "row": _label(parts[: len(keys)] if columns else parts),
        "total": float(values.sum()),
        "top": [float(v) for v in values.nlargest(TOP)],
        "count": int(values.size),
        "n_negative": int((values < 0).sum()),
    }
    if columns:
        cell["column"] = _label(parts[-1])
    return cell


def _margins(
    data: pd.DataFrame,
    keys: list[str],
    columns: str | None,
    value: str,
    agg: str,
    contributor: str | None,
    frame: pd.DataFrame,
    cells: list[dict],
) -> tuple[pd.DataFrame, list[dict]]:
    """``All`` row (and column) of a magnitude table, with their statistics."""
    everyone = data.assign(_all="All")
    row_all = "All" if len(keys) == 1 else ("All",) * len(keys)
    if columns:
        by_row = data.groupby(keys, observed=True, dropna=False)[value].agg(agg)
        by_column = data.groupby(columns, observed=True, dropna=False)[value].agg(agg)
        frame = frame.copy()
        frame["All"] = by_row
        frame.loc[row_all, :] = [*by_column.reindex(frame.columns[:-1]), data[value].agg(agg)]
        for label, part in _contributions(everyone, [*keys, "_all"], value, contributor):
            cells.append(_cell(label, part, keys, "_all"))
        for label, part in _contributions(everyone, ["_all", columns], value, contributor):
            cell = _cell(label, part, ["_all"], columns)
            cell["row"] = _label(row_all)
            cells.append(cell)
    else:
        frame = frame.copy()
        frame.loc[row_all, frame.columns[0]] = data[value].agg(agg)
    for _, part in _contributions(everyone, ["_all"], value, contributor):
        cell = _cell("All", part, ["_all"], None)
        cell["row"] = _label(row_all)
        if columns:
            cell["column"] = "All"
        cells.append(cell)
    return frame, cells


def _label(label: Any) -> Any:
    """A group key as JSON: a scalar, or a list for several keys."""
    parts = label if isinstance(label, tuple) else (label,)
    plain = [p.item() if hasattr(p, "item") else p for p in parts]
    plain = [None if isinstance(p, float) and p != p else p for p in plain]
    return plain[0] if len(plain) == 1 else plain


def _cells(notebook: str | Path, cells: Sequence[int]) -> dict[str, Any]:
    path = Path(notebook)
    document = json.loads(path.read_text(encoding="utf-8"))
    stored = document.get("cells", [])
    chosen = []
    for index in cells:
        if not 0 <= index < len(stored):
            raise IndexError(f"{path} has cells 0 to {len(stored) - 1}, not {index}")
        cell = stored[index]
        source = cell.get("source", "")
        taken = {
            "index": index,
            "source": source if isinstance(source, str) else "".join(source),
            "outputs": cell.get("outputs", []),
        }
        if isinstance(cell.get("execution_count"), int):
            taken["execution_count"] = cell["execution_count"]  # how every page names it
        chosen.append(taken)
    return {"kind": "cells", "notebook": str(path), "cells": chosen}


def _file(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{file} has {size:,} bytes; at most {MAX_FILE_BYTES:,} per request")
    return {
        "kind": "file",
        "path": str(file),
        "data_b64": base64.b64encode(file.read_bytes()).decode(),
    }


def request(
    notebook: str | Path, cells: Sequence[int], *, purpose: str, title: str = ""
) -> dict[str, Any]:
    """File a request for the outputs of ``cells`` of a saved notebook; returns it."""
    return post(
        "api/egress/requests", {**_cells(notebook, cells), "purpose": purpose, "title": title}
    )


def request_file(path: str | Path, *, purpose: str, title: str = "") -> dict[str, Any]:
    """File a request for one file of the work folder; returns it."""
    return post("api/egress/requests", {**_file(path), "purpose": purpose, "title": title})


def publish(
    notebook: str | Path,
    *,
    releases: Sequence[str] = (),
    purpose: str,
    title: str = "",
) -> dict[str, Any]:
    """Ask to publish a saved notebook as a showcase dashboard; returns the request.

    ``releases`` are IDs of this tenant's released export requests whose files the
    dashboard reads: once approved, the dashboard runs with copies of those files in
    its own folder (read them by file name) and nothing else, no views and no network.
    """
    path = Path(notebook)
    document = json.loads(path.read_text(encoding="utf-8"))
    body = {
        "kind": "dashboard",
        "notebook": str(path),
        "document": document,
        "releases": [*releases],
        "purpose": purpose,
        "title": title,
    }
    return post("api/egress/requests", body)


def unpublish(request_id: str) -> dict[str, Any]:
    """Take a published dashboard off the dashboards service at once."""
    return post(f"api/egress/requests/{request_id}/unpublish", {})


def resubmit(
    request_id: str,
    *,
    notebook: str | Path | None = None,
    cells: Sequence[int] = (),
    file: str | Path | None = None,
) -> dict[str, Any]:
    """Send new content for a request the reviewers sent back for changes."""
    content = _file(file) if file is not None else _cells(notebook or "", cells)
    return post(f"api/egress/requests/{request_id}/resubmit", content)


def status(request_id: str) -> dict[str, Any]:
    """One request: status, automatic check results and the reviewers' comments."""
    return get(f"api/egress/requests/{request_id}")


def list() -> pd.DataFrame:  # shadows the builtin here on purpose: shuyu.egress.list()
    """The tenant's requests, newest first."""
    rows = get("api/egress/requests")["requests"]
    columns = ["id", "title", "status", "verdict", "username", "created_at", "updated_at"]
    return pd.DataFrame(rows, columns=columns)
