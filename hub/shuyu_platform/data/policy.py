"""Dataset policies: what each dataset may show, to whom, and how it is masked.

Every dataset Shuyu serves has one policy file, ``<policies_dir>/<dataset>.yaml``. A policy
carries:

* the dataset's public catalogue metadata (name, providing department, summary, update
  frequency, provision modes), which :meth:`DatasetPolicy.catalogue_entry` turns into the
  catalogue entry every signed-in user may read;
* one :class:`FieldPolicy` per column: its classification grade (``L1``-``L4``), its
  masking rule (used to build each tenant's masked Parquet view), whether it is a direct
  identifier (used by the egress identifier scan) and its differential-privacy bounds
  (used by the DP query service);
* the dataset's re-identification safeguards (:class:`Privacy`): the privacy unit, the
  quasi-identifiers and the k of k-anonymity, and the default DP budget.

Policies are validated once, at start-up, by :func:`load_policies`. The models forbid
unknown keys (so a typo is an error, never a silently ignored setting) and check every
rule against the field it applies to. Any problem stops start-up with a
:class:`PolicyError` that lists every problem found, one per line, each naming the file,
the line and the key path::

    policies/health_records.yaml:85: fields.dosage_mg.masking.to: Input should be greater than 0

Only YAML's safe subset is read (no Python tags), and a key repeated in one mapping is an
error rather than PyYAML's silent "last one wins".
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import (
    Annotated,
    Any,
    ClassVar,
    Final,
    Literal,
    NoReturn,
    Union,
    get_args,
    get_origin,
)

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "GRADE_DESCRIPTIONS",
    "MASKING_RULES",
    "BucketMasking",
    "BudgetPeriod",
    "Catalogue",
    "DatasetDp",
    "DatasetPolicy",
    "DateShiftMasking",
    "DpSettings",
    "DropMasking",
    "FieldPolicy",
    "FieldType",
    "GeneralizeMasking",
    "Grade",
    "KeepMasking",
    "LDiversity",
    "Masking",
    "NoiseMasking",
    "PartialMasking",
    "PolicyError",
    "Privacy",
    "Problem",
    "ProvisionMode",
    "PseudonymizeMasking",
    "RiskLimits",
    "RoundMasking",
    "TopCodeMasking",
    "UpdateFrequency",
    "load_policies",
    "load_policy",
    "policy_digest",
]

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


# ================================================================================== DP


class DpSettings(_Strict):
    """How the DP query service may use a field.

    Either numeric clamping bounds (``lower`` < ``upper``) for sums and means, or the
    public list of values (``public_keys``) the field may be grouped by. The keys are
    public knowledge, so grouping by them reveals nothing about which keys occur.
    """

    lower: StrictFloat | None = None
    upper: StrictFloat | None = None
    public_keys: tuple[Text, ...] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DpSettings:
        numeric = self.lower is not None or self.upper is not None
        problems: list[tuple[Loc, str]] = []
        if numeric and self.public_keys is not None:
            problems.append(
                (
                    ("public_keys",),
                    "give either lower/upper (numeric bounds) or public_keys "
                    "(group-by key), not both",
                )
            )
        elif not numeric and self.public_keys is None:
            problems.append(
                ((), "give either lower and upper (numeric bounds) or public_keys (group-by key)")
            )
        if numeric:
            for name in ("lower", "upper"):
                if getattr(self, name) is None:
                    problems.append(
                        ((name,), "Field required: numeric bounds need lower and upper")
                    )
            if self.lower is not None and self.upper is not None and self.lower >= self.upper:
                problems.append(
                    (
                        ("upper",),
                        f"upper ({self.upper:g}) must be greater than lower ({self.lower:g})",
                    )
                )
        if self.public_keys is not None:
            if not self.public_keys:
                problems.append((("public_keys",), "must list at least one key"))
            seen: set[str] = set()
            for index, key in enumerate(self.public_keys):
                if key in seen:
                    problems.append((("public_keys", index), f"duplicate key {key!r}"))
                seen.add(key)
        if problems:
            _fail(problems)
        return self

    @property
    def kind(self) -> Literal["numeric", "categorical"]:
        """``numeric`` (clamping bounds) or ``categorical`` (public group-by keys)."""
        return "categorical" if self.public_keys is not None else "numeric"


# ============================================================================== fields


class FieldPolicy(_Strict):
    """What one column is, how sensitive it is, and how each use of it is protected."""

    title: Text
    """The field's Chinese name, shown in the catalogue."""
    description: StrictStr = ""
    type: FieldType
    grade: Grade
    masking: Masking
    """Required for L3; defaults to ``keep`` for L1/L2 and ``drop`` for L4."""
    identifier: StrictBool = False
    """A direct identifier (name, ID card, phone, credit code...): the egress scan looks
    for its values, and it may never be shown in the clear."""
    dp: DpSettings | None = None
    nullable: StrictBool = False
    hierarchy: tuple[Masking, ...] = ()
    """Coarser masking rules, finest first, that a view build falls back to (all
    hierarchical fields one level at a time) when ``masking`` would suppress more rows
    than ``privacy.risk_limits.max_suppressed_share`` to reach k-anonymity and
    l-diversity."""

    @model_validator(mode="before")
    @classmethod
    def _default_masking(cls, data: Any) -> Any:
        if isinstance(data, dict) and "masking" not in data:
            grade = data.get("grade")
            if isinstance(grade, str) and grade in _DEFAULT_MASKING:
                return {**data, "masking": {"rule": _DEFAULT_MASKING[grade]}}
        return data

    @model_validator(mode="after")
    def _rules_fit_the_field(self) -> FieldPolicy:
        problems = self._rule_problems(self.masking, ("masking",))
        for index, level in enumerate(self.hierarchy):
            problems += self._rule_problems(level, ("hierarchy", index))
            if level.rule in ("keep", "drop", "pseudonymize", "date_shift"):
                problems.append(
                    (
                        ("hierarchy", index, "rule"),
                        f"a hierarchy level generalises the value; {level.rule} does not",
                    )
                )
        if self.hierarchy and self.masking.rule == "drop":
            problems.append((("hierarchy",), "a dropped field has nothing to generalise"))
        problems += self._dp_problems()
        if problems:
            _fail(problems)
        return self

    def with_masking(self, rule: Masking) -> FieldPolicy:
        """This field masked by ``rule`` instead (a level of its :attr:`hierarchy`)."""
        return self.model_copy(update={"masking": rule})

    def _rule_problems(self, masking: Any, at: Loc) -> list[tuple[Loc, str]]:
        """What is wrong with masking this field by ``masking`` (located below ``at``)."""
        problems: list[tuple[Loc, str]] = []
        rule = masking.rule
        if self.grade == "L4" and rule != "drop":
            problems.append(
                (
                    (*at, "rule"),
                    f"grade L4 ({GRADE_DESCRIPTIONS['L4']['en']}) fields never appear in a "
                    f"tenant view: masking must be drop, not {rule}",
                )
            )
        if self.identifier and rule == "keep":
            problems.append(
                (
                    (*at, "rule"),
                    "a direct identifier must not be shown in the clear: "
                    "use drop, pseudonymize or partial",
                )
            )
        allowed = _RULE_TYPES.get(rule)
        if allowed is not None and self.type not in allowed:
            problems.append(
                (
                    (*at, "rule"),
                    f"{rule} applies to {_types(allowed)} fields, not to a {self.type} field",
                )
            )
        if isinstance(masking, GeneralizeMasking):
            allowed = _GENERALIZE_TYPES[masking.to]
            if self.type not in allowed:
                problems.append(
                    (
                        (*at, "to"),
                        f"generalize to {masking.to} applies to {_types(allowed)} fields, "
                        f"not to a {self.type} field",
                    )
                )
        return problems

    def _dp_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        if self.dp is not None:
            if self.grade == "L4":
                problems.append((("dp",), "grade L4 fields cannot be queried, even with DP"))
            elif self.dp.kind == "numeric" and self.type not in _NUMERIC:
                problems.append(
                    (
                        ("dp", "lower"),
                        f"numeric bounds apply to int or float fields, not {self.type}",
                    )
                )
            elif self.dp.kind == "categorical" and self.type not in {"category", "string"}:
                problems.append(
                    (
                        ("dp", "public_keys"),
                        f"public_keys apply to category or string fields, not {self.type}",
                    )
                )
        return problems

    @property
    def visible(self) -> bool:
        """Whether the column appears (masked or not) in tenant views."""
        return self.masking.rule != "drop"


