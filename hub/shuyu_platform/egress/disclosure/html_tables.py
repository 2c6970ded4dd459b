"""Reading tables, text and embedded images out of HTML (pandas' ``to_html`` and others)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Final

import numpy as np
import pandas as pd

from .rules import Artefact

_HTML_FOOTER: Final = re.compile(r"(\d+)\s+rows\s+×\s+(\d+)\s+columns")


@dataclass
class _Cell:
    text: list[str]
    header: bool
    colspan: int
    rowspan: int


@dataclass
class _RawTable:
    rows: list[tuple[str, list[_Cell]]] = field(default_factory=list)
    section: str = "tbody"
    row: list[_Cell] | None = None
    cell: _Cell | None = None
    total_rows: int | None = None


_SPAN_LIMIT: Final[int] = 1000


class _HtmlScan(HTMLParser):
    """Collects the tables, the text outside them and embedded images of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[_RawTable] = []
        self.text: list[str] = []
        self.images: list[str] = []
        self._open: list[_RawTable] = []
        self._skip = 0
        self._last: _RawTable | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "table":
            self._open.append(_RawTable())
        elif tag == "img":
            src = dict(attrs).get("src") or ""
            if src.startswith("data:"):
                self.images.append(src)
        elif self._open:
            table = self._open[-1]
            if tag in ("thead", "tbody", "tfoot"):
                table.section = tag
            elif tag == "tr":
                self._end_row(table)
                table.row = []
            elif tag in ("th", "td"):
                self._end_cell(table)
                if table.row is None:
                    table.row = []
                values = dict(attrs)
                table.cell = _Cell(
                    [], tag == "th", _span(values.get("colspan")), _span(values.get("rowspan"))
                )
            elif tag == "br" and table.cell is not None:
                table.cell.text.append(" ")
        elif tag in ("br", "p", "div", "li", "tr"):
            self.text.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip = max(0, self._skip - 1)
        elif not self._open:
            return
        elif tag in ("th", "td"):
            self._end_cell(self._open[-1])
        elif tag == "tr":
            self._end_row(self._open[-1])
        elif tag in ("thead", "tbody", "tfoot"):
            self._open[-1].section = "tbody"
        elif tag == "table":
            table = self._open.pop()
            self._end_row(table)
            self.tables.append(table)
            self._last = table

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._open and self._open[-1].cell is not None:
            self._open[-1].cell.text.append(data)
            return
        footer = _HTML_FOOTER.search(data)
        if footer and not self._open and self._last is not None:
            self._last.total_rows = int(footer.group(1))
            data = _HTML_FOOTER.sub("", data)
        self.text.append(data)

    def close(self) -> None:
        super().close()
        while self._open:
            self.handle_endtag("table")

    @staticmethod
    def _end_cell(table: _RawTable) -> None:
        if table.cell is not None and table.row is not None:
            table.row.append(table.cell)
        table.cell = None

    def _end_row(self, table: _RawTable) -> None:
        self._end_cell(table)
        if table.row:
            table.rows.append((table.section, table.row))
        table.row = None


def _span(value: str | None) -> int:
    try:
        return min(max(int(value or 1), 1), _SPAN_LIMIT)
    except ValueError:
        return 1


def _grid(rows: list[list[_Cell]]) -> list[list[tuple[str, bool]]]:
    """Expand colspan/rowspan into a rectangular-ish grid of (text, is_header)."""
    grid: list[list[tuple[str, bool]]] = []
    carry: dict[int, list[Any]] = {}  # column -> [rows left, text, header]

    for row in rows:
        out: list[tuple[str, bool]] = []

        def fill(out: list[tuple[str, bool]] = out) -> None:
            while len(out) in carry:
                entry = carry[len(out)]
                out.append((entry[1], entry[2]))
                entry[0] -= 1
                if entry[0] <= 0:
                    del carry[len(out) - 1]

        for cell in row:
            fill()
            text = " ".join("".join(cell.text).split())
            for _ in range(cell.colspan):
                if cell.rowspan > 1:
                    carry[len(out)] = [cell.rowspan - 1, text, cell.header]
                out.append((text, cell.header))
        fill()
        grid.append(out)
    return grid


_MISSING_TEXT: Final = frozenset({"", "nan", "NaN", "None", "<NA>", "NaT", "null", "NULL", "N/A"})
#: Marks of suppressed cells: a column of numbers and these marks is still numeric.
_SUPPRESSED_TEXT: Final = frozenset({"-", "–", "—", "*", "**", "x", "X", "..", "…"})
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GROUPED_NUMBER: Final = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
_CODE_LIKE: Final = re.compile(r"[0-9]{11,}|0[0-9]+")


