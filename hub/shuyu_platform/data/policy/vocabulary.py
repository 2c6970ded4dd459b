"""What every part of a policy shares: problems and the error listing them, grades, types,
name patterns, the strict model base."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    NoReturn,
)

from pydantic import (
    BaseModel,
    ConfigDict,
    StrictStr,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

# ============================================================================ problems


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, located as precisely as the file allows."""

    file: str
    """The policy file (or folder) as the loader was given it."""
    line: int | None
    """1-based line in ``file``, or ``None`` when the problem has no line (a folder)."""
    path: str
    """Dotted key path inside the policy, e.g. ``fields.sex.masking.rule``; may be empty."""
    message: str
    """What is wrong, in words an operator can act on."""

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyError(Exception):
    """One or more policy files are malformed; start-up must stop.

    ``problems`` lists every problem found (across all files); ``str()`` is one
    ``file:line: path: message`` line per problem.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


# ========================================================================== vocabulary

Grade = Literal["L1", "L2", "L3", "L4"]
"""Classification grade of a field, from public (L1) to forbidden (L4)."""

#: Chinese and English label of each grade, for the catalogue and the review pages.
#: L4 (禁止, "core" data in the national scheme) never appears in any tenant view.
GRADE_DESCRIPTIONS: Final[dict[str, dict[str, str]]] = {
    "L1": {"zh": "公开", "en": "public"},
    "L2": {"zh": "内部", "en": "internal"},
    "L3": {"zh": "敏感", "en": "sensitive"},
    "L4": {"zh": "禁止", "en": "forbidden"},
}

FieldType = Literal["string", "int", "float", "date", "timestamp", "category"]
"""Logical type of a column. ``category`` is a string drawn from a small, public set."""

IdentifierFormat = Literal["id_card", "mobile", "uscc"]
"""Format a supplied identifier column must have: resident ID card number (GB 11643),
mainland mobile number, unified social credit code (GB 32100)."""

UpdateFrequency = Literal[
    "realtime", "daily", "weekly", "monthly", "quarterly", "yearly", "irregular"
]
"""How often the providing department refreshes the dataset (catalogue metadata)."""

ProvisionMode = Literal["masked_view", "dp_query", "synthetic", "api"]
"""How a dataset is offered: per-tenant masked view, DP queries, synthetic twin, API."""

_NUMERIC: Final[frozenset[str]] = frozenset({"int", "float"})
_TEMPORAL: Final[frozenset[str]] = frozenset({"date", "timestamp"})
_TEXT: Final[frozenset[str]] = frozenset({"string"})

#: Pattern of a dataset name (also the policy file's stem and the raw file's stem).
DATASET_PATTERN: Final[str] = r"^[a-z][a-z0-9_]{1,62}$"
#: Pattern of a field (column) name.
FIELD_PATTERN: Final[str] = r"^[a-z][a-z0-9_]*$"

Text = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
"""A non-empty string (surrounding white space removed)."""

Loc = tuple[str | int, ...]
"""A location inside a policy: mapping keys and sequence indices."""

_CUSTOM_ERROR: Final[str] = "shuyu_policy"


def _fail(problems: list[tuple[Loc, str]]) -> NoReturn:
    """Raise a validation error carrying problems located *below* the validated value.

    A validator can only fail as a whole, at its own location. The relative locations
    travel in the error's context, and :func:`load_policy` appends them to the error's
    location, so each problem is reported at the key it is about.
    """
    summary = "; ".join(f"{_dotted(loc)}: {msg}" if loc else msg for loc, msg in problems)
    raise PydanticCustomError(
        _CUSTOM_ERROR, "{summary}", {"summary": summary, "problems": problems}
    )


def _dotted(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _unique(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """After-validator: reject a repeated item, pointing at the repeat."""
    seen: set[Any] = set()
    problems: list[tuple[Loc, str]] = []
    for index, value in enumerate(values):
        if value in seen:
            problems.append(((index,), f"duplicate value {value!r}"))
        seen.add(value)
    if problems:
        _fail(problems)
    return values


def _plain_parquet_name(value: str) -> str:
    """After-validator for ``raw_file``: a bare ``*.parquet`` name inside the raw zone."""
    if "/" in value or "\\" in value or ".." in value or value.startswith("."):
        raise PydanticCustomError(
            "raw_file", "must be a plain file name in the raw zone (no '/', '\\' or '..')"
        )
    if not value.endswith(".parquet") or value == ".parquet":
        raise PydanticCustomError("raw_file", "must be a Parquet file name ending in .parquet")
    return value


class _Strict(BaseModel):
    """Base of every policy model: unknown keys are errors and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
