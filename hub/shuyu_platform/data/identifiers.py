"""Chinese identifier formats: build them, check them, and take them apart.

Two kinds of caller use this module:

* the demo-data generator (:mod:`shuyu_platform.data.demodata`), which needs to *build*
  millions of realistic identifiers at once and so uses the vectorised numpy helpers
  (:func:`build_id_cards`, :func:`build_org_codes`, :func:`build_usccs`);
* the egress disclosure checks, which need to *recognise* identifiers in outputs and so
  use the scalar validators (:func:`is_valid_id_card`, :func:`is_valid_uscc`,
  :func:`is_mobile`, :func:`luhn_valid`, ...).

Formats covered:

* Resident identity card number, GB 11643-1999: 6-digit region code, 8-digit birth date
  ``YYYYMMDD``, 3-digit sequence (odd = male, even = female) and an ISO 7064 MOD 11-2
  check character (``0``-``9`` or upper-case ``X``).
* Unified social credit code, GB 32100-2015: registration department (1 char),
  organisation category (1 char), 6-digit region code, 9-character organisation code
  (GB 11714-1997, with its own check character) and a MOD 31 check character, all drawn
  from a 31-character alphabet without ``I O S V Z``.
* Mainland mobile numbers: 11 digits, ``1[3-9]`` followed by nine digits.
* The Luhn (MOD 10) checksum used by bank card numbers.

Validators are strict on purpose: they accept only the canonical printed form (no
spaces, no hyphens, no lower-case letters) so that a disclosure check reports exactly the
strings a reader would recognise as identifiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

# --------------------------------------------------------------------------- ID card

#: ISO 7064 MOD 11-2 weights of the first 17 digits of a resident ID card number.
ID_CARD_WEIGHTS: Final[tuple[int, ...]] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

#: Check character of an ID card number, indexed by (weighted sum mod 11).
ID_CARD_CHECK_MAP: Final[str] = "10X98765432"

#: First two digits of GB/T 2260 province-level region codes (plus 81/82/83, used by the
#: residence permits of Hong Kong, Macao and Taiwan residents).
PROVINCE_CODES: Final[frozenset[str]] = frozenset(
    str(code)
    for code in (
        11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43,
        44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83,
    )
)  # fmt: skip

#: Earliest birth date an ID card number may carry (the standard's own example is 1880).
EARLIEST_BIRTH_DATE: Final[date] = date(1800, 1, 1)

_ID_CARD_RE: Final[re.Pattern[str]] = re.compile(r"[0-9]{17}[0-9X]")


@dataclass(frozen=True)
class IdCard:
    """The fields encoded in a valid resident ID card number."""

    region_code: str
    """The 6-digit GB/T 2260 region code of the place of first registration."""
    birth_date: date
    """The holder's date of birth."""
    sequence: int
    """The 3-digit sequence number (0-999)."""

    @property
    def sex(self) -> Literal["M", "F"]:
        """``"M"`` for an odd sequence number, ``"F"`` for an even one."""
        return "M" if self.sequence % 2 else "F"


def id_card_check_char(first17: str) -> str:
    """Return the check character completing the 17 leading digits of an ID card number.

    Raises :class:`ValueError` unless ``first17`` is exactly 17 ASCII digits.
    """
    if len(first17) != 17 or not _is_ascii_digits(first17):
        raise ValueError(f"expected 17 ASCII digits, got {first17!r}")
    total = sum(int(c) * w for c, w in zip(first17, ID_CARD_WEIGHTS, strict=True))
    return ID_CARD_CHECK_MAP[total % 11]


def is_valid_id_card(s: str) -> bool:
    """Tell whether ``s`` is a well-formed 18-character resident ID card number.

    Checks the format (17 digits then a digit or upper-case ``X``; lower-case ``x`` is
    rejected), a known province prefix, a real calendar birth date that is neither before
    :data:`EARLIEST_BIRTH_DATE` nor in the future, and the check character.
    """
    return _parse_id_card(s) is not None


