"""Disclosure-check thresholds come from the dataset policies of the tenant's grants."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness import REPO
from shuyu_platform.access import grants
from shuyu_platform.core import db
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import Disclosure, PolicyError, load_policies
from shuyu_platform.egress import disclosure
from shuyu_platform.service.egress_api import check_context

POLICIES = load_policies(REPO / "policies")


def _grant(settings: Shuyu, tenant: str, dataset: str) -> None:
    with db.session_scope(settings.db_url) as session:
        grants.issue(session, POLICIES[dataset], tenant=tenant, fields=None, actor="op")


def test_the_strictest_value_of_each_threshold_wins() -> None:
    merged = Disclosure.strictest(
        [
            Disclosure(min_cell_count=5, dominance_k=0.9, max_rows=800),
            Disclosure(min_cell_count=12, dominance_k=0.8, p_percent=0.2),
            Disclosure(),
        ]
    )
    assert merged == {"min_cell_count": 12, "dominance_k": 0.8, "p_percent": 0.2, "max_rows": 800}
    assert Disclosure.strictest([]) == {}


def test_a_tenant_is_checked_with_the_thresholds_of_its_granted_datasets(
    settings: Shuyu,
) -> None:
    _grant(settings, "kangning", "health_records")
    kangning = check_context(settings, POLICIES, "kangning").rules
    assert kangning.min_cell_count == 10 and kangning.dominance_k == disclosure.Rules().dominance_k

    _grant(settings, "huaxin", "enterprise_credit")
    huaxin = check_context(settings, POLICIES, "huaxin").rules
    assert huaxin.dominance_k == 0.8 and huaxin.p_percent == 0.15


def test_a_tenant_without_grants_gets_the_strictest_of_every_policy(settings: Shuyu) -> None:
    rules = check_context(settings, POLICIES, "nobody").rules
    assert rules.dominance_k == 0.8 and rules.p_percent == 0.15 and rules.min_cell_count == 10


def test_a_stricter_threshold_fails_what_the_default_passes(settings: Shuyu) -> None:
    # Top two firms hold 82% of the cell: under the default k = 0.85, over huaxin's 0.80.
    art = disclosure.Artefact(
        "t",
        "table",
        table=pd.DataFrame({"amount_sum": [1000.0]}, index=["制造业"]),
        cell_stats={
            "column": "amount_sum",
            "cells": [{"row": "制造业", "total": 1000.0, "top": [500.0, 320.0], "count": 30}],
        },
    )
    _grant(settings, "huaxin", "enterprise_credit")
    default = disclosure.run_checks([art], disclosure.Context())
    strict = disclosure.run_checks([art], check_context(settings, POLICIES, "huaxin"))
    assert not [f for f in default.findings if f.check == "dominance"]
    assert [f.severity for f in strict.findings if f.check == "dominance"] == ["fail"]


def test_a_malformed_disclosure_section_is_refused_with_its_line(tmp_path: Path) -> None:
    text = (REPO / "policies" / "health_records.yaml").read_text(encoding="utf-8")
    text = text.replace("  min_cell_count: 10", "  min_cell_count: 0\n  dominance: 2")
    (tmp_path / "health_records.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policies(tmp_path)
    message = str(caught.value)
    assert "disclosure.min_cell_count: Input should be greater than or equal to 1" in message
    assert "disclosure.dominance: Extra inputs are not permitted" in message
