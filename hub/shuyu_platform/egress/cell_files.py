"""Released cells as files people open without Jupyter: PNG, HTML, CSV and Excel, watermarked.

Beside the released notebook of a cells request, each chosen cell's outputs come out as
files of their own where the outputs allow: a PNG or JPEG image (with the visible
footer band), an HTML output as an ``.html`` page (with the visible footer element),
and every table in an HTML output (pandas' ``to_html``, read back as the disclosure
checks read it) as a ``.csv`` (with the release column, UTF-8 with a byte-order mark
for Excel) and as an ``.xlsx`` workbook (the same column, and the release in the
workbook's properties). Each file is named after the cell the way every page names it: its
execution count (``cell5``) where it ran, its position otherwise (``position8``), and
the output's number from 1: ``rates-cell5-output1.png``.

Runs in the parsing jail with the watermarking (:mod:`.jailed`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, Final

from .disclosure import artefacts_from_outputs
from .watermark import Mark, Marked, WatermarkError, mark_file, table_workbook

#: Most extra files one release gets (the notebook holds everything anyway).
MAX_FILES: Final[int] = 50


def _cell_part(cell: Mapping[str, Any]) -> str:
    count = cell.get("execution_count")
    return f"cell{count}" if isinstance(count, int) else f"position{int(cell['index']) + 1}"


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


#: An HTML output as a page of its own.
PAGE: Final[str] = '<!doctype html><html><head><meta charset="utf-8"></head><body>{}</body></html>'


def _files_of(index: int, output: Mapping[str, Any], base: str, mark: Mark) -> list[Marked]:
    """The files of one output (see the module docstring)."""
    data = output.get("data") or {}
    files = []
    for mime, suffix in (("image/png", ".png"), ("image/jpeg", ".jpg")):
        if mime in data:
            image = base64.b64decode(_text(data[mime]))
            files.append(mark_file(f"{base}{suffix}", image, mark))
            break
    if "text/html" in data:
        html = _text(data["text/html"])
        files.append(mark_file(f"{base}.html", PAGE.format(html).encode(), mark))
        tables = [
            a.table
            for a in artefacts_from_outputs(index, [output])
            if a.table is not None and a.origin.get("mime") == "text/html"
        ]
        for t, table in enumerate(tables):
            name = base if len(tables) == 1 else f"{base}-table{t + 1}"
            files.append(mark_file(f"{name}.csv", table.to_csv().encode(), mark))
            files.append(mark_file(f"{name}.xlsx", table_workbook(table), mark))
    return files


def output_files(notebook: str, cells: Sequence[Mapping[str, Any]], mark: Mark) -> list[Marked]:
    """The watermarked PNG/JPEG, HTML and CSV files of the chosen cells' outputs; an
    output that cannot be turned into a file is left to the notebook."""
    stem = PurePosixPath(notebook).stem or "cells"
    files: list[Marked] = []
    for cell in cells:
        for k, output in enumerate(cell.get("outputs", [])):
            base = f"{stem}-{_cell_part(cell)}-output{k + 1}"
            try:
                files += _files_of(int(cell["index"]), output, base, mark)
            except (WatermarkError, ValueError):
                continue  # the notebook still carries the output, marked
    return [f for f in files if not f.name.endswith(".zip")][:MAX_FILES]