def parse_id_card(s: str) -> IdCard:
    """Split a valid ID card number into its fields.

    Raises :class:`ValueError` if ``s`` is not valid according to :func:`is_valid_id_card`.
    """
    parsed = _parse_id_card(s)
    if parsed is None:
        raise ValueError(f"not a valid resident ID card number: {s!r}")
    return parsed


def _parse_id_card(s: str) -> IdCard | None:
    if not isinstance(s, str) or not _ID_CARD_RE.fullmatch(s):
        return None
    if s[:2] not in PROVINCE_CODES:
        return None
    birth = _parse_yyyymmdd(s[6:14])
    if birth is None or not EARLIEST_BIRTH_DATE <= birth <= date.today():
        return None
    if id_card_check_char(s[:17]) != s[17]:
        return None
    return IdCard(region_code=s[:6], birth_date=birth, sequence=int(s[14:17]))


def _parse_yyyymmdd(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def build_id_cards(
    region_codes: npt.ArrayLike,
    birth_dates: npt.ArrayLike,
    sequences: npt.ArrayLike,
) -> npt.NDArray[np.bytes_]:
    """Build ID card numbers, vectorised, as a 1-D numpy array of dtype ``S18``.

    ``region_codes`` are 6-digit integers (e.g. ``510703``), ``birth_dates`` anything
    numpy converts to ``datetime64[D]`` and ``sequences`` integers in 0..999 (odd for
    men, even for women). The three are broadcast against each other. Raises
    :class:`ValueError` on out-of-range inputs.
    """
    regions, births, seqs = np.broadcast_arrays(
        np.asarray(region_codes, dtype=np.int64),
        np.asarray(birth_dates, dtype="datetime64[D]"),
        np.asarray(sequences, dtype=np.int64),
    )
    regions, births, seqs = regions.ravel(), births.ravel(), seqs.ravel()
    _require_range(regions, 100_000, 999_999, "region code")
    _require_range(seqs, 0, 999, "sequence")
    digits = np.concatenate(
        [
            _digit_matrix(regions, 6),
            _digit_matrix(_yyyymmdd(births), 8),
            _digit_matrix(seqs, 3),
        ],
        axis=1,
    )
    remainders = (digits.astype(np.int64) @ np.asarray(ID_CARD_WEIGHTS, dtype=np.int64)) % 11
    check = np.frombuffer(ID_CARD_CHECK_MAP.encode("ascii"), dtype=np.uint8)[remainders]
    return _to_fixed_bytes(np.concatenate([digits + ord("0"), check[:, None]], axis=1))


def _yyyymmdd(days: npt.NDArray[np.datetime64]) -> npt.NDArray[np.int64]:
    if np.isnat(days).any():
        raise ValueError("birth dates must not be NaT")
    years = days.astype("datetime64[Y]").astype(np.int64) + 1970
    months = days.astype("datetime64[M]")
    month_numbers = months.astype(np.int64) % 12 + 1
    day_numbers = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    _require_range(years, EARLIEST_BIRTH_DATE.year, 9999, "birth year")
    return years * 10_000 + month_numbers * 100 + day_numbers


# ------------------------------------------------------------- organisation code

#: GB 11714-1997 organisation code alphabet; a character's value is its index.
ORG_CODE_ALPHABET: Final[str] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: GB 11714-1997 weights of the first 8 characters of an organisation code.
ORG_CODE_WEIGHTS: Final[tuple[int, ...]] = (3, 7, 9, 10, 5, 8, 4, 2)

# Index c = 11 - (sum mod 11), which is 1..11: 10 -> "X", 11 -> "0" (index 0 unused).
_ORG_CHECK_MAP: Final[str] = "0123456789X0"
_ORG_CODE_RE: Final[re.Pattern[str]] = re.compile(r"[0-9A-Z]{8}[0-9X]")


def org_code_check_char(first8: str) -> str:
    """Return the GB 11714 check character completing an 8-character organisation code.

    Raises :class:`ValueError` unless ``first8`` is 8 characters from ``0-9A-Z``.
    """
    if len(first8) != 8 or any(c not in ORG_CODE_ALPHABET for c in first8):
        raise ValueError(f"expected 8 characters from 0-9A-Z, got {first8!r}")
    total = sum(
        ORG_CODE_ALPHABET.index(c) * w for c, w in zip(first8, ORG_CODE_WEIGHTS, strict=True)
    )
    return _ORG_CHECK_MAP[11 - total % 11]


def is_valid_org_code(s: str) -> bool:
    """Tell whether ``s`` is a 9-character GB 11714 organisation code with a correct check.

    Only the compact form is accepted (``"600037341"``, not ``"60003734-1"``).
    """
    if not isinstance(s, str) or not _ORG_CODE_RE.fullmatch(s):
        return False
    return org_code_check_char(s[:8]) == s[8]


def build_org_codes(bodies: npt.ArrayLike) -> npt.NDArray[np.bytes_]:
    """Append GB 11714 check characters to 8-character bodies, vectorised.

    ``bodies`` is anything numpy converts to dtype ``S8`` (bytes or ASCII str) whose
    characters are all in ``0-9A-Z``. Returns a 1-D array of dtype ``S9``.
    """
    matrix = _fixed_bytes_matrix(bodies, 8)
    values = _ORG_VALUES[matrix]
    if (values < 0).any():
        raise ValueError("organisation code bodies must use only 0-9A-Z")
    check = _ORG_CHECK_BYTES[11 - (values @ np.asarray(ORG_CODE_WEIGHTS, dtype=np.int64)) % 11]
    return _to_fixed_bytes(np.concatenate([matrix, check[:, None]], axis=1))


# ----------------------------------------------------- unified social credit code

#: GB 32100-2015 alphabet (no I, O, S, V, Z); a character's value is its index.
USCC_ALPHABET: Final[str] = "0123456789ABCDEFGHJKLMNPQRTUWXY"

#: GB 32100-2015 weights of the first 17 characters of a unified social credit code.
USCC_WEIGHTS: Final[tuple[int, ...]] = (
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
)  # fmt: skip

_USCC_RE: Final[re.Pattern[str]] = re.compile(
    r"[0-9A-HJ-NP-RTUWXY]{2}[0-9]{6}[0-9A-HJ-NP-RTUWXY]{10}"
)


def uscc_check_char(first17: str) -> str:
    """Return the GB 32100 check character completing 17 leading code characters.

    Raises :class:`ValueError` unless ``first17`` is 17 characters of :data:`USCC_ALPHABET`.
    """
    if len(first17) != 17 or any(c not in USCC_ALPHABET for c in first17):
        raise ValueError(f"expected 17 characters from {USCC_ALPHABET}, got {first17!r}")
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(s: str, *, check_org_code: bool = True) -> bool:
    """Tell whether ``s`` is a well-formed 18-character unified social credit code.

    Checks the alphabet, that characters 3-8 (the region code) are digits, the final
    check character and, unless ``check_org_code`` is false, the GB 11714 check character
    of the embedded organisation code (characters 9-17).
    """
    if not isinstance(s, str) or not _USCC_RE.fullmatch(s):
        return False
    if check_org_code and not is_valid_org_code(s[8:17]):
        return False
    return uscc_check_char(s[:17]) == s[17]


def build_usccs(
    region_codes: npt.ArrayLike,
    org_codes: npt.ArrayLike,
    registration_dept: npt.ArrayLike = "9",
    org_category: npt.ArrayLike = "1",
) -> npt.NDArray[np.bytes_]:
    """Build unified social credit codes, vectorised, as a 1-D array of dtype ``S18``.

    ``region_codes`` are 6-digit integers; ``org_codes`` are complete 9-character
    organisation codes (see :func:`build_org_codes`) using only characters of
    :data:`USCC_ALPHABET`; ``registration_dept`` (``"9"`` = market regulation, formerly
    industry and commerce) and ``org_category`` (``"1"`` = enterprise) are single
    characters or arrays of them. All inputs are broadcast against each other. Raises
    :class:`ValueError` on characters outside the alphabet or a bad organisation check.
    """
    orgs = _fixed_bytes_matrix(org_codes, 9)
    if (orgs != _fixed_bytes_matrix(build_org_codes(orgs[:, :8].copy().view("S8")), 9)).any():
        raise ValueError("organisation codes must carry a correct GB 11714 check character")
    n = orgs.shape[0]
    regions = np.broadcast_to(np.asarray(region_codes, dtype=np.int64), (n,))
    _require_range(regions, 100_000, 999_999, "region code")
    matrix = np.concatenate(
        [
            _single_char_column(registration_dept, n),
            _single_char_column(org_category, n),
            _digit_matrix(regions, 6) + ord("0"),
            orgs,
        ],
        axis=1,
    )
    values = _USCC_VALUES[matrix]
    if (values < 0).any():
        raise ValueError(f"credit code characters must come from {USCC_ALPHABET}")
    remainders = (values @ np.asarray(USCC_WEIGHTS, dtype=np.int64)) % 31
    check = _USCC_BYTES[(31 - remainders) % 31]
    return _to_fixed_bytes(np.concatenate([matrix, check[:, None]], axis=1))


# ------------------------------------------------------------------ mobile / Luhn

_MOBILE_RE: Final[re.Pattern[str]] = re.compile(r"1[3-9][0-9]{9}")


def is_mobile(s: str) -> bool:
    """Tell whether ``s`` is an 11-digit mainland mobile number (``1[3-9]`` + 9 digits)."""
    return isinstance(s, str) and _MOBILE_RE.fullmatch(s) is not None


def luhn_valid(digits: str) -> bool:
    """Tell whether a string of at least two ASCII digits passes the Luhn (MOD 10) check."""
    if not isinstance(digits, str) or len(digits) < 2 or not _is_ascii_digits(digits):
        return False
    return _luhn_sum(digits) % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """Return the Luhn check digit to append to ``partial`` (e.g. a bank card number body).

    Raises :class:`ValueError` unless ``partial`` is a non-empty string of ASCII digits.
    """
    if not partial or not _is_ascii_digits(partial):
        raise ValueError(f"expected ASCII digits, got {partial!r}")
    return str((10 - _luhn_sum(partial + "0")) % 10)


def _luhn_sum(digits: str) -> int:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total


# ------------------------------------------------------ vectorised validation

_DAYS_IN_MONTH: Final = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_PROVINCES: Final = np.array(sorted(int(code) for code in PROVINCE_CODES))
_ID_CHECK_BYTES: Final = np.frombuffer(ID_CARD_CHECK_MAP.encode("ascii"), dtype=np.uint8)


def valid_id_card_rows(
    matrix: npt.NDArray[np.uint8], today: date | None = None
) -> npt.NDArray[np.bool_]:
    """:func:`is_valid_id_card` of many 18-byte values at once (one row of ``matrix`` each).

    The same rules, vectorised for whole columns (a supplied raw version of millions of
    rows): digits, province, a real birth date from :data:`EARLIEST_BIRTH_DATE` to
    ``today``, and the check character.
    """
    digits = matrix[:, :17] - np.uint8(ord("0"))  # wraps below '0': then > 9
    ok = (digits <= 9).all(axis=1)
    last = matrix[:, 17]
    ok &= ((last >= ord("0")) & (last <= ord("9"))) | (last == ord("X"))
    wide = digits[:, :14].astype(np.int32)
    ok &= np.isin(wide[:, 0] * 10 + wide[:, 1], _PROVINCES)
    year = wide[:, 6] * 1000 + wide[:, 7] * 100 + wide[:, 8] * 10 + wide[:, 9]
    month = wide[:, 10] * 10 + wide[:, 11]
    day = wide[:, 12] * 10 + wide[:, 13]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    longest = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + (leap & (month == 2))
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= longest)
    stamp = year * 10_000 + month * 100 + day
    until = today or date.today()
    earliest = EARLIEST_BIRTH_DATE
    ok &= stamp >= earliest.year * 10_000 + earliest.month * 100 + earliest.day
    ok &= stamp <= until.year * 10_000 + until.month * 100 + until.day
    weights = np.asarray(ID_CARD_WEIGHTS, dtype=np.int32)
    ok &= _ID_CHECK_BYTES[(digits.astype(np.int32) @ weights) % 11] == last
    return ok  # type: ignore[no-any-return]


