"""A reviewer's preview of a dashboard: its frozen notebook laid out as Voila shows it.

Voila shows a dashboard's Markdown and its code cells' outputs, never its code. The
preview does the same on the review page, from the frozen content (the outputs as the
merchant last ran them), before anything is published: Markdown becomes HTML with raw
HTML escaped and unsafe links dropped (mistune), HTML outputs keep only table and text
markup (bleach), images are shown as ``data:`` PNG/JPEG, and everything else as text.
No script of the notebook reaches the page. The review page shows the preview in a
frame with an empty ``sandbox`` attribute, from a document whose own policy sandboxes it
too (service ``ReviewPreviewPage``): an opaque origin that runs no script and sends no
form, so even markup that got past the cleaning could not act as the reviewer.
"""

from __future__ import annotations

from typing import Any, Final

import bleach
import mistune
from markupsafe import Markup, escape

#: HTML elements an HTML output may keep in the preview (pandas tables and text).
ALLOWED_TAGS: Final[frozenset[str]] = frozenset(
    {"table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "p", "br", "b", "i",
     "em", "strong", "span", "div", "h1", "h2", "h3", "h4", "ul", "ol", "li", "code", "pre"}
)  # fmt: skip
#: Characters of one text output shown.
SHOWN_TEXT: Final[int] = 4000

_markdown = mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _output(output: dict[str, Any]) -> Markup:
    """One output as the preview shows it."""
    kind = output.get("output_type")
    if kind == "stream":
        return Markup("<pre>{}</pre>").format(_text(output.get("text"))[:SHOWN_TEXT])
    if kind == "error":
        return Markup('<pre class="error">{}: {}</pre>').format(
            output.get("ename"), output.get("evalue")
        )
    data = output.get("data") or {}
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            image = _text(data[mime]).replace("\n", "")
            return Markup('<img alt="" src="data:{};base64,{}">').format(mime, image)
    if "text/html" in data:
        clean = bleach.clean(_text(data["text/html"]), tags=ALLOWED_TAGS, attributes={}, strip=True)
        return Markup('<div class="html-output">{}</div>').format(Markup(clean))
    if "text/markdown" in data:
        return Markup(_markdown(_text(data["text/markdown"])))
    return Markup("<pre>{}</pre>").format(_text(data.get("text/plain", ""))[:SHOWN_TEXT])


def preview(document: dict[str, Any]) -> list[Markup]:
    """The blocks of the dashboard, in order: rendered Markdown and code cells' outputs."""
    blocks: list[Markup] = []
    for cell in document.get("cells", []):
        if cell.get("cell_type") == "markdown":
            blocks.append(Markup(_markdown(_text(cell.get("source")))))
        elif cell.get("cell_type") == "code":
            blocks += [_output(o) for o in cell.get("outputs", []) if isinstance(o, dict)]
    return blocks or [Markup("<p>{}</p>").format(escape("（空看板 an empty dashboard）"))]