# ============================================================================ metadata


class Catalogue(_Strict):
    """The dataset's entry in the public data catalogue."""

    title: Text
    """Chinese dataset name."""
    title_en: Text
    department: Text
    """The providing department (Chinese)."""
    summary: Text
    update_frequency: UpdateFrequency
    provision_modes: Annotated[
        tuple[ProvisionMode, ...], Field(min_length=1), AfterValidator(_unique)
    ]
    tags: Annotated[tuple[Text, ...], AfterValidator(_unique)] = ()


class LDiversity(_Strict):
    """l-diversity of the sensitive attributes: every quasi-identifier class of a view
    holds at least ``l`` distinct values of each sensitive attribute (``distinct``), or
    values whose entropy is at least ``log(l)`` (``entropy``, stricter). A class that
    falls short is suppressed, so knowing someone's class never reveals their value."""

    l: Annotated[StrictInt, Field(ge=2)]  # noqa: E741 (the l of l-diversity)
    measure: Literal["distinct", "entropy"] = "distinct"


class RiskLimits(_Strict):
    """The re-identification risk a view build may leave; above it the build fails and
    the previous view stays."""

    max_prosecutor_risk: Annotated[StrictFloat, Field(gt=0, le=1)] | None = None
    """Largest 1/|class| over the view's records (default 1/k: the k-anonymity bound)."""
    max_average_risk: Annotated[StrictFloat, Field(gt=0, le=1)] = 0.1
    """Largest mean of 1/|class| over the records: the share of records an attacker
    knowing everyone's quasi-identifiers would link correctly on average."""
    max_suppressed_share: Annotated[StrictFloat, Field(ge=0, le=1)] = 0.1
    """Largest share of a view's rows suppressed for k and l. Past it the build tries the
    fields' next hierarchy level; past it at every level the build fails."""
    level_suppressed_share: Annotated[StrictFloat, Field(ge=0, le=1)] | None = None
    """Share of rows suppressed past which the build tries the next hierarchy level
    (default ``max_suppressed_share``). A lower value prefers coarser levels that keep
    more rows while tolerating more suppression before failing."""


