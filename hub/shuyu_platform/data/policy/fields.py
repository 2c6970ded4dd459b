"""One field of a dataset: type, grade, masking rule, DP bounds."""

from __future__ import annotations

from typing import (
    Any,
    Literal,
)

from pydantic import (
    StrictBool,
    StrictFloat,
    StrictStr,
    model_validator,
)

from .masking_rules import (
    _DEFAULT_MASKING,
    _GENERALIZE_TYPES,
    _RULE_TYPES,
    GeneralizeMasking,
    Masking,
    _types,
)
from .vocabulary import (
    _NUMERIC,
    GRADE_DESCRIPTIONS,
    FieldType,
    Grade,
    IdentifierFormat,
    Loc,
    Text,
    _fail,
    _Strict,
)

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
    format: IdentifierFormat | None = None
    """The identifier format every non-null value must have; a supplied version
    (:mod:`shuyu_platform.data.supply`) with one value that does not is refused."""
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
        if self.format is not None and self.type != "string":
            problems.append((("format",), f"a format applies to string fields, not {self.type}"))
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
