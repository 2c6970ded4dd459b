"""The platform's one message catalogue: every word a person reads, Chinese first.

Everything the platform shows people (its pages, the hub's pages it templates, its
refusals, the automatic checks' names and the names of statuses and actions) is looked
up here, in two gettext catalogues of one domain:

``zh_CN.po``
    The Chinese text of every message id (an English sentence or an internal name).
``en.po``
    English labels of internal names (``changes_requested`` → "Changes requested");
    an English sentence is its own English text and needs no entry.

:func:`text` gives "中文 English" (the Chinese first, the English after it), and
:func:`label` the same for an internal name, so that no page shows a status, action,
check or rule by its identifier. :func:`china_time` writes a moment in China time with
the zone named. :func:`install` makes them ``_``, ``|label`` and ``|china_time`` in a
Jinja2 environment; a page template needs nothing else.

The ``.po`` files are read as they are (Babel parses them at first use), so editing one
and restarting the service is all a translation change takes.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, NamedTuple

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from markupsafe import Markup, escape

HERE: Final[Path] = Path(__file__).parent
#: China Standard Time: every deadline of the platform is counted in it.
CHINA_TIME: Final[timezone] = timezone(timedelta(hours=8), "CST")
#: How a China-time moment names its zone on screen.
ZONE_NAME: Final[str] = "北京时间"


@cache
def catalogue(locale: str) -> gettext.GNUTranslations:
    """The compiled catalogue ``<locale>.po`` of this folder."""
    with open(HERE / f"{locale}.po", "rb") as handle:
        parsed = read_po(handle, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, parsed)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@cache
def identifiers() -> frozenset[str]:
    """Every internal name the catalogue labels (the ids of ``en.po``): none may be shown."""
    with open(HERE / "en.po", "rb") as handle:
        return frozenset(m.id for m in read_po(handle) if m.id and isinstance(m.id, str))


class Both(NamedTuple):
    """A part of a sentence in both languages, given as a value to :func:`text`: the
    Chinese sentence gets the Chinese part and the English sentence the English part."""

    zh: str
    en: str

    @property
    def shown(self) -> str:
        """As a person reads it: "中文 English", or one of them where both are the same."""
        return self.zh if self.zh == self.en else f"{self.zh} {self.en}"

    def __add__(self, other: object) -> Both:  # type: ignore[override]
        if isinstance(other, Both):
            return Both(self.zh + other.zh, self.en + other.en)
        return NotImplemented


def both(message: str, **values: Any) -> Both:
    """``message`` in both languages, to be a value of a longer :func:`text`."""
    return Both(zh(message, **values), en(message, **values))


def _side(values: Mapping[str, Any], index: int) -> dict[str, Any]:
    return {k: v[index] if isinstance(v, Both) else v for k, v in values.items()}


def zh(message: str, **values: Any) -> str:
    """The Chinese of ``message`` (``str.format`` placeholders filled from ``values``)."""
    found = catalogue("zh_CN").gettext(message)
    return found.format(**_side(values, 0)) if values else found


def en(message: str, **values: Any) -> str:
    """The English of ``message``: its label if it is an internal name, else itself."""
    found = catalogue("en").gettext(message)
    return found.format(**_side(values, 1)) if values else found


def text(message: str, **values: Any) -> str:
    """``message`` for a person: "中文 English", or one of them where both are the same."""
    return both(message, **values).shown


def refusal(message: str, status: int) -> str:
    """A refusal's sentence for a person (an API answer's ``message``): its catalogue text
    where it has one, else the Chinese name of the HTTP status first and the sentence,
    which carries names and values of the request, after it as it is."""
    if zh(message) != message:
        return text(message)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return message
    chinese = zh(phrase)
    return message if chinese == phrase else f"{chinese}：{message}"


def label(name: str | None) -> str:
    """An internal name (status, action, check, rule, role) as a person reads it."""
    if not name:
        return "—"
    return text(str(name))


def labels(*names: str | None) -> dict[str, str]:
    """``{name: label}`` for each internal name given: sent along with API answers, so
    that a page built elsewhere (the sandbox's Request export page) shows labels too."""
    return {name: label(name) for name in names if name}


def cell_name(index: int, execution_count: int | None = None) -> str:
    """How every page names a notebook cell: JupyterLab's execution count ``[5]`` where
    the cell has one, else its position in the notebook (1-based), named as such.
    ``index`` is the cell's 0-based index in the notebook."""
    if isinstance(execution_count, int):
        return f"单元格 [{execution_count}] cell [{execution_count}]"
    return f"第 {index + 1} 个单元格 cell at position {index + 1}"


def place(where: Mapping[str, Any] | None) -> str:
    """Where a finding or an output is, for a person: the cell (:func:`cell_name`), its
    output (1-based, as every page counts them), the file, and a row, column or line."""
    if not where:
        return "—"
    parts: list[str] = []
    if isinstance(where.get("cell"), int):
        parts.append(cell_name(where["cell"], where.get("execution_count")))
    if isinstance(where.get("output"), int):
        parts.append(f"输出 {where['output'] + 1} output {where['output'] + 1}")
    if where.get("file"):
        parts.append(f"文件 file {where['file']}")
    for key, zh_name in (("row", "行"), ("column", "列"), ("line", "行号")):
        if where.get(key) not in (None, ""):
            parts.append(f"{zh_name} {key} {where[key]}")
    return " · ".join(parts) or "—"


def china_time(moment: str | datetime | None, *, seconds: bool = False) -> str:
    """``moment`` (a datetime, or ISO 8601 text; UTC unless it says otherwise) in China
    time with the zone named: ``2026-12-07 23:59 北京时间``. Anything else is shown as is."""
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return f"{moment.astimezone(CHINA_TIME).strftime(shape)} {ZONE_NAME}"


def _template_text(message: str, **values: Any) -> Markup:
    """``_`` of templates: :func:`text` with its values escaped (the message is trusted)."""
    return Markup(text(message, **{key: escape(v) for key, v in values.items()}))


def status_text(status: int) -> str:
    """An HTTP status in words, Chinese first (``未找到 Not Found``)."""
    try:
        return text(HTTPStatus(status).phrase)
    except ValueError:
        return text("Error")


def template_globals() -> dict[str, Any]:
    """``_(...)``, ``china_time(...)`` and ``status_text(...)`` for a template (the hub's
    pages take these only)."""
    return {"_": _template_text, "china_time": china_time, "status_text": status_text}


def install(environment: Any) -> None:
    """Give a Jinja2 environment ``_(...)``, ``china_time(...)``, ``cell_name(...)``, and
    the filters ``|label``, ``|china_time``, ``|place`` and ``|zh``."""
    environment.globals.update(template_globals())
    environment.filters["label"] = label
    environment.filters["china_time"] = china_time
    environment.filters["zh"] = zh
    environment.filters["place"] = place
    environment.globals["cell_name"] = cell_name