class Privacy(_Strict):
    """Re-identification safeguards and the DP defaults of a dataset.

    The attacker model: ``quasi_identifiers`` are what an outsider or an insider (an
    insurer, an employer, anyone holding a register) may know exactly about a person,
    amounts, dates and counts included; ``sensitive_attributes`` are what such a person
    must not learn. k-anonymity holds over the whole quasi-identifier set and
    l-diversity over each sensitive attribute.
    """

    privacy_unit: Text | None
    """The column identifying one person or entity, or null for data about no one."""
    max_contributions: Annotated[StrictInt, Field(ge=1)] = 1
    """Most rows one privacy unit contributes (DP sensitivity)."""
    attacker: StrictStr = ""
    """Who is assumed to know the quasi-identifiers, in words (for reviewers)."""
    quasi_identifiers: tuple[Text, ...]
    """Visible columns that, combined, could single someone out (k-anonymity check)."""
    sensitive_attributes: tuple[Text, ...] = ()
    """Visible columns an attacker must not infer from a class (l-diversity)."""
    k_anonymity: Annotated[StrictInt, Field(ge=2)] = 5
    l_diversity: LDiversity | None = None
    risk_limits: RiskLimits = RiskLimits()
    max_epsilon_per_query: Annotated[StrictFloat, Field(gt=0)] = 1.0
    default_budget_epsilon: Annotated[StrictFloat, Field(gt=0)] = 10.0


BudgetPeriod = Literal["month", "quarter", "year"]
"""The calendar period (UTC) over which a dataset's global DP budget is counted."""


