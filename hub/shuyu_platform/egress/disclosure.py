"""Automatic statistical-disclosure checks run on every egress request (R10-R12).

A merchant who wants something out of the sandbox files an egress request: chosen cell
outputs of a notebook, or a file from the work folder. Before a reviewer looks, the
review service turns the frozen request into :class:`Artefact` objects
(:func:`artefacts_from_outputs`, :func:`artefacts_from_file`), runs :func:`run_checks`
on them and stores the resulting :class:`Report` (:meth:`Report.as_dict`) next to the
request. This module is pure: no database, no HTTP, no clock; the same input always gives
the same findings.

Checks (the ``check`` field of a :class:`Finding`)
    ``min_cell_count``
        Frequency tables: a cell ``0 < x < Rules.min_cell_count`` fails; zeros pass. A
        table is a frequency table when it has count-named numeric columns (``n``,
        ``count``, ``freq``, ``size``, 人数, 数量, 频数, ...; only those are checked) or,
        failing that, when every numeric column not named like a label (``year``,
        ``month``, ``code``, ``age``, 年份, 编码, ...) holds non-negative whole numbers
        (``pd.crosstab`` output). With contributor statistics (``cell_stats``) a cell's
        contributor ``count`` is checked the same way, for magnitude tables too. Source:
        ACRO's ``MinimumThresholdCheck`` (``safe_threshold: 10``), except that ACRO also
        fails zeros by default (``zeros_are_disclosive``) while zeros pass here.
    ``dominance`` (n-k rule) and ``p_percent`` (p% rule)
        Need contributor statistics per cell (see :class:`Artefact`, ``cell_stats``;
        a notebook output carries them in ``metadata.shuyu.cell_stats``, which the
        kernel client's ``shuyu.egress.table`` fills from the microdata).
        n-k fails when the ``n`` largest contributors make up ``k`` or more of the cell
        total: ``sum(top[:n]) / total >= k``. p% fails when the contributors other than
        the two largest add up to less than ``p`` of the largest:
        ``(total - top1 - top2) / top1 < p``; a cell whose largest contributor is 0
        passes. Both are undefined with negative contributors (a ``warn``, ACRO's
        "review"). These are ACRO's ``NKCheck`` and ``PPercentCheck`` as implemented in
        ``acro/sdcchecks.py`` (acro 1.0.2: ``proportion >= safe_nk_k``,
        ``p_val < safe_pratio_p``) with ACRO's defaults ``safe_nk_n: 2``,
        ``safe_pratio_p: 0.10``; ACRO's ``safe_nk_k`` is 0.90 while :class:`Rules`
        defaults to the stricter 0.85. A table with sum/mean/extreme-like columns and no
        statistics for them gets one ``warn`` that dominance could not be checked.
    ``row_level``
        Tables with more than ``Rules.max_rows`` rows (or ``max_columns`` columns) fail,
        counting rows a notebook display truncated (``1000 rows × 5 columns``) and the
        ``[1000 rows x 5 columns]`` footer of a DataFrame printed as text. In tables that
        do not look aggregated (no count or sum/mean-named column, not a frequency
        table), a string column with at least ``distinct_min_values`` values of which
        ``distinct_share`` or more are distinct warns (looks like an identifier); row
        labels are left out, as group keys are distinct by construction. Text longer
        than ``max_text_lines`` lines warns.
    ``pseudonyms``
        Masked-view pseudonyms (:mod:`shuyu_platform.data.masking`: a policy prefix such as
        ``P-`` plus 16 lower-case base32 characters) in a table column or a text fail:
        they let a recipient link rows of one person. Tokens without a known prefix are
        found too when they mix letters and digits.
    ``identifiers``
        Resident ID numbers (18 characters, checked by
        :func:`~shuyu_platform.data.identifiers.is_valid_id_card`, a lower-case ``x`` is
        accepted), unified social credit codes
        (:func:`~shuyu_platform.data.identifiers.is_valid_uscc`),
        bank card numbers and mobile numbers (:func:`~shuyu_platform.data.identifiers.is_mobile`
        on 11-digit runs, also written ``138 1234 5678``, ``138-1234-5678`` or with
        ``+86``) in text, table cells, row labels and column headers fail (a table cell
        holding nothing but an 11-digit number counts as a mobile number only if at
        least half of its column's all-digit cells are mobile numbers, so that a column
        of large amounts is not taken for phone numbers). Bank cards:
        16-19 digits (contiguous, or in groups of four separated by one space or
        hyphen), passing :func:`~shuyu_platform.data.identifiers.luhn_valid` and starting
        with a plausible issuer prefix (:data:`BANK_CARD_PREFIXES`): without the
        prefix test one long number in ten passes Luhn by chance. A span that is a
        valid ID number is not also reported as a credit code or card. Values in
        messages are always masked (``5101**********1234``).
    ``names``
        ``Context.known_names`` (person names from the raw data) in text or cells warn:
        names are short, so matches may be ordinary words or other people.
    ``image``
        Every image warns (a person must look at it). A file whose bytes do not match
        its image type, or a PNG with bytes after its end, fails (``file_type``); text
        inside images (SVG text, PNG text chunks) goes through the text checks.
    ``dp_provenance``
        A number whose :func:`number_key` is in ``Context.dp_numbers`` comes from a
        released DP answer. When every numeric cell of a table does, the table's
        ``min_cell_count``/``dominance``/``p_percent`` findings are replaced by one
        ``safe`` finding; otherwise an ``info`` gives the share matched, and columns
        that match entirely skip those checks. Numbers with fewer than
        ``Rules.dp_min_digits`` significant digits (7, 42, 0.5, 100) never count as
        matched: they coincide with some DP answer too easily, and a merchant could
        collect small DP answers to launder small raw counts.
    ``binary``, ``manual_review``, ``file_type``
        Files that are neither text nor a known format fail (they can neither be
        checked nor shown); output types this module does not understand warn.

Severities are ``fail``, ``warn``, ``info`` and ``safe``; :attr:`Report.verdict` is
``fail`` if any finding fails, else ``warn`` if any warns, else ``pass``.

Known limits: columns are told apart by their names, so a count column named like a key
(``age``) or a share escapes the count rule, and transposed tables are not recognised;
tables printed as text (``print(df)``) are only scanned as text; numbers written with
fewer than six significant digits do not match DP answers registered with more; names
match case-sensitively; images are not read. The reviewer remains the control.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import io
import json
import math
import re
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from html.parser import HTMLParser
from typing import Any, Final

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_integer_dtype, is_numeric_dtype

from shuyu_platform.data.identifiers import is_mobile, is_valid_id_card, is_valid_uscc, luhn_valid
from shuyu_platform.data.masking import TOKEN_CHARS

__all__ = [
    "BANK_CARD_PREFIXES",
    "CHECKS",
    "CHECKS_VERSION",
    "SEVERITIES",
    "Artefact",
    "Context",
    "Finding",
    "Report",
    "Rules",
    "artefacts_from_file",
    "artefacts_from_outputs",
    "number_key",
    "run_checks",
]

#: Version of the checks' logic, stored in every report so old results can be told apart.
CHECKS_VERSION: Final[int] = 1

#: Severities from worst to mildest.
SEVERITIES: Final[tuple[str, ...]] = ("fail", "warn", "info", "safe")

#: Every value the ``check`` field of a :class:`Finding` can take.
CHECKS: Final[tuple[str, ...]] = (
    "min_cell_count",
    "dominance",
    "p_percent",
    "row_level",
    "pseudonyms",
    "identifiers",
    "names",
    "image",
    "dp_provenance",
    "binary",
    "file_type",
    "manual_review",
)

#: Issuer prefixes a 16-19 digit number must start with to be reported as a bank card:
#: Visa ``4``, Mastercard ``51``-``55`` and ``2221``-``2720``, JCB ``3528``-``3589``,
#: Discover and several Chinese issuers ``60``, China UnionPay ``62`` and ``81``,
#: Discover ``65`` and the older domestic-only debit cards ``95`` (e.g. ``9558``).
BANK_CARD_PREFIXES: Final[tuple[str, ...]] = (
    "4",
    *(str(p) for p in range(51, 56)),
    *(str(p) for p in range(2221, 2721)),
    *(str(p) for p in range(3528, 3590)),
    "60",
    "62",
    "65",
    "81",
    "95",
)


# ------------------------------------------------------------------------ data types


@dataclass(frozen=True)
class Rules:
    """Thresholds of the checks. The review service fills them from policy.

    The defaults follow ACRO's ``default.yaml`` (see the module docstring) except
    ``dominance_k``, which is stricter than ACRO's 0.90.
    """

    min_cell_count: int = 10
    """Frequency-table cells ``0 < x < min_cell_count`` fail (ACRO ``safe_threshold``)."""
    dominance_n: int = 2
    """n of the n-k rule: how many of the largest contributors are added up."""
    dominance_k: float = 0.85
    """k of the n-k rule: the top ``n`` making up this share of a cell total or more fail."""
    p_percent: float = 0.10
    """p of the p% rule: total minus the top two below this share of the largest fails."""
    max_rows: int = 500
    """Tables with more rows than this look like row-level data and fail."""
    max_columns: int = 500
    """Tables with more columns than this fail too (row-level data, transposed)."""
    max_text_lines: int = 500
    """Text with more lines than this warns: it may be row-level data printed out."""
    distinct_share: float = 0.9
    """A string column whose values are at least this share distinct looks like an id."""
    distinct_min_values: int = 20
    """... but only with at least this many values (short columns are often distinct)."""
    dp_min_digits: int = 3
    """Numbers with fewer significant digits never count as DP-matched (see module)."""
    min_name_length: int = 2
    """Known names shorter than this (in characters) are not looked for."""
    max_findings_per_check: int = 20
    """Findings of one check on one artefact beyond this are summed up in one more."""
    scan_max_rows: int = 100_000
    """Only this many rows of a table are scanned for identifiers, pseudonyms and names
    (a table that long fails ``row_level`` anyway; this bounds the time a check takes)."""

    def __post_init__(self) -> None:
        positive = (
            "min_cell_count",
            "dominance_n",
            "max_rows",
            "max_columns",
            "max_text_lines",
            "distinct_min_values",
            "dp_min_digits",
            "min_name_length",
            "max_findings_per_check",
            "scan_max_rows",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"rule {name} must be a positive integer, got {value!r}")
        for name in ("dominance_k", "distinct_share"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"rule {name} must be in (0, 1], got {value!r}")
        if not 0 <= self.p_percent < 1:
            raise ValueError(f"rule p_percent must be in [0, 1), got {self.p_percent!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rules:
        """Build rules from a mapping (e.g. a policy section); unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown disclosure rules: {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class Finding:
    """One result of one check on one artefact, as shown to the reviewer.

    ``message`` never contains a full identifier, pseudonym or known name: they are
    masked (``5101**********1234``). ``where`` holds JSON-able location details: the
    artefact's origin (``cell``, ``output``, ``file``, ...) plus ``row``/``column``
    labels and 0-based positions for tables, or 1-based ``line``/``char`` for text.
    """

    check: str
    severity: str
    artefact: str
    message: str
    where: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def as_dict(self) -> dict:
        """The finding as plain JSON-able data."""
        return asdict(self)


@dataclass
class Context:
    """What the checks know besides the artefacts; the service builds it per request."""

    rules: Rules = field(default_factory=Rules)
    known_names: frozenset[str] = frozenset()
    """Person names from the raw data of the datasets the tenant uses."""
    dp_numbers: frozenset[str] = frozenset()
    """:func:`number_key` of every number in the DP answers released to the tenant."""
    pseudonym_prefixes: tuple[str, ...] = ()
    """Prefixes of the pseudonymize rules of the policies (e.g. ``("P-", "E-")``)."""


@dataclass
class Artefact:
    """One thing the checks look at: a table, a text, an image or an opaque file.

    ``kind`` is ``"table"`` (``table`` set), ``"text"`` (``text``), ``"image"``
    (``image`` bytes and ``mime``; ``text`` may hold text found inside the image) or
    ``"binary"`` (``data``: a file that cannot be read).

    ``cell_stats`` gives contributor statistics for the dominance rules, computed from
    the microdata inside the sandbox (the table alone cannot tell)::

        {"column": "<value column label>",
         "cells": [{"row": <row label>, "total": 1234.5, "top": [900.0, 200.0],
                    "count": 17,          # optional: number of contributors
                    "n_negative": 0,      # optional: contributors below zero
                    "column": "<label>"}  # optional: per-cell column (pivot tables)
                   ...]}

    ``top`` lists the largest contributions, largest first, at least
    ``Rules.dominance_n`` of them when there are that many contributors (two suffice
    for the p% rule). Several value columns: ``{"columns": [<block as above>, ...]}``.

    ``total_rows`` is the true row count when ``table`` is a truncated display;
    ``origin`` is merged into every finding's ``where``; ``review_note``, when set,
    adds a ``manual_review`` warning with that text (or the reason for ``binary``).
    """

    name: str
    kind: str
    table: pd.DataFrame | None = None
    text: str | None = None
    image: bytes | None = None
    mime: str | None = None
    cell_stats: dict | None = None
    data: bytes | None = None
    total_rows: int | None = None
    origin: dict = field(default_factory=dict)
    review_note: str | None = None


_SEVERITY_RANK: Final[dict[str, int]] = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class Report:
    """All findings of one run of :func:`run_checks`."""

    findings: list[Finding] = field(default_factory=list)
    rules: Rules | None = None

    @property
    def verdict(self) -> str:
        """``"fail"`` if any finding fails, else ``"warn"`` if any warns, else ``"pass"``."""
        severities = {f.severity for f in self.findings}
        if "fail" in severities:
            return "fail"
        if "warn" in severities:
            return "warn"
        return "pass"

    def counts(self) -> dict[str, int]:
        """Number of findings per severity (every severity present, possibly 0)."""
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            counts[finding.severity] += 1
        return counts

    def as_dict(self) -> dict:
        """The report as JSON-able data, for storage next to the egress request."""
        return {
            "version": CHECKS_VERSION,
            "verdict": self.verdict,
            "counts": self.counts(),
            "rules": asdict(self.rules) if self.rules is not None else None,
            "findings": [f.as_dict() for f in self.findings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Read back what :meth:`as_dict` stored."""
        rules = Rules.from_dict(data["rules"]) if data.get("rules") else None
        return cls([Finding(**f) for f in data.get("findings", [])], rules)


# ------------------------------------------------------------------------ number_key

_KEY_DIGITS: Final[int] = 6


def number_key(value: float) -> str:
    """Canonical key of a number, for matching outputs against released DP answers.

    The number is rounded to 6 significant digits and written as Python's ``repr`` of
    the rounded float, so ``1234567.891``, ``1234570`` and ``"1234570.0"`` all give
    ``"1234570.0"``, ``42`` and ``42.0`` give ``"42.0"``, ``-0.0`` gives ``"0.0"``;
    NaN and infinities give ``"nan"``, ``"inf"``, ``"-inf"``. Six digits is what pandas
    shows by default (``display.precision``) for numbers from 1 to 999999, so a DP
    answer displayed by pandas or saved to a file matches its registered key; a number
    shown with fewer digits (rounded by hand) does not, and is then treated as not DP.
    The service must register ``number_key(x)`` for every number of every released DP
    answer, computed from the exact released value. Accepts anything ``float()`` does.
    """
    number = float(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    rounded = float(f"{number:.{_KEY_DIGITS}g}")
    return repr(rounded if rounded != 0 else 0.0)


def _significant_digits(number: float) -> int:
    """Significant digits of ``number`` at :func:`number_key` precision (0 has one)."""
    if number == 0 or not math.isfinite(number):
        return 1
    mantissa = f"{abs(number):.{_KEY_DIGITS - 1}e}".split("e")[0]
    return max(1, len(mantissa.replace(".", "").rstrip("0")))


# ------------------------------------------------------------------------ detection

_ID_CANDIDATE: Final = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
_USCC_CANDIDATE: Final = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]{18}(?![0-9A-Za-z])")
_CARD_CANDIDATE: Final = re.compile(
    r"(?<![0-9])(?:[0-9]{16,19}"
    r"|[0-9]{4}(?P<sep>[ -])[0-9]{4}(?:(?P=sep)[0-9]{4}){2}(?:(?P=sep)[0-9]{1,3})?)(?![0-9])"
)
_MOBILE_CANDIDATE: Final = re.compile(
    r"(?<![0-9])(?:\+?86[ -]?)?(1[3-9][0-9](?:[ -]?[0-9]{4}){2})(?![0-9])"
)
_SEPARATORS: Final = re.compile(r"[ -]")
_BARE_TOKEN: Final = re.compile(rf"(?<![0-9A-Za-z])[a-z2-7]{{{TOKEN_CHARS}}}(?![0-9A-Za-z])")
_LONG_DIGITS: Final = re.compile(r"[0-9]{11,}")
#: Every identifier has four digits in a row and every pseudonym 16 base32 characters:
#: strings without either are skipped at once.
_ANY_CANDIDATE: Final = re.compile(rf"[0-9]{{4}}|[a-z2-7]{{{TOKEN_CHARS}}}")

_KIND_LABEL: Final[dict[str, str]] = {
    "id_card": "resident ID number (公民身份号码)",
    "uscc": "unified social credit code (统一社会信用代码)",
    "bank_card": "bank card number",
    "mobile": "mobile phone number",
    "pseudonym": "pseudonym",
}


@dataclass(frozen=True)
class _Hit:
    """One identifier or pseudonym found in a text (the value is never shown)."""

    kind: str
    start: int
    end: int
    value: str


_CARD_PREFIXES_BY_LENGTH: Final[dict[int, frozenset[str]]] = {
    length: frozenset(p for p in BANK_CARD_PREFIXES if len(p) == length)
    for length in {len(p) for p in BANK_CARD_PREFIXES}
}


def _plausible_card(digits: str) -> bool:
    return 16 <= len(digits) <= 19 and any(
        digits[:length] in prefixes for length, prefixes in _CARD_PREFIXES_BY_LENGTH.items()
    )


def _mask(value: str) -> str:
    """Hide the middle of a value: ``5101**********1234``, ``138****5678``, ``张*``."""
    n = len(value)
    if n >= 15:
        head, tail = 4, 4
    elif n >= 11:
        head, tail = 3, 4
    elif n >= 6:
        head, tail = 2, 2
    else:
        head, tail = 1, 0
    return value[:head] + "*" * (n - head - tail) + (value[n - tail :] if tail else "")


class _Scanner:
    """Finds identifiers, pseudonyms and known names in strings."""

    def __init__(self, context: Context) -> None:
        prefixes = sorted({p for p in context.pseudonym_prefixes if p}, key=len, reverse=True)
        self._prefixed = (
            re.compile(
                r"(?<![0-9A-Za-z])(?:"
                + "|".join(re.escape(p) for p in prefixes)
                + rf")[a-z2-7]{{{TOKEN_CHARS}}}(?![0-9A-Za-z])"
            )
            if prefixes
            else None
        )
        minimum = context.rules.min_name_length
        self.names = frozenset(n.strip() for n in context.known_names if len(n.strip()) >= minimum)
        self._name_lengths = sorted({len(n) for n in self.names}, reverse=True)
        first = sorted({n[0] for n in self.names})
        self._name_start = (
            re.compile("[" + "".join(re.escape(c) for c in first) + "]") if first else None
        )

    def identifiers(self, text: str) -> list[_Hit]:
        """Identifiers and pseudonyms in ``text``, in order, spans never overlapping.

        Detectors run from the most to the least specific (ID card, credit code, card,
        mobile, pseudonym); a later one skips spans an earlier one claimed.
        """
        if not _ANY_CANDIDATE.search(text):
            return []
        hits: list[_Hit] = []
        claimed = bytearray(len(text))

        def claim(kind: str, span: tuple[int, int], value: str) -> None:
            hits.append(_Hit(kind, span[0], span[1], value))
            claimed[span[0] : span[1]] = b"\1" * (span[1] - span[0])

        def free(span: tuple[int, int]) -> bool:
            return not any(claimed[span[0] : span[1]])

        for m in _ID_CANDIDATE.finditer(text):
            value = m.group().upper()
            if is_valid_id_card(value):
                claim("id_card", m.span(), value)
        for m in _USCC_CANDIDATE.finditer(text):
            value = m.group().upper()
            if free(m.span()) and is_valid_uscc(value):
                claim("uscc", m.span(), value)
        for m in _CARD_CANDIDATE.finditer(text):
            digits = _SEPARATORS.sub("", m.group())
            if free(m.span()) and _plausible_card(digits) and luhn_valid(digits):
                claim("bank_card", m.span(), digits)
        for m in _MOBILE_CANDIDATE.finditer(text):
            digits = _SEPARATORS.sub("", m.group(1))
            if free(m.span()) and is_mobile(digits):
                claim("mobile", m.span(), digits)
        if self._prefixed is not None:
            for m in self._prefixed.finditer(text):
                if free(m.span()):
                    claim("pseudonym", m.span(), m.group())
        for m in _BARE_TOKEN.finditer(text):
            token = m.group()
            mixed = any(c.isdigit() for c in token) and any(c.isalpha() for c in token)
            if mixed and free(m.span()):
                claim("pseudonym", m.span(), token)
        hits.sort(key=lambda h: h.start)
        return hits

    def find_names(self, text: str) -> list[tuple[int, str]]:
        """Known names in ``text`` as (offset, name), longest match first, no overlaps.

        Names made of ASCII letters must stand as words; other names (Chinese) match
        anywhere, as Chinese text has no word boundaries.
        """
        found: list[tuple[int, str]] = []
        if self._name_start is None:
            return found
        pos = 0
        while (m := self._name_start.search(text, pos)) is not None:
            i = m.start()
            pos = i + 1
            for length in self._name_lengths:
                piece = text[i : i + length]
                if len(piece) == length and piece in self.names and _word_ok(text, i, length):
                    found.append((i, piece))
                    pos = i + length
                    break
        return found

    def scrub(self, text: str, limit: int = 60) -> str:
        """``text`` fit for a message: identifiers, long digit runs and names masked."""
        for hit in reversed(self.identifiers(text)):
            text = text[: hit.start] + _mask(hit.value) + text[hit.end :]
        text = _LONG_DIGITS.sub(lambda m: _mask(m.group()), text)
        for offset, name in reversed(self.find_names(text)):
            text = text[:offset] + _mask(name) + text[offset + len(name) :]
        return text if len(text) <= limit else text[: limit - 1] + "…"


def _word_ok(text: str, start: int, length: int) -> bool:
    piece = text[start : start + length]
    if not (piece.isascii() and piece.replace(" ", "").isalpha()):
        return True
    before = text[start - 1] if start else ""
    after = text[start + length] if start + length < len(text) else ""
    return not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum())


# ------------------------------------------------------------------- column profiles

#: Words (of a column name split on non-letters and camelCase) marking a count column.
_COUNT_WORDS: Final = frozenset({
    "n", "count", "counts", "cnt", "freq", "frequency", "frequencies", "size", "num",
    "nobs", "nunique", "patients", "persons", "people", "cases", "households"
})  # fmt: skip
#: Chinese fragments marking a count column (substring match).
_COUNT_ZH: Final = (
    "人数", "数量", "频数", "计数", "例数", "次数", "户数", "件数", "个数", "人次",
    "家数", "频次", "笔数", "样本量", "条数"
)  # fmt: skip
#: Words marking an aggregate whose cells can be dominated: sums, means, extremes.
_AGG_WORDS: Final = frozenset({
    "sum", "total", "totals", "mean", "avg", "average", "median", "std", "sd", "var",
    "variance", "min", "max", "minimum", "maximum", "mode"
})  # fmt: skip
#: Chinese fragments of the same (substring match).
_AGG_ZH: Final = (
    "合计", "总计", "总额", "总和", "总量", "均值", "平均", "中位数", "标准差", "方差",
    "最大", "最小", "众数"
)  # fmt: skip
#: Words marking an amount (a magnitude variable, subject to dominance).
_MAGNITUDE_WORDS: Final = frozenset({
    "amount", "income", "revenue", "sales", "cost", "costs", "price", "salary", "wage",
    "wages", "spend", "spending", "expenditure", "tax", "taxes", "value", "turnover",
    "assets", "profit", "payment", "payments", "settlement", "fee", "fees", "dosage",
    "balance", "loan", "loans", "debt", "capital"
})  # fmt: skip
#: Chinese fragments of the same (substring match; 额 covers 金额, 销售额 ...).
_MAGNITUDE_ZH: Final = (
    "额", "收入", "营收", "销售", "费用", "成本", "工资", "薪", "支出", "税",
    "产值", "资产", "利润", "结算", "价格", "剂量", "贷款", "资本"
)  # fmt: skip
#: Words marking a numeric key (year, code, age ...), never a count or an amount.
_LABEL_WORDS: Final = frozenset({
    "year", "yr", "month", "day", "date", "week", "quarter", "hour", "code", "id", "rank",
    "age", "period", "zip", "postcode"
})  # fmt: skip
#: Chinese endings of the same (年收入 is an amount, 诊断月份 a key).
_LABEL_ZH_SUFFIXES: Final = (
    "年份", "年度", "月份", "日期", "季度", "编码", "代码", "编号", "序号", "排名",
    "年龄", "区划", "邮编"
)  # fmt: skip
#: Chinese names that are keys only when they are the whole name.
_LABEL_ZH_EXACT: Final = frozenset({"年", "月", "日", "周"})
#: Words marking shares and rates (neither counts nor amounts).
_PROPORTION_WORDS: Final = frozenset({
    "pct", "percent", "percentage", "share", "rate", "ratio", "prop", "proportion",
    "fraction", "frac"
})  # fmt: skip
#: Chinese fragments of the same (substring match).
_PROPORTION_ZH: Final = ("比例", "占比", "率", "百分比", "比重")
_WORD: Final = re.compile(r"[a-z]+|[0-9]+")


def _label_text(label: Any) -> str:
    if isinstance(label, tuple):
        return " / ".join(str(part) for part in label if str(part) != "")
    return str(label)


def _classify(label: str) -> str:
    """Role of a numeric column from its name.

    One of ``proportion``, ``count``, ``agg`` (sum/mean/extremes), ``label`` (a key
    such as a year or code), ``magnitude`` (an amount) or ``other``; earlier roles win.
    """
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", label).lower()
    words = set(_WORD.findall(spaced))
    stripped = label.strip()
    if words & _PROPORTION_WORDS or any(z in label for z in _PROPORTION_ZH) or "%" in label:
        return "proportion"
    if words & _COUNT_WORDS or any(z in label for z in _COUNT_ZH):
        return "count"
    if words & _AGG_WORDS or any(z in label for z in _AGG_ZH):
        return "agg"
    if words & _LABEL_WORDS or stripped in _LABEL_ZH_EXACT or stripped.endswith(_LABEL_ZH_SUFFIXES):
        return "label"
    if words & _MAGNITUDE_WORDS or any(z in label for z in _MAGNITUDE_ZH):
        return "magnitude"
    return "other"


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _as_numbers(column: pd.Series) -> np.ndarray | None:
    """The column as float64 (NaN for missing), or None if it is not numeric."""
    if is_bool_dtype(column.dtype):
        return None
    if is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype="float64", na_value=np.nan)
    if column.dtype == object:
        values = [v for v in column.tolist() if not _is_missing(v)]
        if values and all(
            isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
            for v in values
        ):
            return np.array(
                [np.nan if _is_missing(v) else float(v) for v in column.tolist()],
                dtype="float64",
            )
    return None


def _whole_non_negative(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(finite.size) and bool(np.all(finite >= 0) and np.all(np.mod(finite, 1) == 0))


@dataclass
class _Column:
    position: int
    label: Any
    text: str
    numbers: np.ndarray | None
    role: str


@dataclass
class _Profile:
    columns: list[_Column]
    frequency: list[int]
    """Positions of the columns the minimum-cell-count rule applies to."""
    magnitude: list[int]
    """Positions of sum/mean/extreme/amount columns the dominance rules apply to."""
    aggregated: bool


def _profile(table: pd.DataFrame) -> _Profile:
    columns: list[_Column] = []
    for j in range(table.shape[1]):
        label = table.columns[j]
        text = _label_text(label)
        numbers = _as_numbers(table.iloc[:, j])
        role = _classify(text) if numbers is not None else "text"
        columns.append(_Column(j, label, text, numbers, role))
    numeric = [c for c in columns if c.numbers is not None]
    frequency = [c.position for c in numeric if c.role == "count"]
    fallback = False
    if not frequency:
        others = [c for c in numeric if c.role == "other"]
        if others and all(_whole_non_negative(c.numbers) for c in others):  # type: ignore[arg-type]
            frequency = [c.position for c in others]
            fallback = True
    magnitude = [
        c.position
        for c in numeric
        if c.role in ("agg", "magnitude")
        or (
            c.role == "other"
            and not fallback
            and c.numbers is not None
            and not np.all(np.mod(c.numbers[np.isfinite(c.numbers)], 1) == 0)
        )
    ]
    aggregated = bool(frequency) or any(c.role == "agg" for c in numeric)
    return _Profile(columns, frequency, magnitude, aggregated)


# --------------------------------------------------------------------- JSON helpers


def _json_value(value: Any) -> Any:
    """``value`` as plain JSON data (numpy scalars unwrapped, tuples as lists)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if _is_missing(value):
        return None
    return str(value)


# ------------------------------------------------------------------------ the checks


class _Checker:
    """Runs every check on one artefact at a time; see :func:`run_checks`."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.rules = context.rules
        self.scanner = _Scanner(context)

    # -- helpers

    def _finding(
        self, art: Artefact, check: str, severity: str, message: str, **where: Any
    ) -> Finding:
        location = {key: _json_value(v) for key, v in art.origin.items()}
        location.update({key: _json_value(v) for key, v in where.items()})
        return Finding(check, severity, art.name, message, location)

    def _label(self, label: Any) -> str:
        return self.scanner.scrub(_label_text(label))

    def _row_label(self, table: pd.DataFrame, i: int) -> Any:
        label = table.index[i]
        if isinstance(label, tuple):
            return [self._safe_json(v) for v in label]
        return self._safe_json(label)

    def _safe_json(self, value: Any) -> Any:
        value = _json_value(value)
        return self.scanner.scrub(value) if isinstance(value, str) else value

    def _row_text(self, table: pd.DataFrame, i: int) -> str:
        """``row 3`` for a positional label, ``row '涪城区'`` (or ``'a/b'``) otherwise."""
        row = self._row_label(table, i)
        if isinstance(row, list):
            return "row " + repr("/".join(str(v) for v in row))
        return f"row {row!r}" if isinstance(row, str) else f"row {row}"

    def _cell_ref(self, table: pd.DataFrame, i: int, j: int) -> str:
        return f"{self._row_text(table, i)}, column {self._label(table.columns[j])!r}"

    def _capped(self, art: Artefact, findings: list[Finding]) -> list[Finding]:
        """Keep ``max_findings_per_check`` findings per check, then one summary each."""
        cap = self.rules.max_findings_per_check
        kept: list[Finding] = []
        extra: dict[tuple[str, str], list[Finding]] = {}
        counts: dict[str, int] = {}
        for finding in findings:
            counts[finding.check] = counts.get(finding.check, 0) + 1
            if counts[finding.check] <= cap:
                kept.append(finding)
            else:
                extra.setdefault((finding.check, finding.severity), []).append(finding)
        for (check, severity), rest in extra.items():
            kept.append(
                self._finding(
                    art,
                    check,
                    severity,
                    f"... and {len(rest)} more {check} finding(s) of this kind on {art.name}.",
                    more=len(rest),
                )
            )
        return kept

    # -- dispatch

    def check(self, art: Artefact) -> list[Finding]:
        findings: list[Finding] = []
        if art.kind == "binary":
            size = len(art.data or b"")
            reason = art.review_note or "its type is not one the checks can read"
            findings.append(
                self._finding(
                    art,
                    "binary",
                    "fail",
                    f"This file ({size} bytes) cannot be checked automatically or shown to "
                    f"the reviewer: {reason}. Export results as CSV, Parquet, JSON, text "
                    "or PNG instead.",
                    bytes=size,
                )
            )
            return findings
        if art.review_note:
            findings.append(self._finding(art, "manual_review", "warn", art.review_note))
        if art.kind == "table" and art.table is not None:
            findings += self._check_table(art, art.table)
            if art.text:
                findings += self._check_text(art, art.text)
        elif art.kind == "text":
            findings += self._check_text(art, art.text or "")
        elif art.kind == "image":
            findings += self._check_image(art)
        else:
            findings.append(
                self._finding(
                    art,
                    "manual_review",
                    "warn",
                    f"Artefact of kind {art.kind!r} is not understood by the automatic "
                    "checks; review it by hand.",
                )
            )
        return findings

    # -- text

    def _check_text(self, art: Artefact, text: str) -> list[Finding]:
        findings: list[Finding] = []
        locate = _Lines(text)
        for hit in self.scanner.identifiers(text):
            line, char = locate(hit.start)
            check = "pseudonyms" if hit.kind == "pseudonym" else "identifiers"
            what = _KIND_LABEL[hit.kind]
            findings.append(
                self._finding(
                    art,
                    check,
                    "fail",
                    f"Line {line}, character {char}: a {what} ({_mask(hit.value)}). "
                    + _why(hit.kind),
                    line=line,
                    char=char,
                    kind=hit.kind,
                    masked=_mask(hit.value),
                )
            )
        for offset, name in self.scanner.find_names(text):
            line, char = locate(offset)
            findings.append(
                self._finding(
                    art,
                    "names",
                    "warn",
                    f"Line {line}, character {char}: {_mask(name)!r} is the name of a "
                    f"person in the source data. {_NAME_CAVEAT}",
                    line=line,
                    char=char,
                    masked=_mask(name),
                )
            )
        footer = _TEXT_FOOTER.search(text)
        if footer and int(footer.group(1)) > self.rules.max_rows:
            rows = int(footer.group(1))
            findings.append(
                self._finding(
                    art,
                    "row_level",
                    "fail",
                    f"The text shows part of a table of {rows} rows (more than "
                    f"{self.rules.max_rows}): that looks like row-level data.",
                    rows=rows,
                )
            )
        lines = (text.count("\n") + (0 if text.endswith("\n") else 1)) if text else 0
        if lines > self.rules.max_text_lines:
            findings.append(
                self._finding(
                    art,
                    "row_level",
                    "warn",
                    f"The text has {lines} lines (more than {self.rules.max_text_lines}): "
                    "long printouts often list individual records; check it is not "
                    "row-level data.",
                    lines=lines,
                )
            )
        return self._capped(art, findings)

    # -- images

    def _check_image(self, art: Artefact) -> list[Finding]:
        data = art.image or b""
        mime = (art.mime or "").lower()
        findings: list[Finding] = []
        texts: list[str] = [art.text] if art.text else []
        size_text = f"{len(data)} bytes"
        if mime == "image/png":
            png = _read_png(data)
            if png is None:
                findings.append(self._not_an_image(art, "PNG"))
            else:
                width, height, chunk_texts, trailing = png
                size_text = f"{width}×{height} px, {len(data)} bytes"
                texts += chunk_texts
                if trailing:
                    findings.append(
                        self._finding(
                            art,
                            "file_type",
                            "fail",
                            f"{trailing} bytes follow the end of this PNG image: data can "
                            "be hidden there. Re-export the image.",
                            trailing_bytes=trailing,
                        )
                    )
        elif mime == "image/jpeg":
            if not data.startswith(b"\xff\xd8\xff"):
                findings.append(self._not_an_image(art, "JPEG"))
            elif not data.rstrip(b"\0").endswith(b"\xff\xd9"):
                findings.append(
                    self._finding(
                        art,
                        "file_type",
                        "warn",
                        "Bytes follow the end of this JPEG image (or it is cut short): "
                        "data can be hidden there.",
                    )
                )
        elif mime == "image/gif":
            if not data.startswith((b"GIF87a", b"GIF89a")):
                findings.append(self._not_an_image(art, "GIF"))
        elif mime == "image/webp":
            if not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
                findings.append(self._not_an_image(art, "WebP"))
        elif mime == "image/svg+xml":
            svg = _decode_text(data, allow_gb18030=False)
            if svg is None or "<svg" not in svg:
                findings.append(self._not_an_image(art, "SVG"))
            elif not art.text:
                texts.append(_svg_text(svg))
        findings.append(
            self._finding(
                art,
                "image",
                "warn",
                f"Image ({art.mime or 'unknown type'}, {size_text}): images cannot be checked "
                "automatically. Look for small counts, outliers, individual points, "
                "readable labels or identifiers before approving.",
                mime=art.mime,
                bytes=len(data),
            )
        )
        text = "\n".join(t for t in texts if t and t.strip())
        if text:
            findings += self._check_text(art, text)
        return findings

    def _not_an_image(self, art: Artefact, kind: str) -> Finding:
        return self._finding(
            art,
            "file_type",
            "fail",
            f"The content is not a valid {kind} image although it is labelled as one: it "
            "may be other data in disguise.",
        )

    # -- tables

    def _check_table(self, art: Artefact, table: pd.DataFrame) -> list[Finding]:
        rules = self.rules
        profile = _profile(table)
        findings: list[Finding] = []
        n_rows = max(len(table), art.total_rows or 0)
        n_cols = table.shape[1]
        too_big = n_rows > rules.max_rows or n_cols > rules.max_columns
        if n_rows > rules.max_rows:
            findings.append(
                self._finding(
                    art,
                    "row_level",
                    "fail",
                    f"The table has {n_rows} rows (more than {rules.max_rows}): that looks "
                    "like row-level data, not an aggregate.",
                    rows=n_rows,
                )
            )
        if n_cols > rules.max_columns:
            findings.append(
                self._finding(
                    art,
                    "row_level",
                    "fail",
                    f"The table has {n_cols} columns (more than {rules.max_columns}): that "
                    "looks like row-level data laid out sideways.",
                    columns=n_cols,
                )
            )
        if not profile.aggregated:
            findings += self._distinct_columns(art, table, profile)
        findings += self._scan_table(art, table)

        dp = self._dp_match(table, profile) if self.context.dp_numbers else None
        dp_columns = dp.full_columns if dp else set()
        sdc: list[Finding] = []
        sdc += self._min_cell_count(art, table, profile, dp_columns)
        sdc += self._dominance(art, table, profile, dp_columns, skip_warning=too_big)
        if dp is not None and dp.everything:
            findings.append(
                self._finding(
                    art,
                    "dp_provenance",
                    "safe",
                    f"All {dp.total} numbers in this table match released differentially "
                    "private answers: it is DP output, so the minimum-cell-count and "
                    f"dominance checks do not apply ({len(sdc)} such finding(s) set aside).",
                    numbers=dp.total,
                    matched=dp.matched,
                    set_aside=len(sdc),
                    dp_keys=sorted(dp.keys)[:MAX_DP_KEYS],
                )
            )
        else:
            findings += sdc
            if dp is not None and dp.matched:
                share = dp.matched / dp.total
                full = [self._label(table.columns[j]) for j in sorted(dp_columns)]
                columns_text = (
                    f" Columns entirely from DP answers, exempt from the count and "
                    f"dominance checks: {', '.join(repr(c) for c in full)}."
                    if full
                    else ""
                )
                short = (
                    f" {dp.short} number(s) with fewer than {rules.dp_min_digits} "
                    "significant digits cannot be attributed to DP answers."
                    if dp.short
                    else ""
                )
                findings.append(
                    self._finding(
                        art,
                        "dp_provenance",
                        "info",
                        f"{dp.matched} of {dp.total} numbers ({share:.0%}) match released "
                        f"differentially private answers; the rest may come from the "
                        f"masked view.{columns_text}{short}",
                        numbers=dp.total,
                        matched=dp.matched,
                        share=round(share, 4),
                        short=dp.short,
                        dp_columns=full,
                        dp_keys=sorted(dp.keys)[:MAX_DP_KEYS],
                    )
                )
        return self._capped(art, findings)

    def _distinct_columns(
        self, art: Artefact, table: pd.DataFrame, profile: _Profile
    ) -> list[Finding]:
        findings: list[Finding] = []
        for col in profile.columns:
            if col.numbers is not None:
                continue
            series = table.iloc[:, col.position]
            values = [v for v in series.tolist() if not _is_missing(v)]
            if len(values) < self.rules.distinct_min_values:
                continue
            if not all(isinstance(v, str) for v in values):
                continue
            distinct = len(set(values))
            share = distinct / len(values)
            if share >= self.rules.distinct_share:
                findings.append(
                    self._finding(
                        art,
                        "row_level",
                        "warn",
                        f"Column {self._label(col.label)!r}: {distinct} of {len(values)} "
                        f"values ({share:.0%}) are distinct, as in an identifier; the table "
                        "may be row-level data.",
                        column=self._safe_json(col.text),
                        column_position=col.position,
                        distinct=distinct,
                        values=len(values),
                    )
                )
        return findings

    def _scan_table(self, art: Artefact, table: pd.DataFrame) -> list[Finding]:
        """Identifiers, pseudonyms and names in cells, row labels and column headers."""
        limit = self.rules.scan_max_rows
        findings: list[Finding] = []
        sources: list[tuple[str, Any, int | None, list[str | None]]] = []
        for j in range(table.shape[1]):
            sources.append(("column", table.columns[j], j, _texts(table.iloc[:limit, j])))
        if not isinstance(table.index, pd.RangeIndex):
            for level in range(table.index.nlevels):
                values = table.index.get_level_values(level)[:limit]
                sources.append(("index", f"(row labels, level {level})", None, _texts(values)))
        headers = [_label_text(c) for c in table.columns]
        headers += [str(n) for n in table.index.names if n is not None]
        sources.append(("headers", "(column headers)", None, headers))

        for source, label, j, texts in sources:
            array = np.array(texts, dtype=object)
            codes, uniques = pd.factorize(array, use_na_sentinel=True)
            if not len(uniques):
                continue
            valid = codes >= 0
            counts = np.bincount(codes[valid], minlength=len(uniques))
            first_index = np.full(len(uniques), -1)
            present, where_first = np.unique(codes[valid], return_index=True)
            first_index[present] = np.flatnonzero(valid)[where_first]
            # pd.factorize numbers uniques in order of first appearance, so the first
            # unique with a hit is also the first row with one.
            kinds: dict[str, list[Any]] = {}  # kind -> [cells, first unique, masked]
            names: list[Any] = [0, -1, ""]
            # A cell that is nothing but an 11-digit number may be an amount (15 billion
            # yuan) rather than a phone number: such cells count as mobile numbers only
            # when at least half of the column's all-digit cells are mobile numbers.
            bare_digits = 0
            bare_mobiles: list[Any] = [0, -1, ""]
            for u, text in enumerate(uniques):
                hits = self.scanner.identifiers(text)
                if text.isascii() and text.isdigit():
                    bare_digits += int(counts[u])
                    if len(hits) == 1 and hits[0].kind == "mobile" and hits[0].value == text:
                        if not bare_mobiles[0]:
                            bare_mobiles[1], bare_mobiles[2] = u, _mask(text)
                        bare_mobiles[0] += int(counts[u])
                        continue
                seen: set[str] = set()
                for hit in hits:
                    if hit.kind not in kinds:
                        kinds[hit.kind] = [0, u, _mask(hit.value)]
                    entry = kinds[hit.kind]
                    if hit.kind not in seen:
                        seen.add(hit.kind)
                        entry[0] += int(counts[u])
                found = self.scanner.find_names(text)
                if found:
                    if not names[0]:
                        names[1], names[2] = u, _mask(found[0][1])
                    names[0] += int(counts[u])
            if bare_mobiles[0] and 2 * bare_mobiles[0] >= bare_digits:
                entry = kinds.setdefault("mobile", [0, bare_mobiles[1], bare_mobiles[2]])
                entry[0] += bare_mobiles[0]
                if bare_mobiles[1] < entry[1]:
                    entry[1], entry[2] = bare_mobiles[1], bare_mobiles[2]
            cut = len(table) > limit and source != "headers"
            place = (art, table, source, label, j, limit if cut else None)
            for kind, (cells, u, masked) in kinds.items():
                check = "pseudonyms" if kind == "pseudonym" else "identifiers"
                findings.append(
                    self._column_finding(
                        *place, int(first_index[u]), cells, check, "fail", kind, masked
                    )
                )
            if names[0]:
                findings.append(
                    self._column_finding(
                        *place,
                        int(first_index[names[1]]),
                        names[0],
                        "names",
                        "warn",
                        "name",
                        names[2],
                    )
                )
        return findings

    def _column_finding(
        self,
        art: Artefact,
        table: pd.DataFrame,
        source: str,
        label: Any,
        j: int | None,
        scanned: int | None,
        first: int,
        cells: int,
        check: str,
        severity: str,
        kind: str,
        masked: str,
    ) -> Finding:
        """The finding for hits of one kind in one column, row labels or headers."""
        where: dict[str, Any]
        if source == "column":
            row = self._row_label(table, first)
            place = f"Column {self._label(label)!r}"
            first_text = f", first in {self._row_text(table, first)}"
            where = {
                "column": self._safe_json(_label_text(label)),
                "column_position": j,
                "first_row": row,
                "first_row_position": first,
            }
        elif source == "index":
            place = "Row labels"
            first_text = f", first in row position {first}"
            where = {"column": label, "first_row_position": first}
        else:
            place = "Column headers"
            first_text = ""
            where = {"column": label}
        if check == "names":
            message = (
                f"{place}: {cells} cell(s) contain names of people in the source data "
                f"(e.g. {masked!r}){first_text}. {_NAME_CAVEAT}"
            )
        else:
            message = (
                f"{place}: {cells} cell(s) contain a {_KIND_LABEL[kind]} (e.g. {masked})"
                f"{first_text}. " + _why(kind)
            )
        if scanned is not None:
            message += f" Only the first {scanned} rows were scanned."
            where["scanned_rows"] = scanned
        return self._finding(
            art, check, severity, message, kind=kind, cells=cells, masked=masked, **where
        )

    # -- DP provenance

    def _dp_match(self, table: pd.DataFrame, profile: _Profile) -> _DpMatch:
        numbers = self.context.dp_numbers
        minimum = self.rules.dp_min_digits
        match = _DpMatch()
        for col in profile.columns:
            if col.numbers is None or col.role == "label":
                continue
            values = col.numbers[np.isfinite(col.numbers)]
            if not values.size:
                continue
            matched = 0
            for value in values.tolist():
                strong = _significant_digits(value) >= minimum
                key = number_key(value) if strong else ""
                if strong and key in numbers:
                    matched += 1
                    match.keys.add(key)
                elif not strong:
                    match.short += 1
            match.total += values.size
            match.matched += matched
            if matched == values.size:
                match.full_columns.add(col.position)
        return match

    # -- minimum cell count

    def _min_cell_count(
        self, art: Artefact, table: pd.DataFrame, profile: _Profile, dp_columns: set[int]
    ) -> list[Finding]:
        threshold = self.rules.min_cell_count
        findings: list[Finding] = []
        for j in profile.frequency:
            if j in dp_columns:
                continue
            values = profile.columns[j].numbers
            assert values is not None
            for i in np.flatnonzero((values > 0) & (values < threshold)).tolist():
                value = float(values[i])
                findings.append(
                    self._finding(
                        art,
                        "min_cell_count",
                        "fail",
                        f"Cell ({self._cell_ref(table, i, j)}) counts {value:g}, below the "
                        f"minimum of {threshold}: counts from 1 to {threshold - 1} can "
                        "single out people (zero cells are allowed). Merge categories or "
                        "suppress the cell.",
                        row=self._row_label(table, i),
                        row_position=i,
                        column=self._safe_json(_label_text(table.columns[j])),
                        column_position=j,
                        value=value,
                        threshold=threshold,
                    )
                )
        return findings

    # -- dominance

    def _dominance(
        self,
        art: Artefact,
        table: pd.DataFrame,
        profile: _Profile,
        dp_columns: set[int],
        *,
        skip_warning: bool,
    ) -> list[Finding]:
        findings: list[Finding] = []
        covered: set[str] = set()
        by_label = {_label_text(c): c.position for c in reversed(profile.columns)}
        if art.cell_stats:
            blocks = _stat_blocks(art.cell_stats)
            if blocks is None:
                return [
                    self._finding(
                        art,
                        "dominance",
                        "warn",
                        "The contributor statistics supplied with this table are malformed, "
                        "so dominance could not be checked automatically.",
                    )
                ]
            for block in blocks:
                column = _label_text(block.get("column", ""))
                covered.add(column)
                if by_label.get(column) in dp_columns:
                    continue
                findings += self._stat_block(art, column, block)
        if skip_warning:
            return findings
        unchecked = [
            j
            for j in profile.magnitude
            if j not in dp_columns and _label_text(table.columns[j]) not in covered
        ]
        if unchecked:
            names = ", ".join(repr(self._label(table.columns[j])) for j in unchecked)
            findings.append(
                self._finding(
                    art,
                    "dominance",
                    "warn",
                    f"Column(s) {names} hold sums, means, extremes or amounts, but no "
                    "contributor statistics came with the table, so the n-k and p% "
                    "dominance rules could not be checked automatically. Check that no "
                    "cell is dominated by one or two contributors (e.g. one large firm).",
                    columns=[self._safe_json(_label_text(table.columns[j])) for j in unchecked],
                )
            )
        return findings

    def _stat_block(self, art: Artefact, column: str, block: Mapping[str, Any]) -> list[Finding]:
        rules = self.rules
        n, k, p = rules.dominance_n, rules.dominance_k, rules.p_percent
        findings: list[Finding] = []
        undefined: list[Any] = []
        malformed = 0
        for cell in block.get("cells", []):
            try:
                total = float(cell["total"])
                top = sorted((float(t) for t in cell.get("top", [])), reverse=True)
                negatives = int(cell.get("n_negative", 0) or 0)
                count = cell.get("count")
                count = None if count is None else _whole(float(count))
            except (KeyError, TypeError, ValueError):
                malformed += 1
                continue
            cell_column = _label_text(cell.get("column", column))
            row = self._safe_json(cell.get("row"))
            ref = f"row {row!r}, column {self.scanner.scrub(cell_column)!r}"
            where = {"row": row, "column": self._safe_json(cell_column)}
            if count is not None and 0 < count < rules.min_cell_count:
                findings.append(
                    self._finding(
                        art,
                        "min_cell_count",
                        "fail",
                        f"Cell ({ref}) is computed from {count:g} contributor(s), below the "
                        f"minimum of {rules.min_cell_count}.",
                        **where,
                        contributors=count,
                        threshold=rules.min_cell_count,
                    )
                )
            if negatives or total < 0 or any(t < 0 for t in top):
                undefined.append(row)
                continue
            if not top:
                if total > 0:
                    malformed += 1
                continue
            if total > 0:
                share = sum(top[:n]) / total
                if share >= k:
                    findings.append(
                        self._finding(
                            art,
                            "dominance",
                            "fail",
                            f"Cell ({ref}): the {_largest(n)} make up "
                            f"{share:.1%} of the cell total; the n-k rule fails at "
                            f"{k * 100:g}% or more, as one or two contributors could "
                            "learn each other's value.",
                            **where,
                            share=round(share, 4),
                            n=n,
                            k=k,
                        )
                    )
            top1 = top[0]
            top2 = top[1] if len(top) > 1 else 0.0
            if top1 > 0:
                ratio = (total - top1 - top2) / top1
                if ratio < p:
                    findings.append(
                        self._finding(
                            art,
                            "p_percent",
                            "fail",
                            f"Cell ({ref}): the contributors other than the two largest "
                            f"add up to {max(ratio, 0):.1%} of the largest; the p% rule "
                            f"fails below {p * 100:g}%, as the second-largest contributor "
                            f"could estimate the largest to within {p * 100:g}%.",
                            **where,
                            ratio=round(ratio, 4),
                            p=p,
                        )
                    )
        if undefined:
            findings.append(
                self._finding(
                    art,
                    "dominance",
                    "warn",
                    f"Column {self.scanner.scrub(column)!r}: {len(undefined)} cell(s) have "
                    "negative contributions, for which the dominance rules are not defined; "
                    "check them by hand.",
                    column=self._safe_json(column),
                    rows=undefined[: self.rules.max_findings_per_check],
                )
            )
        if malformed:
            findings.append(
                self._finding(
                    art,
                    "dominance",
                    "warn",
                    f"Column {self.scanner.scrub(column)!r}: statistics of {malformed} "
                    "cell(s) are incomplete, so their dominance could not be checked.",
                    column=self._safe_json(column),
                    cells=malformed,
                )
            )
        return findings


def _whole(number: float) -> float | int:
    return int(number) if number.is_integer() else number


def _largest(n: int) -> str:
    return "largest contributor" if n == 1 else f"{n} largest contributors"


@dataclass
class _DpMatch:
    total: int = 0
    matched: int = 0
    short: int = 0
    full_columns: set[int] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)

    @property
    def everything(self) -> bool:
        return self.total > 0 and self.matched == self.total


def _stat_blocks(stats: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    blocks = stats.get("columns") if "columns" in stats else [stats]
    if not isinstance(blocks, list):
        return None
    for block in blocks:
        if not isinstance(block, Mapping) or not isinstance(block.get("cells"), list):
            return None
        if not all(isinstance(cell, Mapping) for cell in block["cells"]):
            return None
    return blocks


_NAME_CAVEAT: Final[str] = (
    "Names are short, so this may be an ordinary word or another person of the same name; "
    "check whether it refers to an individual in the data."
)

#: Most DP number keys a ``dp_provenance`` finding lists (the release maps them to queries).
MAX_DP_KEYS: Final[int] = 500

_TEXT_FOOTER: Final = re.compile(r"\[(\d+) rows x (\d+) columns\]")
_HTML_FOOTER: Final = re.compile(r"(\d+)\s+rows\s+×\s+(\d+)\s+columns")


def _why(kind: str) -> str:
    if kind == "pseudonym":
        return (
            "Pseudonyms of the masked views link records of one person and must not "
            "leave the sandbox."
        )
    return "Direct identifiers must never leave the sandbox; remove the column or value."


class _Lines:
    """Turns offsets in a text into 1-based (line, character) positions."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


def _texts(values: pd.Series | pd.Index) -> list[str | None]:
    """Text form of each value for scanning, None where there is nothing to scan.

    Integers are written out exactly (ID and phone numbers stored as numbers), whole
    floats as integers, other floats are skipped (no identifier has a fraction).
    """
    dtype = values.dtype
    items = values.tolist()
    if is_bool_dtype(dtype):
        return [None] * len(items)
    if is_integer_dtype(dtype):
        return [None if _is_missing(v) else str(int(v)) for v in items]
    if is_numeric_dtype(dtype):
        return [
            str(int(v)) if not _is_missing(v) and math.isfinite(v) and v == int(v) else None
            for v in items
        ]
    out: list[str | None] = []
    for v in items:
        if _is_missing(v):
            out.append(None)
        elif isinstance(v, float):
            out.append(str(int(v)) if math.isfinite(v) and v == int(v) else None)
        else:
            out.append(str(v))
    return out


# ------------------------------------------------------------------------ run_checks


def run_checks(artefacts: Sequence[Artefact], context: Context) -> Report:
    """Run every check on every artefact and collect the findings in a :class:`Report`.

    Findings come in artefact order; within one artefact and one check at most
    ``Rules.max_findings_per_check`` are listed, then one finding counts the rest.
    """
    checker = _Checker(context)
    findings: list[Finding] = []
    for art in artefacts:
        findings += checker.check(art)
    return Report(findings, context.rules)


# ------------------------------------------------------------------- reading outputs


def artefacts_from_outputs(cell_index: int, outputs: Sequence[Mapping[str, Any]]) -> list[Artefact]:
    """Turn the nbformat 4 outputs of one code cell into artefacts.

    Every representation in a display bundle is checked, not only the richest one, as
    a released notebook carries them all. Artefact names read ``cell 3 output 1
    (text/html table 1)``: ``cell_index`` as given, outputs numbered from 1; each
    artefact's ``origin`` has ``cell``, ``output`` (0-based index in ``outputs``),
    ``mime`` and, for tables from HTML, ``table`` (0-based).
    """
    return _outputs(f"cell {cell_index}", {"cell": cell_index}, outputs)


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
            artefacts.append(
                Artefact(
                    f"{name} ({stream})",
                    "text",
                    text=_joined(output.get("text", "")),
                    origin={**where, "mime": stream},
                )
            )
        elif kind == "error":
            lines = [f"{output.get('ename', '')}: {output.get('evalue', '')}"]
            lines += [_ANSI.sub("", _joined(t)) for t in output.get("traceback", [])]
            artefacts.append(
                Artefact(f"{name} (error)", "text", text="\n".join(lines), origin=where)
            )
        elif kind in ("execute_result", "display_data"):
            stats = _output_stats(output)
            for mime, content in (output.get("data") or {}).items():
                items = _bundle_item(name, where, str(mime), content)
                for item in items:
                    if item.kind == "table" and stats is not None:
                        item.cell_stats = stats
                artefacts += items
        else:
            artefacts.append(
                Artefact(
                    f"{name} ({kind})",
                    "text",
                    text=json.dumps(dict(output), ensure_ascii=False, default=str),
                    origin=where,
                    review_note=f"Output type {kind!r} is not understood; review it by hand.",
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
        return [Artefact(f"{name} ({mime})", "text", text=_joined(content), origin=where)]
    if mime in _IMAGE_MIMES:
        data = _b64(_joined(content))
        note = None if data is not None else "The image data is not valid base64."
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
            review_note=(
                f"Output type {mime} cannot be shown by the review tool nor fully checked "
                "automatically (only its text was scanned); review it by hand."
            ),
        )
    ]


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None


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


# ---------------------------------------------------------------------------- HTML


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


# ---------------------------------------------------------------------------- files

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
            return [_binary(label, origin, data, f"it could not be read as {ext[1:]} ({exc})")]
        return [Artefact(label, "table", table=table, origin=origin)]
    if ext == ".ipynb":
        text = _decode_text(data, allow_gb18030=False)
        try:
            notebook = json.loads(text) if text is not None else None
        except ValueError:
            notebook = None
        if not isinstance(notebook, dict):
            return [_binary(label, origin, data, "it is not a readable notebook")]
        return _notebook_artefacts(label, origin, notebook)
    text = _decode_text(data, allow_gb18030=ext in (".csv", ".tsv", ".txt", ".md"))
    if text is None:
        return [_binary(label, origin, data, "it is not text in a known format")]
    if ext in (".csv", ".tsv"):
        table = _read_delimited(text, "\t" if ext == ".tsv" else ",")
        if table is None:
            note = "The file could not be read as a table; only its text was checked."
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
    return [Artefact(label, "text", text=text, origin=origin)]


def _binary(label: str, origin: Mapping[str, Any], data: bytes, reason: str) -> Artefact:
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


# ---------------------------------------------------------------------------- PNG

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def _read_png(data: bytes) -> tuple[int, int, list[str], int] | None:
    """(width, height, texts of tEXt/zTXt/iTXt chunks, bytes after IEND), or None."""
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33:
        return None
    pos = len(_PNG_SIGNATURE)
    width = height = 0
    texts: list[str] = []
    for length, kind, body, end in _png_chunks(data, pos):
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack(">II", body[:8])
        elif kind in (b"tEXt", b"zTXt", b"iTXt"):
            texts.append(_png_text(kind, body))
        elif kind == b"IEND":
            return width, height, texts, len(data) - end
        elif kind == b"":
            return None
    return None


def _png_chunks(data: bytes, pos: int) -> Iterator[tuple[int, bytes, bytes, int]]:
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            yield 0, b"", b"", pos
            return
        yield length, kind, data[pos + 8 : pos + 8 + length], end
        pos = end


def _png_text(kind: bytes, body: bytes) -> str:
    keyword, _, rest = body.partition(b"\0")
    try:
        if kind == b"zTXt":
            rest = zlib.decompress(rest[1:])
        elif kind == b"iTXt":
            compressed = rest[:1] == b"\x01"
            rest = rest[2:].split(b"\0", 2)[-1]
            if compressed:
                rest = zlib.decompress(rest)
    except zlib.error:
        return keyword.decode("latin-1")
    encoding = "utf-8" if kind == b"iTXt" else "latin-1"
    return f"{keyword.decode('latin-1')}: {rest.decode(encoding, 'replace')}"
