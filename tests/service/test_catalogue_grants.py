"""The catalogue marks the signed-in merchant's grants: fields, expiry and ε left."""

from __future__ import annotations

import re

import pytest

from harness import Platform

pytestmark = [pytest.mark.hub]


def test_the_catalogue_shows_the_tenants_grants_and_no_one_elses(platform: Platform) -> None:
    balances = platform.service_get("alice", "api/dp/budget").json()["budgets"]
    assert balances, "the demo grants alice's tenant at least one dataset"
    granted = balances[0]
    page = platform.service_get("alice", "catalogue").text
    row = re.search(rf'<tr data-dataset="{granted["dataset"]}">(.*?)</tr>', page, re.S)
    assert row and "已授权 Granted" in row.group(1) and "北京时间" in row.group(1)
    assert f"{len(granted['fields'])} 个字段" in row.group(1)

    one = platform.service_get("alice", f"catalogue/{granted['dataset']}").text
    assert 'id="grant"' in one and one.count('class="granted">✓') == len(granted["fields"])

    for visitor in ("victor", "rita"):  # no tenant: no grant column at all
        assert "本租户授权" not in platform.service_get(visitor, "catalogue").text
