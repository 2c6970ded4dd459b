"""The identifier scanner: resident IDs, credit codes, bank cards, mobiles, pseudonyms, names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from shuyu_platform.data.identifiers import is_mobile, is_valid_id_card, is_valid_uscc, luhn_valid
from shuyu_platform.data.masking import TOKEN_CHARS
from shuyu_platform.messages import Both, both

from .person_names import looks_like_names
from .rules import Context

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

    @staticmethod
    def generic_names(text: str) -> list[tuple[int, str]]:
        """What looks like a person's name in ``text`` (:mod:`.person_names`).

        The same for a real and an invented name: findings from it may be shown to
        the merchant, unlike :meth:`find_names`, which matches the raw data.
        """
        return looks_like_names(text)

    def scrub(self, text: str, limit: int = 60) -> str:
        """``text`` fit for a message: identifiers, long digit runs and names masked.

        Names are masked by the generic model only: masking the raw data's names would
        show a merchant which of its words are names in the raw data.
        """
        for hit in reversed(self.identifiers(text)):
            text = text[: hit.start] + _mask(hit.value) + text[hit.end :]
        text = _LONG_DIGITS.sub(lambda m: _mask(m.group()), text)
        for offset, name in reversed(self.generic_names(text)):
            text = text[:offset] + _mask(name) + text[offset + len(name) :]
        return text if len(text) <= limit else text[: limit - 1] + "…"


def _word_ok(text: str, start: int, length: int) -> bool:
    piece = text[start : start + length]
    if not (piece.isascii() and piece.replace(" ", "").isalpha()):
        return True
    before = text[start - 1] if start else ""
    after = text[start + length] if start + length < len(text) else ""
    return not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum())


def _why(kind: str) -> Both:
    if kind == "pseudonym":
        return both(
            "Pseudonyms of the masked views link records of one person and must not "
            "leave the sandbox."
        )
    return both("Direct identifiers must never leave the sandbox; remove the column or value.")


_NAME_CAVEAT: Final[str] = (
    "Names of people must not leave the sandbox; this may also be an ordinary word. "
    "Remove it, or tell the reviewer in the purpose why it is not a person's name."
)
_KNOWN_NAME_CAVEAT: Final[str] = (
    "Shown to reviewers only (it tells what the raw data holds). Names are short, so this "
    "may be an ordinary word or another person of the same name; check whether it refers "
    "to an individual in the data."
)


_PLAIN: Final[_Scanner] = _Scanner(Context())


def identifier_kinds(text: str) -> list[str]:
    """Kinds of the direct identifiers in ``text`` (``id_card``, ``uscc``, ``bank_card``,
    ``mobile``), by the same detectors as the egress checks; pseudonyms are not counted."""
    return [hit.kind for hit in _PLAIN.identifiers(text) if hit.kind != "pseudonym"]