def _coerce(values: Sequence[str | None]) -> pd.Series:
    """A column of texts as numbers when every value is one, else as strings.

    Digit strings of 11 or more digits (phone, ID and card numbers) and numbers with a
    leading zero (codes) keep the column textual, so no digit is lost. Marks of
    suppressed cells (``-``, ``*``, ``x``, ...) become NaN in a numeric column.
    """
    blank = _MISSING_TEXT | _SUPPRESSED_TEXT
    present = [v for v in values if v is not None and v not in blank]
    numeric = bool(present)
    for text in present:
        if _CODE_LIKE.fullmatch(text.lstrip("+-")) or not (
            _NUMBER.fullmatch(text) or _GROUPED_NUMBER.fullmatch(text)
        ):
            numeric = False
            break
    if not numeric:
        return pd.Series(
            [None if v is None or v in _MISSING_TEXT else v for v in values], dtype=object
        )
    numbers = [None if v is None or v in blank else v.replace(",", "") for v in values]
    whole = all(n is None or not re.search("[.eE]", n) for n in numbers)
    if whole and None not in numbers:
        return pd.Series([int(n) for n in numbers if n is not None], dtype="int64")
    return pd.Series([np.nan if n is None else float(n) for n in numbers], dtype="float64")


def _frame(raw: _RawTable) -> pd.DataFrame | None:
    """Rebuild a DataFrame from a parsed HTML table (pandas' ``to_html`` layout)."""
    sections = [section for section, _ in raw.rows]
    grid = _grid([cells for _, cells in raw.rows])
    header_rows = [g for g, s in zip(grid, sections, strict=True) if s == "thead"]
    body_rows = [g for g, s in zip(grid, sections, strict=True) if s != "thead"]
    if not header_rows:
        while len(body_rows) > 1 and all(h for _, h in body_rows[0]):
            header_rows.append(body_rows.pop(0))
    if not body_rows:
        return None
    width = max(len(r) for r in header_rows + body_rows)
    pad = [("", False)]
    header_rows = [r + pad * (width - len(r)) for r in header_rows]
    body_rows = [r + pad * (width - len(r)) for r in body_rows]
    n_index = 0
    for _, is_header in body_rows[0]:
        if not is_header:
            break
        n_index += 1
    if n_index == width:
        n_index = 0
    index_names: list[str | None] = [None] * n_index
    label_rows = []
    for row in header_rows:
        data_part = [t for t, _ in row[n_index:]]
        if n_index and not any(data_part) and any(t for t, _ in row[:n_index]):
            index_names = [t or None for t, _ in row[:n_index]]
        else:
            label_rows.append(data_part)
    labels: list[Any] = []
    for j in range(width - n_index):
        parts = [r[j] for r in label_rows if r[j]]
        labels.append(" / ".join(parts) if parts else j)
    body = [
        r
        for r in body_rows
        if not all(t in ("...", "…") for t, _ in r[n_index:])  # truncated display rows
    ]
    keep = [
        j
        for j in range(width - n_index)
        if not (labels[j] in ("...", "…") and all(r[n_index + j][0] in ("...", "…") for r in body))
    ]
    columns = [_coerce([r[n_index + j][0] for r in body]) for j in keep]
    frame = pd.concat(columns, axis=1) if columns else pd.DataFrame(index=range(len(body)))
    frame.columns = [labels[j] for j in keep]
    if n_index == 1:
        frame.index = pd.Index([r[0][0] for r in body], name=index_names[0])
    elif n_index > 1:
        frame.index = pd.MultiIndex.from_tuples(
            [tuple(t for t, _ in r[:n_index]) for r in body], names=index_names
        )
    return frame


def _html_artefacts(name: str, origin: Mapping[str, Any], html: str) -> list[Artefact]:
    """Tables, remaining text and embedded images of an HTML fragment.

    ``name`` is an unclosed prefix such as ``cell 3 output 1 (text/html``.
    """
    scan = _HtmlScan()
    scan.feed(html)
    scan.close()
    artefacts: list[Artefact] = []
    for t, raw in enumerate(scan.tables):
        frame = _frame(raw)
        if frame is None:
            text = " ".join("".join(c.text) for _, row in raw.rows for c in row)
            scan.text.append("\n" + text)
            continue
        artefacts.append(
            Artefact(
                f"{name} table {t + 1})",
                "table",
                table=frame,
                total_rows=raw.total_rows,
                origin={**origin, "table": t},
            )
        )
    text = re.sub(r"[ \t\r\f\v]+", " ", "".join(scan.text))
    text = re.sub(r"\s*\n\s*", "\n", text).strip()
    if text:
        artefacts.append(Artefact(f"{name} text)", "text", text=text, origin=dict(origin)))
    for m, src in enumerate(scan.images):
        header, _, payload = src.partition(",")
        mime = header[5:].split(";")[0] or "application/octet-stream"
        data = _b64(payload) if ";base64" in header else payload.encode("utf-8")
        artefacts.append(
            Artefact(
                f"{name} image {m + 1})",
                "image",
                image=data or b"",
                mime=mime,
                origin={**origin, "image": m},
            )
        )
    return artefacts


def _svg_text(svg: str) -> str:
    """The text nodes of an SVG (labels, titles), for the text checks."""
    scan = _HtmlScan()
    scan.feed(svg)
    scan.close()
    return " ".join(" ".join(scan.text).split())


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None
