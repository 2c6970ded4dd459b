"""Export requests from a tenant's kernel: the only way a result leaves the sandbox.

Downloads are switched off in the sandbox. To take something out, file a request with
a purpose; it is frozen as sent, checked automatically and reviewed by the operator::

    import shuyu
    shuyu.egress.request("analysis.ipynb", cells=[4, 7], purpose="理赔率汇总表，用于产品定价")
    shuyu.egress.request_file("results/summary.csv", purpose="...")
    shuyu.egress.list()          # the tenant's requests: status, checks verdict
    shuyu.egress.status(rid)     # one request with the reviewers' comments

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

__all__ = ["list", "request", "request_file", "resubmit", "status"]

#: Largest file sent with a request (the service refuses larger snapshots anyway).
MAX_FILE_BYTES = 16 * 1024 * 1024


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
