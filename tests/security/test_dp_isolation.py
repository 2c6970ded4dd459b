"""A merchant's kernel tries to single one person out with DP queries (issue 14).

From inside the sandbox, with the in-kernel client and the server's own token, the
attacker filters on the privacy unit, on a direct identifier, on the quasi-identifiers
an insurer knows (sex, birth date, district) and on an exact settlement amount. Every
attempt is refused by the platform service with a 403, audited, and costs no ε.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from harness import Platform

pytestmark = pytest.mark.hub

ATTACK = textwrap.dedent(
    """
    import json
    from shuyu import dp

    attempts = {
        "privacy unit": [dp.col("person_id") == "P-3f9a0c1d"],
        "identifier": [dp.col("id_card") == "510703198001011234"],
        "quasi-identifiers": [
            dp.col("sex") == "F",
            dp.col("district") == "涪城区",
            dp.col("birth_date") == "1980-03-12",
        ],
        "exact amount": [dp.col("settlement_amount") == 12345.67],
        "narrow band": [
            dp.col("settlement_amount") >= 12345.6,
            dp.col("settlement_amount") < 12345.7,
        ],
    }
    budget = lambda: float(
        dp.budget().set_index("dataset").loc["health_records", "remaining_epsilon"]
    )
    out = {"before": budget()}
    for name, conditions in attempts.items():
        q = dp.query("health_records", epsilon=0.1).filter(*conditions).agg(n=dp.count())
        try:
            q.run()
            out[name] = "answered"
        except dp.DpError as err:
            out[name] = [err.status, err.message]
    try:
        dp.query("health_records", epsilon=0.1).group_by("person_id").agg(n=dp.count()).run()
        out["group by unit"] = "answered"
    except dp.DpError as err:
        out["group by unit"] = [err.status, err.message]
    out["after"] = budget()
    print(json.dumps(out, ensure_ascii=False))
    """
)


def test_filters_that_single_out_one_person_are_refused_at_no_cost(platform: Platform) -> None:
    run = platform.run_code("alice", ATTACK)
    assert run.ok, run.error
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["after"] == out["before"]
    expected = {
        "privacy unit": "'person_id': it is the privacy unit",
        "identifier": "'id_card': it is a direct identifier",
        "quasi-identifiers": "'birth_date': the policy does not list it as filterable",
        "exact amount": "may only be compared with <, <=, > or >=",
        "narrow band": "may only be cut at multiples of 1000",
        "group by unit": "'person_id': it is the privacy unit",
    }
    for name, message in expected.items():
        status, text = out[name]
        assert status == 403 and message in text, (name, out[name])
    refusals = [
        e
        for e in platform.audit_events("dp.query", actor="alice")
        if e["outcome"] == "denied" and "may not filter or group by" in e["detail"]["reason"]
    ]
    assert len(refusals) >= 4 and all(e["detail"]["cost_epsilon"] == 0 for e in refusals)