def valid_uscc_rows(matrix: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """:func:`is_valid_uscc` (organisation code checked too) of many 18-byte values at once."""
    values = _USCC_VALUES[matrix]
    ok = (values >= 0).all(axis=1)
    region = matrix[:, 2:8]
    ok &= ((region >= ord("0")) & (region <= ord("9"))).all(axis=1)
    values = np.clip(values, 0, None)
    org = _ORG_VALUES[matrix[:, 8:16]].clip(0, None)
    org_weights = np.asarray(ORG_CODE_WEIGHTS, dtype=np.int64)
    ok &= _ORG_CHECK_BYTES[11 - (org @ org_weights) % 11] == matrix[:, 16]
    remainders = (values[:, :17] @ np.asarray(USCC_WEIGHTS, dtype=np.int64)) % 31
    ok &= _USCC_BYTES[(31 - remainders) % 31] == matrix[:, 17]
    return ok  # type: ignore[no-any-return]


# ------------------------------------------------------------------ shared helpers


def _is_ascii_digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def _lookup_table(alphabet: str) -> npt.NDArray[np.int64]:
    """Map every byte to its value in ``alphabet``, or -1 if it is not in it."""
    table = np.full(256, -1, dtype=np.int64)
    table[np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8)] = np.arange(len(alphabet))
    return table


