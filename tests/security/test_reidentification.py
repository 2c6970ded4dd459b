"""The re-identification attacks of issue 14, run against views of the demo data.

The raw files are the ground truth. An insurer that knows its customers' sex, birth
date, district and settlement amount looks them up in kangning's health view; an
employer does the same in the social insurance view, and anyone reading the public
enterprise register in huaxin's enterprise view. Then kangning tries to line its view up
with huaxin's, by position and by sorting on the columns both views show, to link
huaxin's pseudonyms to its own.

The data has the demo's size (100,000 rows), for which the policies' risk limits are
tuned. Each attack also runs against what it was built to defeat (the old policy, or
views in raw order), so a broken attack cannot pass for a working defence.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pycanon import anonymity
from reidentification import KNOWN, attack, unique_share_of_view

from shuyu_platform.data import demodata, masking
from shuyu_platform.data.masking import tenant_key
from shuyu_platform.data.policy import (
    DatasetPolicy,
    RiskLimits,
    TopCodeMasking,
    load_policies,
)
from shuyu_platform.data.views import ViewReport, build_view, generalisation_levels

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ROWS = 100_000
SEED = 20240501
SECRET = b"platform-master-secret-for-tests"
KANGNING = tenant_key(SECRET, "kangning")
HUAXIN = tenant_key(SECRET, "huaxin")
BUILT_ON = date(2026, 6, 15)
#: huaxin's demo grant of health_records: these fields, two districts.
HUAXIN_FIELDS = ["person_id", "sex", "birth_date", "district", "icd11_code"]
HUAXIN_FILTER = {"district": ["涪城区", "游仙区"]}


@pytest.fixture(scope="module")
def policies() -> dict[str, DatasetPolicy]:
    return load_policies(REPO / "policies")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return demodata.generate(tmp_path_factory.mktemp("raw"), rows=ROWS, seed=SEED)


@pytest.fixture(scope="module")
def views(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, ViewReport]:
    """Every attacked dataset's view with all its visible fields, built as the platform
    builds it (the policy's k, l and risk limits)."""
    folder = tmp_path_factory.mktemp("views")
    return {
        name: build_view(
            policies[name],
            raw[name],
            folder / f"{name}.parquet",
            key=KANGNING,
            fields=list(policies[name].visible_fields()),
            reference_date=BUILT_ON,
        )
        for name in KNOWN
    }


# ======================================================================== linking people


@pytest.mark.parametrize("dataset", list(KNOWN))
def test_at_most_5_percent_of_people_are_matched_to_one_row(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    views: dict[str, ViewReport],
    dataset: str,
) -> None:
    result = attack(policies[dataset], raw[dataset], views[dataset].out_path, people=1000)
    assert result.unique_share <= 0.05
    assert result.disclosed_share <= 0.05
    # Most people are still in the view, only not alone in it.
    assert result.ambiguous >= 900
    assert unique_share_of_view(views[dataset].out_path, KNOWN[dataset]) <= 0.05


def test_the_insurer_singles_out_almost_everyone_under_the_old_policy(
    policies: dict[str, DatasetPolicy], raw: dict[str, Path], tmp_path: Path
) -> None:
    """The attack works: with k over sex, birth year and district only, and settlement
    amounts exact below 50,000 yuan, it matches nearly everyone and reads the diagnosis."""
    policy = policies["health_records"]
    fields = dict(policy.fields)
    fields["birth_date"] = fields["birth_date"].model_copy(update={"hierarchy": ()})
    fields["settlement_amount"] = (
        fields["settlement_amount"]
        .with_masking(TopCodeMasking(rule="top_code", max=50000.0))
        .model_copy(update={"hierarchy": ()})
    )
    privacy = policy.privacy.model_copy(
        update={
            "quasi_identifiers": ("sex", "birth_date", "district"),
            "sensitive_attributes": (),
            "l_diversity": None,
            "risk_limits": RiskLimits(max_average_risk=1.0, max_suppressed_share=1.0),
        }
    )
    old = policy.model_copy(update={"fields": fields, "privacy": privacy})
    report = build_view(
        old,
        raw["health_records"],
        tmp_path / "old.parquet",
        key=KANGNING,
        fields=list(old.visible_fields()),
        reference_date=BUILT_ON,
    )
    result = attack(old, raw["health_records"], report.out_path, people=1000)
    assert result.unique_share > 0.9
    assert result.disclosed_share > 0.9


# ==================================================================== k and l, cross-checked


@pytest.mark.parametrize("dataset", list(KNOWN))
def test_k_and_l_hold_over_the_whole_attacker_model_says_pycanon(
    policies: dict[str, DatasetPolicy], views: dict[str, ViewReport], dataset: str
) -> None:
    policy, report = policies[dataset], views[dataset]
    risk = report.risk
    assert risk is not None
    qis = list(policy.privacy.quasi_identifiers)
    assert risk.quasi_identifiers == tuple(qis)
    frame = pq.read_table(report.out_path).to_pandas()
    # pycanon compares with ==, so dates and floats are compared as their text.
    frame = frame.astype({name: str for name in frame.columns})
    k = anonymity.k_anonymity(frame, qis)
    assert k >= policy.privacy.k_anonymity
    assert k == risk.smallest_class
    assert math.isclose(risk.max_prosecutor_risk, 1 / k)
    for sensitive in policy.privacy.sensitive_attributes:
        diversity = policy.privacy.l_diversity
        assert diversity is not None
        lowest = anonymity.l_diversity(frame, qis, [sensitive])
        assert lowest >= diversity.l
        assert lowest == risk.lowest_l[sensitive]
    classes = frame.groupby(qis).size()
    assert risk.classes == len(classes)
    assert math.isclose(risk.average_prosecutor_risk, len(classes) / len(frame))
    assert risk.unique_records == 0 and risk.records_below_k_share == 0.0
    assert risk.suppressed_share <= policy.privacy.risk_limits.max_suppressed_share
    assert risk.average_prosecutor_risk <= policy.privacy.risk_limits.max_average_risk


# ============================================================== lining up two tenants' views


def _tokens(policy: DatasetPolicy, people: pa.Array, key: bytes) -> list[str]:
    return masking.mask_column("person_id", people, policy.fields["person_id"], key=key).to_pylist()


def _year_step(policy: DatasetPolicy, path: Path) -> int:
    """Years per birth-date period in a view (1, 5, 10 or 20)."""
    meta = pq.read_schema(path).metadata or {}
    fields = pq.read_schema(path).names
    level = int(meta.get(b"shuyu.generalisation_level", b"0"))
    rule = generalisation_levels(policy, fields)[level].fields["birth_date"].masking
    return getattr(rule, "years", None) or 1


def _sort_attack(ours: pd.DataFrame, theirs: pd.DataFrame, by: list[str]) -> tuple[int, float]:
    """Sort both views by ``by`` (stably), pair rows of equal values by rank, and count the
    pairs that are the same person; also the count expected by chance."""
    ours = ours.sort_values(by, kind="stable").assign(rank=lambda f: f.groupby(by).cumcount())
    theirs = theirs.sort_values(by, kind="stable").assign(rank=lambda f: f.groupby(by).cumcount())
    paired = theirs.merge(ours, on=[*by, "rank"], suffixes=("_theirs", "_ours"))
    linked = int((paired["person_theirs"] == paired["person_ours"]).sum())
    # Chance: within a group, a random pair is the same person with probability
    # (people in both) / (|ours| * |theirs|); a person in both is in the same group.
    h = theirs.groupby(by).size()
    c = ours.groupby(by).size().reindex(h.index, fill_value=0)
    common = theirs[theirs["person"].isin(ours["person"])].groupby(by).size()
    common = common.reindex(h.index, fill_value=0)
    shared = c > 0
    expected = float((np.minimum(h, c)[shared] * common[shared] / (h[shared] * c[shared])).sum())
    return linked, expected


def _with_truth(
    policy: DatasetPolicy, raw_path: Path, view_path: Path, key: bytes, coarse: int
) -> pd.DataFrame:
    """A view with the true raw person of each row (``person``), as the attacker could
    never know it, and its birth date as a period of ``coarse`` years."""
    people = pq.read_table(raw_path, columns=["person_id"]).column("person_id")
    truth = dict(zip(_tokens(policy, people, key), people.to_pylist(), strict=True))
    frame = pq.read_table(view_path, columns=HUAXIN_FIELDS).to_pandas()
    frame["person"] = frame["person_id"].map(truth)
    frame["birth_period"] = pd.to_datetime(frame["birth_date"]).dt.year // coarse * coarse
    return frame


@pytest.fixture(scope="module")
def huaxin_grant(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """huaxin's grant of health_records built for huaxin, and the same grant built for
    kangning: the same rows, each tenant's own pseudonyms and order."""
    folder = tmp_path_factory.mktemp("same-grant")
    return {
        tenant: build_view(
            policies["health_records"],
            raw["health_records"],
            folder / f"{tenant}.parquet",
            key=key,
            fields=HUAXIN_FIELDS,
            row_filter=HUAXIN_FILTER,
            reference_date=BUILT_ON,
        ).out_path
        for tenant, key in (("huaxin", HUAXIN), ("kangning", KANGNING))
    }


@pytest.fixture(scope="module")
def two_tenants(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    views: dict[str, ViewReport],
    huaxin_grant: dict[str, Path],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """kangning's whole health view and huaxin's, lined up on the coarser of their two
    birth-date periods, as the attacker would."""
    policy = policies["health_records"]
    paths = (views["health_records"].out_path, huaxin_grant["huaxin"])
    coarse = max(_year_step(policy, path) for path in paths)
    return (
        _with_truth(policy, raw["health_records"], paths[0], KANGNING, coarse),
        _with_truth(policy, raw["health_records"], paths[1], HUAXIN, coarse),
    )


def test_two_tenants_views_do_not_line_up_by_position(
    policies: dict[str, DatasetPolicy],
    raw: dict[str, Path],
    huaxin_grant: dict[str, Path],
    two_tenants: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    policy, path = policies["health_records"], raw["health_records"]
    # The same grant for two tenants: the same rows, so in one order they would pair up.
    ours = _with_truth(policy, path, huaxin_grant["kangning"], KANGNING, 1)
    theirs = _with_truth(policy, path, huaxin_grant["huaxin"], HUAXIN, 1)
    assert len(ours) == len(theirs) > 10_000
    linked = int((ours["person"].to_numpy() == theirs["person"].to_numpy()).sum())
    # By chance a position holds the same person with probability 1/n: about one link.
    assert linked <= 10
    # Control: the two views hold exactly the same people, so any order they shared
    # (the raw order views were written in before) would link every one of them.
    assert sorted(ours["person"]) == sorted(theirs["person"])

    # kangning's whole view, cut to huaxin's districts, pairs up no better.
    whole, huaxins = two_tenants
    whole = whole[whole["district"].isin(HUAXIN_FILTER["district"])].reset_index(drop=True)
    n = min(len(whole), len(huaxins))
    linked = int((whole["person"][:n].to_numpy() == huaxins["person"][:n].to_numpy()).sum())
    assert linked <= 10


def test_two_tenants_views_do_not_line_up_by_sorting_shared_columns(
    two_tenants: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    ours, theirs = two_tenants
    by = ["sex", "birth_period", "district", "icd11_code"]
    linked, expected = _sort_attack(ours, theirs, by)
    assert linked <= expected + 4 * math.sqrt(expected) + 5
    # Control: rows in raw order break ties in the same order in both views, and the
    # same attack then links most of huaxin's people.
    control, _ = _sort_attack(ours.sort_values("person"), theirs.sort_values("person"), by)
    assert control > 0.5 * len(theirs)
    assert control > 5 * (expected + 5)
