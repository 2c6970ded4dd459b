"""Canonical keys of numbers: how released DP answers are registered, and found again.

The budget ledger registers every number of every released answer by its key
(:func:`shuyu_platform.dp.budget.answers_by_number`); the egress checks compute the same key
of each number in an output to tell which ones come from DP answers
(:mod:`shuyu_platform.egress.disclosure.provenance`). One definition serves both, here,
below egress.
"""

from __future__ import annotations

import math
from typing import Final

#: Significant digits a key keeps.
KEY_DIGITS: Final[int] = 6


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
    rounded = float(f"{number:.{KEY_DIGITS}g}")
    return repr(rounded if rounded != 0 else 0.0)
