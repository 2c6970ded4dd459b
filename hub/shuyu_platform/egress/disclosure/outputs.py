"""Reading artefacts out of notebook outputs: display bundles, streams, errors, JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pandas as pd

from ...messages import both
from .html_tables import _b64, _html_artefacts, _svg_text
from .rules import Artefact
from .text_tables import text_table_artefacts


def artefacts_from_outputs(
    cell_index: int, outputs: Sequence[Mapping[str, Any]], execution_count: int | None = None
) -> list[Artefact]:
    """Turn the nbformat 4 outputs of one code cell into artefacts.

    Every representation in a display bundle is checked, not only the richest one, as
    a released notebook carries them all. Artefact names read ``cell 3 output 1
    (text/html table 1)``: ``cell_index`` as given, outputs numbered from 1; each
    artefact's ``origin`` has ``cell``, ``output`` (0-based index in ``outputs``),
    ``mime`` and, for tables from HTML, ``table`` (0-based), and the cell's
    ``execution_count`` where it has one (pages name the cell by it, see
    :func:`shuyu_platform.messages.place`).
    """
    origin: dict[str, Any] = {"cell": cell_index}
    if isinstance(execution_count, int):
        origin["execution_count"] = execution_count
    return _outputs(f"cell {cell_index}", origin, outputs)


def _outputs(
    prefix: str, origin: Mapping[str, Any], outputs: Sequence[Mapping[str, Any]]
) -> list[Artefact]:
    artefacts: list[Artefact] = []
    for k, output in enumerate(outputs):
        name = f"{prefix} output {k + 1}"
        where = {**origin, "output": k}
        kind = output.get("output_type")
        if kind == "stream":
            stream = str(output.get("name", "stream"))
            text = _joined(output.get("text", ""))
            label = f"{name} ({stream})"
            stream_origin = {**where, "mime": stream}
            artefacts.append(Artefact(label, "text", text=text, origin=stream_origin))
            artefacts += text_table_artefacts(label, stream_origin, text)
        elif kind == "error":
            lines = [f"{output.get('ename', '')}: {output.get('evalue', '')}"]
            lines += [_ANSI.sub("", _joined(t)) for t in output.get("traceback", [])]
            artefacts.append(
                Artefact(f"{name} (error)", "text", text="\n".join(lines), origin=where)
            )
        elif kind in ("execute_result", "display_data"):
            stats = _output_stats(output)
            kind_claim = _output_kind(output)
            items = [
                item
                for mime, content in (output.get("data") or {}).items()
                for item in _bundle_item(name, where, str(mime), content)
            ]
            if any(i.kind == "table" and not i.from_text for i in items):
                # pandas writes the same table as HTML and as text: read it once.
                items = [i for i in items if not (i.kind == "table" and i.from_text)]
            for item in items:
                if item.kind == "table":
                    if stats is not None:
                        item.cell_stats = stats
                    if kind_claim is not None:
                        item.table_kind = kind_claim
            artefacts += items
        else:
            artefacts.append(
                Artefact(
                    f"{name} ({kind})",
                    "text",
                    text=json.dumps(dict(output), ensure_ascii=False, default=str),
                    origin=where,
                    review_note=both(
                        "Output type {kind!r} is not understood; review it by hand.", kind=kind
                    ),
                )
            )
    return artefacts


_ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_IMAGE_MIMES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_TEXT_MIMES: Final = frozenset({"text/plain", "text/markdown", "text/latex"})


def _output_stats(output: Mapping[str, Any]) -> dict | None:
    """Contributor statistics a display output carries in ``metadata.shuyu.cell_stats``.

    The kernel client (``shuyu.egress.table``) computes them from the microdata in the
    sandbox and attaches them to the table it displays; they apply to every table of
    that output.
    """
    metadata = output.get("metadata")
    shuyu = metadata.get("shuyu") if isinstance(metadata, Mapping) else None
    stats = shuyu.get("cell_stats") if isinstance(shuyu, Mapping) else None
    return dict(stats) if isinstance(stats, Mapping) else None


def _output_kind(output: Mapping[str, Any]) -> str | None:
    """How the kernel helper says the output's table was computed (``metadata.shuyu.kind``).

    It is the merchant's own claim, from inside the sandbox: it only chooses which of
    the rules apply (counts for ``"frequency"``; contributor statistics, which it must
    then bring, for ``"magnitude"``), never that none do.
    """
    metadata = output.get("metadata")
    shuyu = metadata.get("shuyu") if isinstance(metadata, Mapping) else None
    kind = shuyu.get("kind") if isinstance(shuyu, Mapping) else None
    return kind if kind in ("frequency", "magnitude") else None


def _joined(content: Any) -> str:
    """nbformat's multiline strings may be lists of lines."""
    if isinstance(content, list):
        return "".join(str(part) for part in content)
    return "" if content is None else str(content)


