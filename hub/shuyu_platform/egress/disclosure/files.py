"""Reading artefacts out of exported files: CSV, JSON, Arrow, HTML, notebooks, images."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any, Final

import pandas as pd

from ...messages import Both, both
from .html_tables import _coerce, _html_artefacts, _svg_text
from .outputs import _bundle_item, _joined, _json_artefacts, _outputs
from .rules import Artefact
from .text_tables import text_table_artefacts

_TEXT_EXTENSIONS: Final = frozenset({".txt", ".md", ".markdown", ".log", ".tex", ".rst"})
_IMAGE_EXTENSIONS: Final[dict[str, str]] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}


def _extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return "." + base.rsplit(".", 1)[-1].lower() if "." in base else ""


def _decode_text(data: bytes, *, allow_gb18030: bool) -> str | None:
    """UTF-8 text (BOM dropped), or GB 18030 where allowed; None for binary data."""
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        if not allow_gb18030:
            return None
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        return None


def artefacts_from_file(name: str, data: bytes) -> list[Artefact]:
    """Turn a file of an egress request into artefacts, by its extension.

    ``.csv``/``.tsv`` become tables (UTF-8 or GB 18030; every value is read as text
    first, so long digit strings keep every digit), ``.json`` a table when it has a
    pandas-like layout else text, ``.parquet``/``.feather``/``.arrow`` tables (pyarrow),
    ``.html`` tables and text, ``.ipynb`` the sources and outputs of its cells, images
    (``.png``, ``.jpg``, ``.gif``, ``.webp``, ``.svg``) image artefacts; anything else a
    text artefact when it is UTF-8 text, or a ``binary`` artefact that fails.
    """
    label = f"file {name}"
    origin = {"file": name}
    ext = _extension(name)
    if ext in _IMAGE_EXTENSIONS:
        mime = _IMAGE_EXTENSIONS[ext]
        text = None
        if ext == ".svg":
            svg = _decode_text(data, allow_gb18030=False)
            text = _svg_text(svg) if svg else None
        return [Artefact(label, "image", image=data, mime=mime, text=text, origin=origin)]
    if ext in (".parquet", ".feather", ".arrow"):
        try:
            table = _read_arrow(ext, data)
        except Exception as exc:  # pyarrow raises many types on bad input
            return [
                _binary(
                    label,
                    origin,
                    data,
                    both("it could not be read as {kind} ({error})", kind=ext[1:], error=exc),
                )
            ]
        return [Artefact(label, "table", table=table, origin=origin)]
    if ext == ".ipynb":
        text = _decode_text(data, allow_gb18030=False)
        try:
            notebook = json.loads(text) if text is not None else None
        except ValueError:
            notebook = None
        if not isinstance(notebook, dict):
            return [_binary(label, origin, data, both("it is not a readable notebook"))]
        return _notebook_artefacts(label, origin, notebook)
    text = _decode_text(data, allow_gb18030=ext in (".csv", ".tsv", ".txt", ".md"))
    if text is None:
        return [_binary(label, origin, data, both("it is not text in a known format"))]
    if ext in (".csv", ".tsv"):
        table = _read_delimited(text, "\t" if ext == ".tsv" else ",")
        if table is None:
            note = both("The file could not be read as a table; only its text was checked.")
            return [Artefact(label, "text", text=text, origin=origin, review_note=note)]
        return [Artefact(label, "table", table=table, origin=origin)]
    if ext == ".json":
        try:
            value = json.loads(text)
        except ValueError:
            return [Artefact(label, "text", text=text, origin=origin)]
        return _json_artefacts(label, origin, value)
    if ext in (".html", ".htm"):
        return _html_artefacts(f"{label} (html", origin, text)
    return [
        Artefact(label, "text", text=text, origin=origin),
        *text_table_artefacts(label, origin, text),
    ]


def _binary(label: str, origin: Mapping[str, Any], data: bytes, reason: Both) -> Artefact:
    return Artefact(label, "binary", data=data, origin=dict(origin), review_note=reason)


def _read_arrow(ext: str, data: bytes) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    buffer = pa.BufferReader(data)
    table = pq.read_table(buffer) if ext == ".parquet" else feather.read_table(buffer)
    return table.to_pandas()


def _read_delimited(text: str, sep: str) -> pd.DataFrame | None:
    try:
        raw = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return None
    columns = [_coerce(raw.iloc[:, j].tolist()) for j in range(raw.shape[1])]
    frame = pd.concat(columns, axis=1) if columns else pd.DataFrame(index=raw.index)
    frame.columns = list(raw.columns)
    return frame


def _notebook_artefacts(
    label: str, origin: Mapping[str, Any], notebook: Mapping[str, Any]
) -> list[Artefact]:
    artefacts: list[Artefact] = []
    cells = notebook.get("cells")
    for i, cell in enumerate(cells if isinstance(cells, list) else []):
        if not isinstance(cell, dict):
            continue
        where = {**origin, "cell": i}
        source = _joined(cell.get("source", ""))
        if source.strip():
            artefacts.append(
                Artefact(f"{label} cell {i} source", "text", text=source, origin=where)
            )
        for attachment, bundle in (cell.get("attachments") or {}).items():
            for mime, content in (bundle or {}).items():
                artefacts += _bundle_item(
                    f"{label} cell {i} attachment {attachment}", where, str(mime), content
                )
        outputs = cell.get("outputs")
        if isinstance(outputs, list):
            artefacts += _outputs(f"{label} cell {i}", where, outputs)
    return artefacts