class DatasetDp(_Strict):
    """How the DP query service may use the dataset as a whole (the policy's ``dp:``).

    ``filterable`` lists the only columns a query may filter on or group by: anything
    else could single out one person (an exact amount, a date, a rare code). The privacy
    unit, direct identifiers and L4 fields may never be listed. A numeric column listed
    in ``steps`` may only be compared with, or binned at, multiples of its step, never
    matched exactly.

    ``global_budget_epsilon`` caps the ε that all tenants together may spend on the
    dataset in one ``budget_period``, so that pooling grants cannot add up to more: it
    is debited in the same atomic step as the grant's own budget.
    """

    filterable: Annotated[tuple[Text, ...], AfterValidator(_unique)] = ()
    """Columns that filters and group-by keys may use."""
    steps: dict[Text, Annotated[StrictFloat, Field(gt=0)]] = {}
    """Numeric filterable columns whose thresholds and bin edges must be multiples of
    the given step."""
    global_budget_epsilon: Annotated[StrictFloat, Field(gt=0)] = 1.0
    """ε all tenants together may spend on the dataset per period."""
    budget_period: BudgetPeriod = "year"
    """The calendar period (UTC) of the global budget."""


class Disclosure(_Strict):
    """Thresholds of the automatic egress checks for outputs drawn from this dataset.

    Unset keys keep the platform defaults (``shuyu_platform.egress.disclosure.Rules``). A
    request is checked with the strictest value over the datasets its tenant holds
    grants on (:meth:`strictest`).
    """

    min_cell_count: Annotated[StrictInt, Field(ge=1)] | None = None
    """Frequency-table cells below this count (and above zero) fail."""
    dominance_n: Annotated[StrictInt, Field(ge=1)] | None = None
    """n of the n-k dominance rule."""
    dominance_k: Annotated[StrictFloat, Field(gt=0, le=1)] | None = None
    """k of the n-k rule: the top n at this share of a cell total or more fail."""
    p_percent: Annotated[StrictFloat, Field(ge=0, lt=1)] | None = None
    """p of the p% rule."""
    max_rows: Annotated[StrictInt, Field(ge=1)] | None = None
    """Tables with more rows than this look like row-level data and fail."""

    #: For each key, the function that picks the strictest of several values.
    STRICTER: ClassVar[dict[str, Any]] = {
        "min_cell_count": max,
        "dominance_n": max,
        "dominance_k": min,
        "p_percent": max,
        "max_rows": min,
    }

    @classmethod
    def strictest(cls, sections: Iterable[Disclosure]) -> dict[str, Any]:
        """The strictest value of every key set in any of ``sections``."""
        merged: dict[str, Any] = {}
        for section in sections:
            for key, pick in cls.STRICTER.items():
                value = getattr(section, key)
                if value is not None:
                    merged[key] = value if key not in merged else pick(merged[key], value)
        return merged


FieldName = Annotated[StrictStr, StringConstraints(pattern=FIELD_PATTERN)]


