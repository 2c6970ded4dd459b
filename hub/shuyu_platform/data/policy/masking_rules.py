"""The masking rules a field may declare, each a strict model with its parameters."""

from __future__ import annotations

from typing import (
    Annotated,
    Any,
    Final,
    Literal,
)

from pydantic import (
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)

from .vocabulary import _NUMERIC, _TEMPORAL, _TEXT, Loc, Text, _fail, _Strict

# ============================================================================= masking


class KeepMasking(_Strict):
    """Show the value unchanged."""

    rule: Literal["keep"]


class DropMasking(_Strict):
    """Leave the column out of the view entirely."""

    rule: Literal["drop"]


class PseudonymizeMasking(_Strict):
    """Replace the value by a keyed HMAC-SHA256 token.

    The key is per tenant, so two tenants cannot join their views on the token, while
    one tenant can still count and join rows of the same person within its own views.
    """

    rule: Literal["pseudonymize"]
    prefix: Text | None = None
    """Optional text put before every token (e.g. ``P-``), to make tokens recognisable."""


class PartialMasking(_Strict):
    """Keep the first and last characters of a string and mask the rest."""

    rule: Literal["partial"]
    keep_first: Annotated[StrictInt, Field(ge=0)]
    keep_last: Annotated[StrictInt, Field(ge=0)]
    mask_char: Annotated[StrictStr, StringConstraints(min_length=1, max_length=1)] = "*"


_GENERALIZE_PARAMETERS: Final[dict[str, str]] = {
    "age_band": "band_years",
    "grid": "grid_degrees",
    "prefix": "prefix_length",
}


