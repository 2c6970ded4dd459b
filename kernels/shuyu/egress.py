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
    """An aggregated table that carries its contributor statistics when displayed.

    ``frame`` is the table itself; ``stats`` the per-cell statistics (total, largest
    contributions, number of contributors, negative contributors) in the form the
    platform's disclosure checks read from the output's ``metadata.shuyu.cell_stats``.
    """

    def __init__(self, frame: pd.DataFrame, stats: dict[str, Any]) -> None:
        self.frame = frame
        self.stats = stats

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        data = {"text/plain": repr(self.frame), "text/html": self.frame.to_html()}
        return data, {"shuyu": {"cell_stats": self.stats}}

    def __repr__(self) -> str:
        return repr(self.frame)


def table(
    data: pd.DataFrame,
    by: str | Sequence[str],
    value: str,
    *,
    agg: str = "sum",
    contributor: str | None = None,
) -> StatsTable:
    """``agg`` of ``value`` by ``by``, with contributor statistics for the export checks.

    A contributor is one value of ``contributor`` (say a pseudonymised person or firm
    id), whose rows are added up; without it, every row is a contributor. The result's
    column is named ``<value>_<agg>``.
    """
    keys = [by] if isinstance(by, str) else [str(k) for k in by]
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {', '.join(AGGREGATIONS)}, not {agg!r}")
    missing = [c for c in [*keys, value, *([contributor] if contributor else [])] if c not in data]
    if missing:
        raise KeyError(f"no column {', '.join(map(repr, missing))} in the data")
    column = f"{value}_{agg}"
    frame = data.groupby(keys, observed=True, dropna=False)[value].agg(agg).to_frame(column)
    per = (
        data.groupby([*keys, contributor], observed=True, dropna=False)[value].sum()
        if contributor
        else data.set_index(keys)[value]
    )
    cells = []
    for label, contributions in per.groupby(level=[*range(len(keys))], dropna=False):
        values = contributions.dropna().astype(float)
        cells.append(
            {
                "row": _label(label),
                "total": float(values.sum()),
                "top": [float(v) for v in values.nlargest(TOP)],
                "count": int(values.size),
                "n_negative": int((values < 0).sum()),
            }
        )
    return StatsTable(frame, {"column": column, "cells": cells})


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
        chosen.append(
            {
                "index": index,
                "source": source if isinstance(source, str) else "".join(source),
                "outputs": cell.get("outputs", []),
            }
        )
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