class DatasetPolicy(_Strict):
    """The whole policy of one dataset, as read from ``<dataset>.yaml``."""

    dataset: Annotated[StrictStr, StringConstraints(pattern=DATASET_PATTERN)]
    version: Annotated[StrictInt, Field(ge=1)]
    catalogue: Catalogue
    raw_file: Annotated[StrictStr, AfterValidator(_plain_parquet_name)]
    """The source Parquet file's name inside the raw zone."""
    fields: Annotated[dict[FieldName, FieldPolicy], Field(min_length=1)]
    """Every column, in file order."""
    privacy: Privacy
    disclosure: Disclosure = Disclosure()
    """Thresholds of the automatic egress checks (optional)."""
    dp: DatasetDp = DatasetDp()
    """Filterable columns and the global DP budget (optional: nothing filterable)."""

    @model_validator(mode="after")
    def _references_resolve(self) -> DatasetPolicy:
        problems: list[tuple[Loc, str]] = []
        unit = self.privacy.privacy_unit
        if unit is not None and unit not in self.fields:
            problems.append((("privacy", "privacy_unit"), self._no_such_field(unit)))
        seen: set[str] = set()
        for index, name in enumerate(self.privacy.quasi_identifiers):
            loc: Loc = ("privacy", "quasi_identifiers", index)
            if name not in self.fields:
                problems.append((loc, self._no_such_field(name)))
            elif not self.fields[name].visible:
                problems.append(
                    (
                        loc,
                        f"field {name!r} is dropped from every view "
                        f"(grade {self.fields[name].grade}), so it cannot be a quasi-identifier",
                    )
                )
            if name in seen:
                problems.append((loc, f"{name!r} is listed twice"))
            seen.add(name)
        for index, name in enumerate(self.privacy.sensitive_attributes):
            loc = ("privacy", "sensitive_attributes", index)
            if name not in self.fields:
                problems.append((loc, self._no_such_field(name)))
            elif not self.fields[name].visible:
                problems.append((loc, f"field {name!r} is dropped from every view"))
            elif name in self.privacy.quasi_identifiers:
                problems.append((loc, f"{name!r} is also a quasi-identifier"))
        if self.privacy.sensitive_attributes and self.privacy.l_diversity is None:
            problems.append(
                (("privacy", "l_diversity"), "sensitive attributes need an l_diversity")
            )
        if unit is None:
            for name, field in self.fields.items():
                if field.identifier:
                    problems.append(
                        (
                            ("fields", name, "identifier"),
                            "a dataset with direct identifiers is about people or entities: "
                            "name its privacy.privacy_unit",
                        )
                    )
        if self.privacy.max_epsilon_per_query > self.privacy.default_budget_epsilon:
            problems.append(
                (
                    ("privacy", "max_epsilon_per_query"),
                    f"exceeds the whole default budget "
                    f"(default_budget_epsilon {self.privacy.default_budget_epsilon:g})",
                )
            )
        problems.extend(self._dp_problems())
        if problems:
            _fail(problems)
        return self

    def _dp_problems(self) -> list[tuple[Loc, str]]:
        """What is wrong with the ``dp:`` section, given the fields and the privacy unit."""
        problems: list[tuple[Loc, str]] = []
        unit = self.privacy.privacy_unit
        for index, name in enumerate(self.dp.filterable):
            loc: Loc = ("dp", "filterable", index)
            field = self.fields.get(name)
            if field is None:
                problems.append((loc, self._no_such_field(name)))
            elif name == unit:
                problems.append(
                    (loc, f"{name!r} is the privacy unit: a filter on it singles out one person")
                )
            elif field.identifier:
                problems.append(
                    (loc, f"{name!r} is a direct identifier: it may never be filtered on")
                )
            elif field.grade == "L4":
                problems.append((loc, f"{name!r} is grade L4: it is never queried"))
        for name in self.dp.steps:
            loc = ("dp", "steps", name)
            if name not in self.dp.filterable:
                problems.append((loc, f"{name!r} is not in dp.filterable, so it needs no step"))
            elif self.fields.get(name) is not None and self.fields[name].type not in _NUMERIC:
                problems.append(
                    (loc, f"a step applies to int or float fields, not {self.fields[name].type}")
                )
        if self.privacy.max_epsilon_per_query > self.dp.global_budget_epsilon:
            problems.append(
                (
                    ("dp", "global_budget_epsilon"),
                    f"is below privacy.max_epsilon_per_query "
                    f"({self.privacy.max_epsilon_per_query:g}): no query could ever run",
                )
            )
        return problems

    def _no_such_field(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self.fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"no field named {name!r} in fields{hint}"

    def visible_fields(self) -> dict[str, FieldPolicy]:
        """The fields that appear (masked or not) in tenant views, in file order."""
        return {name: field for name, field in self.fields.items() if field.visible}

    def identifier_fields(self) -> dict[str, FieldPolicy]:
        """The direct-identifier fields, whose values the egress scan looks for."""
        return {name: field for name, field in self.fields.items() if field.identifier}

    def catalogue_entry(self) -> dict[str, Any]:
        """The dataset's public catalogue entry as plain JSON-able data.

        It names the fields with their grade and how they are masked; it never holds
        any data value.
        """
        cat = self.catalogue
        return {
            "dataset": self.dataset,
            "title": cat.title,
            "title_en": cat.title_en,
            "department": cat.department,
            "summary": cat.summary,
            "update_frequency": cat.update_frequency,
            "provision_modes": list(cat.provision_modes),
            "tags": list(cat.tags),
            "fields": [
                {
                    "name": name,
                    "title": field.title,
                    "description": field.description,
                    "type": field.type,
                    "grade": field.grade,
                    "grade_label": _grade_label(field.grade),
                    "masked": field.masking.rule,
                    "visible": field.visible,
                }
                for name, field in self.fields.items()
            ],
            "attacker_model": {
                "attacker": self.privacy.attacker,
                "quasi_identifiers": list(self.privacy.quasi_identifiers),
                "sensitive_attributes": list(self.privacy.sensitive_attributes),
                "k_anonymity": self.privacy.k_anonymity,
                "l_diversity": None
                if self.privacy.l_diversity is None
                else self.privacy.l_diversity.model_dump(),
                "risk_limits": self.privacy.risk_limits.model_dump(),
            },
        }


def _grade_label(grade: str) -> str:
    label = GRADE_DESCRIPTIONS[grade]
    return f"{label['zh']} ({label['en']})"


# ============================================================================= loading


@dataclass
class _Loaded:
    """The outcome of reading one policy file: the policy, or the problems found."""

    policy: DatasetPolicy | None
    data: Any
    lines: dict[Loc, int]
    problems: list[Problem]


def load_policy(path: Path) -> DatasetPolicy:
    """Read and validate one policy file; raise :class:`PolicyError` listing every problem.

    The file name is not checked against the dataset name here; :func:`load_policies`
    does that for a folder.
    """
    loaded = _load(Path(path))
    if loaded.problems or loaded.policy is None:
        raise PolicyError(loaded.problems)
    return loaded.policy


def load_policies(directory: Path) -> dict[str, DatasetPolicy]:
    """Read and validate every ``*.yaml`` / ``*.yml`` file of ``directory``.

    Returns the policies keyed by dataset name, in file-name order. Raises one
    :class:`PolicyError` listing every problem of every file when any file is malformed,
    when a file's name (without extension) differs from its dataset name, when two files
    define the same dataset, or when the folder holds no policy at all. Hidden files
    (names starting with ``.``) are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyError([Problem(str(directory), None, "", "no such policy folder")])
    try:
        files = _policy_files(directory)
    except OSError as err:
        raise PolicyError(
            [Problem(str(directory), None, "", f"cannot list the folder: {err.strerror}")]
        ) from None
    if not files:
        raise PolicyError(
            [Problem(str(directory), None, "", "no policy files (*.yaml, *.yml) in this folder")]
        )
    policies: dict[str, DatasetPolicy] = {}
    defined_in: dict[str, Path] = {}
    problems: list[Problem] = []
    for path in files:
        loaded = _load(path)
        file_problems = list(loaded.problems)
        name = loaded.data.get("dataset") if isinstance(loaded.data, dict) else None
        if isinstance(name, str):
            line = loaded.lines.get(("dataset",))
            if name != path.stem:
                file_problems.append(
                    Problem(
                        str(path),
                        line,
                        "dataset",
                        f"dataset {name!r} does not match the file name {path.name!r}: "
                        f"a policy file is named after its dataset ({name}{path.suffix})",
                    )
                )
            if name in defined_in:
                file_problems.append(
                    Problem(
                        str(path),
                        line,
                        "dataset",
                        f"dataset {name!r} is already defined in {defined_in[name]}",
                    )
                )
            else:
                defined_in[name] = path
        problems.extend(sorted(file_problems, key=lambda p: p.line or 0))
        if not file_problems and loaded.policy is not None:
            policies[loaded.policy.dataset] = loaded.policy
    if problems:
        raise PolicyError(problems)
    return policies


def policy_digest(directory: Path) -> dict[str, str]:
    """SHA-256 (hex) of each policy file's bytes, by file name, for the audit record."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in _policy_files(Path(directory))
    }


