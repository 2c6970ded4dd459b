"""The ``dp:`` section of a policy: filterable columns and the global budget, checked
with file:line errors like the rest of the policy."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from shuyu_platform.data.policy import PolicyError, Problem, load_policies

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "policies"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A writable copy of the shipped policy files."""
    folder = tmp_path / "policies"
    folder.mkdir()
    for path in SHIPPED.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    return folder


def edit(path: Path, old: str, new: str) -> int:
    """Replace the one occurrence of ``old`` by ``new``; return the line where it starts."""
    text = path.read_text("utf-8")
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path.name}"
    at = text.index(old)
    path.write_text(text[:at] + new + text[at + len(old) :], "utf-8")
    return text.count("\n", 0, at) + 1


def problems_of(folder: Path) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        load_policies(folder)
    return caught.value.problems


def test_shipped_policies_bound_what_one_person_can_lose() -> None:
    """The defaults README.md justifies: every dataset about people caps one grant at
    ε 0.5 and everyone together at ε 1 per year, and lets no query filter on the
    privacy unit or an identifier."""
    policies = load_policies(SHIPPED)
    for policy in policies.values():
        unit = policy.privacy.privacy_unit
        if unit is None:
            continue
        assert policy.privacy.default_budget_epsilon == 0.5
        assert policy.dp.global_budget_epsilon == 1.0 and policy.dp.budget_period == "year"
        assert unit not in policy.dp.filterable
        assert not any(policy.fields[name].identifier for name in policy.dp.filterable)
        # The membership-inference bound the README states for these figures.
        bound = math.exp(1.0) / (1 + math.exp(1.0))
        assert round(bound, 3) == 0.731
    assert "birth_date" not in policies["health_records"].dp.filterable
    assert policies["health_records"].dp.steps["settlement_amount"] == 1000


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            "filterable: [sex, district,",
            "filterable: [person_id, sex, district,",
            "dp.filterable.0",
            "'person_id' is the privacy unit",
        ),
        (
            "filterable: [sex, district,",
            "filterable: [phone, sex, district,",
            "dp.filterable.0",
            "'phone' is a direct identifier",
        ),
        (
            "filterable: [sex, district,",
            "filterable: [county, sex, district,",
            "dp.filterable.0",
            "no field named 'county'",
        ),
        (
            "filterable: [sex, district,",
            "filterable: [sex, sex, district,",
            "dp.filterable.1",
            "duplicate value 'sex'",
        ),
        (
            "steps: {dosage_mg: 100,",
            "steps: {sex: 1, dosage_mg: 100,",
            "dp.steps.sex",
            "a step applies to int or float fields, not category",
        ),
        (
            "steps: {dosage_mg: 100,",
            "steps: {icd11_code: 1, dosage_mg: 100,",
            "dp.steps.icd11_code",
            "not in dp.filterable",
        ),
        (
            "  global_budget_epsilon: 1.0\n",
            "  global_budget_epsilon: 0.1\n",
            "dp.global_budget_epsilon",
            "below privacy.max_epsilon_per_query (0.25)",
        ),
        (
            "  budget_period: year\n",
            "  budget_period: week\n",
            "dp.budget_period",
            "Input should be 'month', 'quarter' or 'year'",
        ),
        (
            "  budget_period: year\n",
            "  budget_periode: year\n",
            "dp.budget_periode",
            "did you mean 'budget_period'?",
        ),
    ],
)
def test_a_bad_dp_section_is_located(
    policies: Path, old: str, new: str, path: str, message: str
) -> None:
    file = policies / "health_records.yaml"
    line = edit(file, old, new)
    (problem,) = problems_of(policies)
    assert problem.file == str(file) and problem.path == path, str(problem)
    assert problem.line == line, str(problem)
    assert message in problem.message, str(problem)