def _bundle_item(name: str, origin: Mapping[str, Any], mime: str, content: Any) -> list[Artefact]:
    where = {**origin, "mime": mime}
    if mime == "text/html":
        return _html_artefacts(f"{name} (text/html", where, _joined(content))
    if mime in _TEXT_MIMES:
        text = _joined(content)
        label = f"{name} ({mime})"
        return [
            Artefact(label, "text", text=text, origin=where),
            *text_table_artefacts(label, where, text),
        ]
    if mime in _IMAGE_MIMES:
        data = _b64(_joined(content))
        note = None if data is not None else both("The image data is not valid base64.")
        return [
            Artefact(
                f"{name} ({mime})",
                "image",
                image=data or b"",
                mime=mime,
                origin=where,
                review_note=note,
            )
        ]
    if mime == "image/svg+xml":
        svg = _joined(content)
        return [
            Artefact(
                f"{name} ({mime})",
                "image",
                image=svg.encode("utf-8"),
                mime=mime,
                text=_svg_text(svg),
                origin=where,
            )
        ]
    if mime == "application/json":
        if isinstance(content, str):
            try:
                content = json.loads(content)
            except ValueError:
                return [Artefact(f"{name} ({mime})", "text", text=content, origin=where)]
        return _json_artefacts(f"{name} ({mime})", where, content)
    if isinstance(content, str) or (
        isinstance(content, list) and all(isinstance(c, str) for c in content)
    ):
        text = _joined(content)
    else:
        text = _json_text(content)
    return [
        Artefact(
            f"{name} ({mime})",
            "text",
            text=text,
            origin=where,
            review_note=both(
                "Output type {mime} cannot be shown by the review tool nor fully checked "
                "automatically (only its text was scanned); review it by hand.",
                mime=mime,
            ),
        )
    ]


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def _json_artefacts(name: str, origin: Mapping[str, Any], value: Any) -> list[Artefact]:
    table = _json_table(value)
    if table is not None:
        return [Artefact(name, "table", table=table, origin=dict(origin))]
    return [Artefact(name, "text", text=_json_text(value), origin=dict(origin))]


def _json_table(value: Any) -> pd.DataFrame | None:
    """A DataFrame when ``value`` has one of pandas' JSON layouts, else None."""
    try:
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            return pd.DataFrame.from_records(value)
        if isinstance(value, dict) and value:
            if isinstance(value.get("data"), list) and "schema" in value:  # orient="table"
                return _json_table(value["data"])
            if isinstance(value.get("data"), list) and isinstance(value.get("columns"), list):
                return pd.DataFrame(  # orient="split"
                    value["data"], columns=value["columns"], index=value.get("index")
                )
            parts = list(value.values())
            if all(isinstance(p, dict) for p in parts) or (
                all(isinstance(p, list) for p in parts) and len({len(p) for p in parts}) == 1
            ):
                return pd.DataFrame(value)
    except (ValueError, TypeError):
        return None
    return None