def _policy_files(directory: Path) -> list[Path]:
    return sorted(
        (
            path
            for path in directory.iterdir()
            if path.suffix in {".yaml", ".yml"} and not path.name.startswith(".") and path.is_file()
        ),
        key=lambda path: path.name,
    )


def _load(path: Path) -> _Loaded:
    """Read, parse and validate one file, collecting problems instead of raising."""
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        return _Loaded(None, None, {}, [Problem(file, None, "", f"cannot read: {err.strerror}")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return _Loaded(None, None, {}, [Problem(file, line, "", "not UTF-8 text")])

    data, lines, problems = _parse_yaml(file, text)
    if problems and data is None:
        return _Loaded(None, None, lines, problems)
    if data is None:
        problems.append(Problem(file, 1, "", "the file is empty: a policy is a YAML mapping"))
        return _Loaded(None, None, lines, problems)
    if not isinstance(data, dict):
        problems.append(
            Problem(file, lines.get((), 1), "", "a policy must be a YAML mapping at the top level")
        )
        return _Loaded(None, data, lines, problems)
    try:
        policy = DatasetPolicy.model_validate(data)
    except ValidationError as err:
        for error in err.errors(include_url=False):
            problems.extend(_error_problems(file, error, data, lines))
        return _Loaded(None, data, lines, problems)
    return _Loaded(policy, data, lines, problems)


# ------------------------------------------------------------------------------ YAML


def _parse_yaml(file: str, text: str) -> tuple[Any, dict[Loc, int], list[Problem]]:
    """Parse ``text`` with YAML's safe subset.

    Returns the data, the 1-based line of every key path (the line of a mapping key, or
    of a sequence item) and the problems found: syntax errors (with the line from the
    parser's mark) and keys repeated within one mapping.
    """
    lines: dict[Loc, int] = {}
    problems: list[Problem] = []
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines, problems
        lines[()] = node.start_mark.line + 1
        _map_lines(loader, node, (), lines, problems, file, set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        problems.append(_yaml_problem(file, err))
        return None, lines, problems
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        problems.append(Problem(file, line, "", f"invalid YAML: {err.reason}"))
        return None, lines, problems
    except yaml.YAMLError as err:
        problems.append(Problem(file, None, "", f"invalid YAML: {err}"))
        return None, lines, problems
    finally:
        loader.dispose()
    return data, lines, problems


def _yaml_problem(file: str, err: yaml.MarkedYAMLError) -> Problem:
    mark = err.problem_mark or err.context_mark
    line = mark.line + 1 if mark is not None else None
    message = err.problem or "syntax error"
    if err.context:
        context = err.context
        if err.context_mark is not None and err.context_mark is not mark:
            context += f" started at line {err.context_mark.line + 1}"
        message = f"{message} ({context})"
    return Problem(file, line, "", f"invalid YAML: {message}")


_MERGE_TAG: Final[str] = "tag:yaml.org,2002:merge"


def _map_lines(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Loc,
    lines: dict[Loc, int],
    problems: list[Problem],
    file: str,
    visited: set[int],
) -> None:
    """Record the line of every key path below ``node`` and report repeated keys."""
    if id(node) in visited:  # an alias: its content was mapped where it was anchored
        return
    if isinstance(node, yaml.SequenceNode):
        visited.add(id(node))
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _map_lines(loader, item, (*path, index), lines, problems, file, visited)
    elif isinstance(node, yaml.MappingNode):
        visited.add(id(node))
        first_seen: dict[Any, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # construction reports a non-scalar key
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_seen:
                problems.append(
                    Problem(
                        file,
                        line,
                        _dotted((*path, key)),
                        f"duplicate key {key!r} (first at line {first_seen[key]}); "
                        f"YAML would silently keep only the last one",
                    )
                )
            else:
                first_seen[key] = line
            lines[(*path, key)] = line
            _map_lines(loader, value_node, (*path, key), lines, problems, file, visited)
        for source in _merged_mappings(merged):
            for key_node, _ in source.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    key = loader.construct_object(key_node)
                    lines.setdefault((*path, key), key_node.start_mark.line + 1)


def _merged_mappings(nodes: list[yaml.Node]) -> Iterator[yaml.MappingNode]:
    for node in nodes:
        if isinstance(node, yaml.MappingNode):
            yield node
        elif isinstance(node, yaml.SequenceNode):
            yield from (item for item in node.value if isinstance(item, yaml.MappingNode))


# --------------------------------------------------------------- validation errors


def _error_problems(
    file: str, error: Any, data: dict[str, Any], lines: dict[Loc, int]
) -> list[Problem]:
    """Turn one pydantic error into located problems (several for a custom error)."""
    loc: Loc = tuple(error["loc"])
    if error["type"] == _CUSTOM_ERROR:
        items = [((*loc, *sub), message) for sub, message in error["ctx"]["problems"]]
    else:
        items = [(loc, error["msg"])]
    problems = []
    for full_loc, message in items:
        path, parent, is_key = _resolve(full_loc, data)
        message = _explain(error, message, path, parent, is_key, data)
        if error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            path = (*path, "rule")
        problems.append(Problem(file, _line(lines, path), _dotted(path), message))
    return problems


def _resolve(loc: Loc, data: Any) -> tuple[Loc, type[BaseModel] | None, bool]:
    """Map a pydantic location onto the YAML data.

    Drops the tags pydantic inserts for a discriminated union (``masking.round.to`` is
    the key ``masking.to`` of the file) and the ``[key]`` marker of a mapping-key error.
    Returns the data path, the model holding the last key (or ``None``), and whether the
    error is about a mapping key rather than its value.
    """
    path: list[str | int] = []
    annotation: Any = DatasetPolicy
    parent: type[BaseModel] | None = None
    node = data
    for item in loc:
        if item == "[key]":
            return tuple(path), parent, True
        annotation = _unwrap(annotation)
        members = _tagged_members(annotation)
        if members is not None:
            if item in members:  # pydantic's tag, not a key of the file
                annotation = members[item]
                continue
            tag = node.get("rule") if isinstance(node, dict) else None
            annotation = members.get(tag) if isinstance(tag, str) else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            parent = annotation
            info = annotation.model_fields.get(item) if isinstance(item, str) else None
            annotation = info.annotation if info is not None else None
        elif get_origin(annotation) is dict:
            parent, annotation = None, get_args(annotation)[1]
        elif get_origin(annotation) is tuple:
            parent, annotation = None, get_args(annotation)[0]
        else:
            parent, annotation = None, None
        path.append(item)
        node = _child(node, item)
    return tuple(path), parent, False


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` metadata and ``None`` from an annotation."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType) and NoneType in get_args(annotation):
            rest = tuple(arg for arg in get_args(annotation) if arg is not NoneType)
            annotation = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007
        else:
            return annotation


def _tagged_members(annotation: Any) -> dict[str, type[BaseModel]] | None:
    """The members of a union discriminated by ``rule``, by tag; ``None`` otherwise."""
    if get_origin(annotation) not in (Union, UnionType):
        return None
    members: dict[str, type[BaseModel]] = {}
    for arg in get_args(annotation):
        if not (isinstance(arg, type) and issubclass(arg, BaseModel)):
            return None
        rule = arg.model_fields.get("rule")
        if rule is None:
            return None
        members[get_args(rule.annotation)[0]] = arg
    return members


def _child(node: Any, item: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(item)
    if isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
        return node[item]
    return None


def _line(lines: dict[Loc, int], path: Loc) -> int | None:
    """The line of ``path``, or of its nearest ancestor that has one."""
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _explain(
    error: Any,
    message: str,
    path: Loc,
    parent: type[BaseModel] | None,
    is_key: bool,
    data: Any,
) -> str:
    """Add what pydantic's message leaves out for the commonest mistakes."""
    kind = error["type"]
    if is_key:
        return f"invalid key: {message}"
    if kind == "extra_forbidden" and path:
        key = str(path[-1])
        allowed = [name for name in parent.model_fields] if parent is not None else []
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            return f"{message}: unknown key {key!r} (did you mean {close[0]!r}?)"
        if allowed:
            return f"{message}: unknown key {key!r} (allowed: {', '.join(allowed)})"
        return f"{message}: unknown key {key!r}"
    if kind == "union_tag_not_found":
        return f"{message}: the key 'rule' is missing (one of {', '.join(MASKING_RULES)})"
    if kind == "model_attributes_type" and path and path[-1] == "masking":
        value = error.get("input")
        example = value if isinstance(value, str) and value in MASKING_RULES else "keep"
        return f"{message}: write the rule as a mapping, e.g. {{rule: {example}}}"
    if kind == "missing" and path and path[-1] == "masking" and parent is FieldPolicy:
        field = data
        for item in path[:-1]:
            field = _child(field, item)
        grade = field.get("grade") if isinstance(field, dict) else None
        if grade == "L3":
            return f"{message}: grade L3 (sensitive) fields must state a masking rule"
    return message