class GeneralizeMasking(_Strict):
    """Replace the value by a coarser one.

    ``year`` / ``month`` truncate a date or timestamp (``year`` to a multiple of
    ``years`` years when given: 1987-06-15 becomes 1985-01-01 with ``years: 5``);
    ``age_band`` turns a birth date into an age band of ``band_years`` years (default
    10); ``grid`` snaps a coordinate to a grid of ``grid_degrees``; ``prefix`` keeps the
    first ``prefix_length`` characters.
    """

    rule: Literal["generalize"]
    to: Literal["year", "month", "age_band", "grid", "prefix"]
    years: Annotated[StrictInt, Field(gt=0)] | None = None
    band_years: Annotated[StrictInt, Field(gt=0)] | None = None
    grid_degrees: Annotated[StrictFloat, Field(gt=0)] | None = None
    prefix_length: Annotated[StrictInt, Field(gt=0)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_band(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("to") == "age_band" and "band_years" not in data:
            return {**data, "band_years": 10}
        return data

    @model_validator(mode="after")
    def _parameters_match_target(self) -> GeneralizeMasking:
        needed = _GENERALIZE_PARAMETERS.get(self.to)
        problems: list[tuple[Loc, str]] = []
        for target, parameter in _GENERALIZE_PARAMETERS.items():
            given = getattr(self, parameter) is not None
            if parameter == needed and not given:
                problems.append(((parameter,), f"Field required when to is {self.to!r}"))
            elif parameter != needed and given:
                problems.append(
                    ((parameter,), f"only allowed when to is {target!r}, not {self.to!r}")
                )
        if self.years is not None and self.to != "year":
            problems.append((("years",), f"only allowed when to is 'year', not {self.to!r}"))
        if problems:
            _fail(problems)
        return self


class RoundMasking(_Strict):
    """Round a number to the nearest multiple of ``to``, or to ``significant`` figures.

    Exactly one of the two is given. Significant figures keep the relative precision the
    same across magnitudes: with ``significant: 2``, 1,234 becomes 1,200 and 48,765
    becomes 49,000, so a large amount no longer points at one person the way its exact
    value (or its value to the yuan) would.
    """

    rule: Literal["round"]
    to: Annotated[StrictFloat, Field(gt=0)] | None = None
    significant: Annotated[StrictInt, Field(ge=1, le=15)] | None = None

    @model_validator(mode="after")
    def _one_precision(self) -> RoundMasking:
        if (self.to is None) == (self.significant is None):
            _fail([(("to",), "give exactly one of to (a step) or significant (figures)")])
        return self


class BucketMasking(_Strict):
    """Replace a number by the bucket it falls in.

    Bucket ``i`` holds ``edges[i] <= value < edges[i + 1]`` (the last bucket also holds its
    upper edge); values outside the edges become null (``-.inf`` and ``.inf`` edges
    bottom- and top-code instead). ``labels`` name the buckets; when omitted the masking
    job writes ``"[lower, upper)"``. ``values`` instead shows each bucket as a number (a
    typical value of the band), so the column stays numeric and means stay roughly
    right; give labels or values, not both.
    """

    rule: Literal["bucket"]
    edges: Annotated[tuple[StrictFloat, ...], Field(min_length=2)]
    labels: tuple[Text, ...] | None = None
    values: tuple[StrictFloat, ...] | None = None

    @model_validator(mode="after")
    def _edges_and_labels(self) -> BucketMasking:
        problems: list[tuple[Loc, str]] = []
        for index in range(1, len(self.edges)):
            if self.edges[index] <= self.edges[index - 1]:
                problems.append(
                    (
                        ("edges", index),
                        f"edges must be strictly increasing: {self.edges[index]:g} "
                        f"follows {self.edges[index - 1]:g}",
                    )
                )
        for key in ("labels", "values"):
            given = getattr(self, key)
            if given is not None and len(given) != len(self.edges) - 1:
                problems.append(
                    (
                        (key,),
                        f"{len(self.edges)} edges make {len(self.edges) - 1} buckets, "
                        f"but {len(given)} {key} are given",
                    )
                )
        if self.labels is not None and self.values is not None:
            problems.append((("values",), "give labels or values, not both"))
        if problems:
            _fail(problems)
        return self


class TopCodeMasking(_Strict):
    """Top and bottom coding: every value above ``max`` becomes ``max``, every value below
    ``min`` becomes ``min``. At least one of the two is given; outliers at either end
    point at few people."""

    rule: Literal["top_code"]
    max: StrictFloat | None = None
    min: StrictFloat | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> TopCodeMasking:
        if self.max is None and self.min is None:
            _fail([(("max",), "give max (top coding), min (bottom coding) or both")])
        if self.max is not None and self.min is not None and self.min >= self.max:
            _fail([(("min",), f"min {self.min:g} must be below max {self.max:g}")])
        return self


class NoiseMasking(_Strict):
    """Add keyed random noise to a number: ``value * (1 + e)``, ``e`` normal with standard
    deviation ``relative_sd``, then rounded to ``to`` when given.

    The noise of a row is drawn from a hash of the tenant key and the row's privacy unit,
    so rebuilding a view shows the same noisy value (averaging rebuilds does not remove
    it). Meant for sensitive amounts that are not quasi-identifiers: a noisy value is
    unique, so on a quasi-identifier it would only cause suppression.
    """

    rule: Literal["noise"]
    relative_sd: Annotated[StrictFloat, Field(gt=0, le=1)]
    to: Annotated[StrictFloat, Field(gt=0)] | None = None


class DateShiftMasking(_Strict):
    """Shift each unit's dates by a random number of days in ``[-max_days, max_days]``."""

    rule: Literal["date_shift"]
    max_days: Annotated[StrictInt, Field(gt=0)]


Masking = Annotated[
    KeepMasking
    | DropMasking
    | PseudonymizeMasking
    | PartialMasking
    | GeneralizeMasking
    | RoundMasking
    | BucketMasking
    | TopCodeMasking
    | NoiseMasking
    | DateShiftMasking,
    Field(discriminator="rule"),
]
"""A field's masking rule, chosen by its ``rule`` key."""

#: Every masking rule name, in the order of the documentation.
MASKING_RULES: Final[tuple[str, ...]] = (
    "keep",
    "drop",
    "pseudonymize",
    "partial",
    "generalize",
    "round",
    "bucket",
    "top_code",
    "noise",
    "date_shift",
)

#: Field types each rule applies to (rules not listed apply to every type).
_RULE_TYPES: Final[dict[str, frozenset[str]]] = {
    "partial": _TEXT,
    "round": _NUMERIC,
    "bucket": _NUMERIC,
    "top_code": _NUMERIC,
    "noise": _NUMERIC,
    "date_shift": _TEMPORAL,
}

#: Field types each ``generalize`` target applies to.
_GENERALIZE_TYPES: Final[dict[str, frozenset[str]]] = {
    "year": _TEMPORAL,
    "month": _TEMPORAL,
    "age_band": _TEMPORAL,
    "grid": _NUMERIC,
    "prefix": _TEXT,
}

#: Masking rule assumed when a field of this grade states none (L3 must state one).
_DEFAULT_MASKING: Final[dict[str, str]] = {"L1": "keep", "L2": "keep", "L4": "drop"}


def _types(allowed: frozenset[str]) -> str:
    return " or ".join(sorted(allowed))