_ORG_VALUES: Final = _lookup_table(ORG_CODE_ALPHABET)
_ORG_CHECK_BYTES: Final = np.frombuffer(_ORG_CHECK_MAP.encode("ascii"), dtype=np.uint8)
_USCC_VALUES: Final = _lookup_table(USCC_ALPHABET)
_USCC_BYTES: Final = np.frombuffer(USCC_ALPHABET.encode("ascii"), dtype=np.uint8)


def _require_range(values: npt.NDArray[np.int64], low: int, high: int, what: str) -> None:
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"every {what} must be in {low}..{high}")


def _digit_matrix(values: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """Decimal digits (as values 0-9) of non-negative integers, one row per value."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] // powers) % 10).astype(np.uint8)


def _fixed_bytes_matrix(values: npt.ArrayLike, width: int) -> npt.NDArray[np.uint8]:
    """View fixed-width byte strings as an (n, width) uint8 matrix; shorter ones fail."""
    array = np.asarray(values)
    if array.dtype.kind not in "SU":
        raise ValueError(f"expected strings of {width} ASCII characters")
    chars = array.dtype.itemsize // (4 if array.dtype.kind == "U" else 1)
    if chars > width:
        raise ValueError(f"every value must be exactly {width} ASCII characters")
    array = np.ascontiguousarray(array.astype(f"S{width}").ravel())
    matrix = array.view(np.uint8).reshape(array.shape[0], width)
    if (matrix == 0).any():
        raise ValueError(f"every value must be exactly {width} ASCII characters")
    return matrix


def _single_char_column(values: npt.ArrayLike, n: int) -> npt.NDArray[np.uint8]:
    """Broadcast one character (or an array of them) to an (n, 1) uint8 column."""
    return np.broadcast_to(_fixed_bytes_matrix(values, 1).ravel(), (n,))[:, None]


def _to_fixed_bytes(matrix: npt.NDArray[np.uint8]) -> npt.NDArray[np.bytes_]:
    """Turn an (n, width) uint8 matrix into a 1-D array of dtype ``S<width>``."""
    matrix = np.ascontiguousarray(matrix, dtype=np.uint8)
    return matrix.view(f"S{matrix.shape[1]}").reshape(matrix.shape[0])
