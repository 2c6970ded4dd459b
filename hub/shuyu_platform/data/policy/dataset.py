"""A dataset's policy: catalogue entry, fields, privacy (attacker model, k, l, risk limits),
DP and disclosure settings."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
)

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)

from .fields import FieldPolicy
from .vocabulary import (
    _NUMERIC,
    DATASET_PATTERN,
    FIELD_PATTERN,
    GRADE_DESCRIPTIONS,
    Loc,
    ProvisionMode,
    Text,
    UpdateFrequency,
    _fail,
    _plain_parquet_name,
    _Strict,
    _unique,
)

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
    steps: dict[Text, Annotated[StrictFloat, Field(gt=0)]] = {}  # noqa: RUF012 (pydantic copies it)
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


class Production(_Strict):
    """What a sealed production run may see of the dataset (the policy's ``production:``).

    A production input is the granted fields and rows at full fidelity: no
    generalisation, no suppression. Direct identifiers (``identifier: true``) are
    ``drop``-ped or ``pseudonymize``-d with the tenant's key (the same tokens as in its
    masked views, so results can be joined back to them); L4 fields and the fields in
    ``exclude`` are never given to a job. Without ``allowed: true`` no job reads the
    dataset at all.
    """

    allowed: StrictBool = False
    """Whether sealed production runs may read this dataset."""
    identifiers: Literal["drop", "pseudonymize"] = "pseudonymize"
    """What happens to direct identifiers in the production input."""
    exclude: Annotated[tuple[Text, ...], AfterValidator(_unique)] = ()
    """Fields never given to a production run, on top of L4 fields."""


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
    production: Production = Production()
    """What sealed production runs may see (optional: nothing)."""

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
        for index, name in enumerate(self.production.exclude):
            if name not in self.fields:
                problems.append((("production", "exclude", index), self._no_such_field(name)))
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

    def production_fields(self, granted: Iterable[str]) -> list[str]:
        """The ``granted`` fields a production run gets, in file order (see
        :class:`Production`): never L4 fields, excluded fields, or dropped identifiers."""
        wanted = set(granted)
        rules = self.production
        return [
            name
            for name, field in self.fields.items()
            if name in wanted
            and field.grade != "L4"
            and name not in rules.exclude
            and not (field.identifier and rules.identifiers == "drop")
        ]

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
