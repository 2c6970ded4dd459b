"""DP provenance: which numbers of an output come from released differentially private answers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from ...dp.number_keys import KEY_DIGITS, number_key
from .profile import _Profile

#: Most DP number keys a ``dp_provenance`` finding lists (the release maps them to queries).
MAX_DP_KEYS: Final[int] = 500


def _significant_digits(number: float) -> int:
    """Significant digits of ``number`` at :func:`number_key` precision (0 has one)."""
    if number == 0 or not math.isfinite(number):
        return 1
    mantissa = f"{abs(number):.{KEY_DIGITS - 1}e}".split("e")[0]
    return max(1, len(mantissa.replace(".", "").rstrip("0")))


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


def _dp_match(numbers: frozenset[str], minimum: int, profile: _Profile) -> _DpMatch:
    """How the numbers of a table's non-key columns match the DP answers' keys ``numbers``."""
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
