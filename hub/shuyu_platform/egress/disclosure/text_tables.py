"""Reading tables out of text: pandas' printed Series and DataFrames, and Markdown tables.

Frequencies are most often shown as a pandas Series (``value_counts()``,
``groupby().size()``), which has no HTML form: only its text reaches the notebook. So
that the count and dominance checks see such tables, text is searched for

- pandas' text layout (``repr``, ``print``, ``to_string``): value columns are
  right-aligned, so a column is a right edge shared by a header label (DataFrames) or
  by the last token of every line (Series, whose ``Name: …, dtype: …`` footer names the
  column); row labels are the tokens left of the first column;
- Markdown pipe tables (``to_markdown()``, hand-written reports): a header row, a
  ``|---|`` rule, then rows; a first column of distinct values is taken for row labels.

The reading is deliberately lenient: a block of aligned lines that is not a table may
be read as one, which can only add findings. Known limits: a column whose label is
wider than its values is found by the label's edge only; labels of multi-level
columns that are not right-aligned over their column are left out of the column name.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from .html_tables import _coerce
from .rules import Artefact

#: Tokens of a pandas text table: pandas may separate columns by a single space.
_TOKEN: Final = re.compile(r"\S+")
_SERIES_FOOTER: Final = re.compile(
    r"^(?:Name: (?P<name>.*?), )?(?:Length: (?P<length>\d+), )?dtype: (?P<dtype>[\w\[\], ]+)$"
)
_FRAME_FOOTER: Final = re.compile(r"^\[(\d+) rows x (\d+) columns\]$")
_VALUE: Final = re.compile(
    r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)?(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?%?"
    r"|NaN|nan|<NA>|None|inf|-inf"
)
_ELLIPSIS: Final = frozenset({"..", "...", "…"})
_MD_RULE: Final = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")

#: Most lines of one text read for tables (longer printouts fail ``row_level`` anyway).
MAX_LINES: Final[int] = 20_000


@dataclass
class TextTable:
    """One table found in a text: the frame, its true length and what it was read as."""

    frame: pd.DataFrame
    layout: str
    """``"series"``, ``"frame"`` or ``"markdown"``."""
    total_rows: int | None = None
    dtype: str | None = None
    """The dtype a Series footer states (``int64``, ``float64``), if any."""


@dataclass
class _Token:
    text: str
    start: int
    end: int


def _tokens(line: str) -> list[_Token]:
    return [_Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(line)]


def _is_value(text: str) -> bool:
    return bool(text) and text not in ("+", "-", ".") and bool(_VALUE.fullmatch(text))


def tables_in_text(text: str) -> list[TextTable]:
    """Every table found in ``text``, in order."""
    lines = text.splitlines()[:MAX_LINES]
    found: list[TextTable] = []
    block: list[str] = []
    md: list[str] = []

    def flush(footer: re.Match[str] | None = None, frame_rows: int | None = None) -> None:
        if block:
            table = _aligned(block, footer, frame_rows)
            if table is not None:
                found.append(table)
        block.clear()

    for line in lines:
        stripped = line.strip()
        if stripped.startswith("|") or (md and "|" in stripped):
            md.append(stripped)
            continue
        if md:
            found += _markdown(md)
            md = []
        if not stripped:
            flush()
            continue
        footer = _SERIES_FOOTER.match(stripped)
        if footer:
            flush(footer)
            continue
        frame_footer = _FRAME_FOOTER.match(stripped)
        if frame_footer:
            flush(None, int(frame_footer.group(1)))
            continue
        block.append(line.rstrip())
    if md:
        found += _markdown(md)
    flush()
    return found


def _aligned(
    lines: list[str], footer: re.Match[str] | None, frame_rows: int | None
) -> TextTable | None:
    """A pandas-printed table from one block of lines, or None if it does not look like one."""
    rows = [_tokens(line) for line in lines]
    rows = [r for r in rows if r and not all(t.text in _ELLIPSIS for t in r)]
    if len(rows) < (1 if footer is not None else 2):
        return None
    layout = "frame"
    edges: list[int] = []
    if footer is None:
        edges = _shared_edges(rows)
        headers, body = _split_header(rows, set(edges))
        if not body:
            return None
    if not edges:
        # A Series: index names above, then lines ending in the value.
        first = next((i for i, r in enumerate(rows) if _is_value(r[-1].text)), None)
        if first is None:
            return None
        headers, body = rows[:first], rows[first:]
        ends = Counter(r[-1].end for r in body if _is_value(r[-1].text))
        edge, hits = ends.most_common(1)[0]
        if footer is None and (len(body) < 2 or hits < max(2, (len(body) + 1) // 2)):
            return None
        edges = [edge]
        layout = "series"
    # Text columns left of every number column are row labels (a sparse second index
    # level, or leading key columns): only the number columns are checked as cells.
    valued = [e for e in edges if any(t.end == e and _is_value(t.text) for r in body for t in r)]
    if valued:
        edges = [e for e in edges if e >= valued[0]]
    starts = {e: min((t.start for r in body for t in r if t.end == e), default=e) for e in edges}
    left = min(starts.values())
    labels = _labels(headers, edges, starts, left)
    if layout == "series":
        name = footer.group("name") if footer is not None else None
        labels = [name or labels[0] or "(values)"]
    index: list[str] = []
    columns: list[list[str | None]] = [[] for _ in edges]
    outer = ""
    for r in body:
        by_edge = {t.end: t.text for t in r if t.end in starts}
        if not by_edge:
            continue
        label = " ".join(t.text for t in r if t.end not in starts and t.end < left)
        if label and r[0].start == 0:
            outer = label.split(" ")[0]
        elif label and outer:
            # A sparse multi-level index leaves repeated outer labels blank.
            label = f"{outer} {label}"
        index.append(label)
        for c, edge in enumerate(edges):
            columns[c].append(by_edge.get(edge))
    keep = [c for c, col in enumerate(columns) if not all(v is None or v in _ELLIPSIS for v in col)]
    if not keep:
        return None
    frame = pd.concat(
        [_coerce([None if v in _ELLIPSIS else v for v in columns[c]]) for c in keep], axis=1
    )
    frame.columns = [labels[c] if labels[c] is not None else f"column {c + 1}" for c in keep]
    if any(index):
        frame.index = pd.Index(index)
    total = frame_rows
    if footer is not None and footer.group("length"):
        total = int(footer.group("length"))
    return TextTable(frame, layout, total, footer.group("dtype") if footer else None)


def _shared_edges(rows: list[list[_Token]]) -> list[int]:
    """Right edges reached by a token in at least half the lines: pandas' columns.

    An edge reached only by tokens that start a line (left-aligned row labels) is none.
    """
    counts = Counter(t.end for r in rows for t in r)
    needed = max(2, (len(rows) + 1) // 2)
    return sorted(
        e
        for e, n in counts.items()
        if n >= needed and any(t.end == e and t.start > 0 for r in rows for t in r)
    )


def _split_header(
    rows: list[list[_Token]], edges: set[int]
) -> tuple[list[list[_Token]], list[list[_Token]]]:
    """Header lines (the first, then those without values at the columns), then data.

    A first line that starts with a row label and holds only values at the columns is
    read as data too (a table printed without a header).
    """
    first = [t for t in rows[0] if t.end in edges]
    if rows[0][0].start == 0 and first and all(_is_value(t.text) for t in first):
        return [], rows
    for i in range(1, len(rows)):
        if any(_is_value(t.text) for t in rows[i] if t.end in edges):
            return rows[:i], rows[i:]
    return rows, []


def _labels(
    headers: list[list[_Token]], edges: list[int], starts: dict[int, int], left: int
) -> list[str | None]:
    """Column labels from the header lines over the columns (not the index names' line)."""
    over = [r for r in headers if any(t.end > left for t in r)]
    labels: list[str | None] = []
    for edge in edges:
        parts: list[str] = []
        for r in over:
            at_edge = [t.text for t in r if t.end == edge]
            # An upper level of a multi-level header stands left-aligned over its columns.
            before = [t for t in r if t.start <= starts[edge] and t.end > left]
            if at_edge:
                parts.append(at_edge[0])
            elif before and r is not over[-1]:
                parts.append(before[-1].text)
        labels.append(" / ".join(parts) if parts else None)
    return labels


def _markdown(lines: list[str]) -> list[TextTable]:
    """Pipe tables among ``lines`` (a header row, a rule, then rows)."""
    tables: list[TextTable] = []
    i = 0
    while i + 1 < len(lines):
        if not _MD_RULE.match(lines[i + 1]):
            i += 1
            continue
        header = _md_cells(lines[i])
        rows: list[list[str]] = []
        j = i + 2
        while j < len(lines) and not _MD_RULE.match(lines[j]):
            rows.append(_md_cells(lines[j]))
            j += 1
        i = j
        if not rows:
            continue
        width = max(len(header), *(len(r) for r in rows))
        header += [""] * (width - len(header))
        rows = [r + [""] * (width - len(r)) for r in rows]
        first = [r[0] for r in rows]
        use_index = width > 1 and len(set(first)) == len(first) and all(first)
        start = 1 if use_index else 0
        columns = [_coerce([r[c] for r in rows]) for c in range(start, width)]
        frame = pd.concat(columns, axis=1)
        frame.columns = [header[c] or f"column {c + 1}" for c in range(start, width)]
        if use_index:
            frame.index = pd.Index(first, name=header[0] or None)
        tables.append(TextTable(frame, "markdown"))
    return tables


def _md_cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner.removeprefix("|").removesuffix("|")
    return [" ".join(c.replace("**", "").split()) for c in inner.split("|")]


def text_table_artefacts(name: str, origin: Mapping[str, Any], text: str) -> list[Artefact]:
    """Table artefacts for the tables in ``text`` (the text itself is checked apart).

    ``name`` is the text artefact's name; tables are named ``<name> table k``. They are
    marked ``from_text``: identifiers and names in them are found by the text's scan.
    """
    artefacts: list[Artefact] = []
    for k, found in enumerate(tables_in_text(text)):
        artefacts.append(
            Artefact(
                f"{name} table {k + 1}",
                "table",
                table=found.frame,
                total_rows=found.total_rows,
                origin={**origin, "text_table": k, "layout": found.layout},
                from_text=True,
                table_kind=_series_kind(found),
            )
        )
    return artefacts


def _series_kind(found: TextTable) -> str | None:
    """``"frequency"`` for an unnamed Series of integers: ``groupby(...).size()``.

    A sum or mean keeps the name of the column it was computed from, so an unnamed
    integer Series is a count; anything else is left to the column-name rules.
    """
    unnamed = found.frame.columns[0] == "(values)"
    integers = (found.dtype or "").lower().startswith(("int", "uint"))
    return "frequency" if found.layout == "series" and unnamed and integers else None
