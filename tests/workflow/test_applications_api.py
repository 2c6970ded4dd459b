"""A scenario application over real HTTP: filed, checked, approved, views in the sandbox."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from harness import Platform, shuyu

pytestmark = pytest.mark.hub

SERVICE = "/services/shuyu"


def _body() -> dict:
    today = datetime.now(UTC).date()
    return {
        "scenario": "公交客流与就医可达性",
        "purpose": "评估公交线路对就医可达性的影响",
        "method": "掩码视图探索与差分隐私统计",
        "security_measures": "仅在沙箱内分析",
        "nature": "public_interest",
        "period_start": today.isoformat(),
        "period_end": (today + timedelta(days=90)).isoformat(),
        "datasets": [{"dataset": "bus_ridership", "epsilon": 3}],
    }


def test_an_approved_application_puts_its_views_in_the_sandbox(platform: Platform) -> None:
    alice, alice_xsrf = platform.service_session("alice")
    bad = alice.post(
        f"{platform.url}{SERVICE}/api/applications",
        json={**_body(), "datasets": [{"dataset": "bus_ridership", "fields": ["no_such"]}]},
        headers=alice_xsrf,
        timeout=30,
    )
    assert bad.status_code == 400
    assert bad.json()["message"] == "请求有误：bus_ridership has no field 'no_such'"
    filed = alice.post(
        f"{platform.url}{SERVICE}/api/applications", json=_body(), headers=alice_xsrf, timeout=30
    )
    assert filed.status_code == 201, filed.text
    app = filed.json()
    assert app["status"] == "compliance_review" and app["deadline"]

    bob, _ = platform.service_session("bob")
    hidden = bob.get(f"{platform.url}{SERVICE}/api/applications/{app['id']}", timeout=30)
    assert hidden.status_code == 404

    def decide(name: str, action: str, comment: str = "") -> dict:
        answer = platform.service_post(
            name, f"api/applications/{app['id']}/decision", {"action": action, "comment": comment}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert decide("rita", "compliance_approve")["status"] == "source_review"
    approved = decide("sam", "source_approve", "同意，限公益用途")
    assert approved["status"] == "approved" and len(approved["grant_ids"]) == 1
    assert (platform.home / "views" / "kangning" / "bus_ridership.parquet").is_file()

    probe = textwrap.dedent(
        """
        import json, shuyu
        from shuyu import dp
        out = {}
        try:
            out["rows"] = len(shuyu.views.read("bus_ridership"))
            budgets = dp.budget().set_index("dataset")
            out["dp"] = float(budgets.loc["bus_ridership", "remaining_epsilon"])
        except Exception as err:
            out["error"] = f"{type(err).__name__}: {err}"
        print(json.dumps(out, default=str))
        """
    )
    seen = json.loads(platform.run_code("alice", probe).stdout)
    assert seen.get("rows", 0) > 0 and seen.get("dp") == 3.0, seen

    revoked = shuyu(
        "grant", "revoke", str(approved["grant_ids"][0]), "--reason", "场景结束",
        env=platform.env,
    )  # fmt: skip
    assert "revoked" in revoked
    gone = json.loads(platform.run_code("alice", probe).stdout)
    assert "DataNotFound" in gone["error"]

    actions = [
        e["action"]
        for e in platform.audit_events("application.")
        if e["target"] == f"application:{app['id']}"
    ]
    assert actions == [
        "application.submit",
        "application.compliance_approve",
        "application.source_approve",
    ]


def test_the_application_pages_file_and_show_an_application(platform: Platform) -> None:
    alice, _ = platform.service_session("alice")
    form = alice.get(f"{platform.url}{SERVICE}/applications/new", timeout=30)
    assert form.status_code == 200 and 'name="dataset" value="bus_ridership"' in form.text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form.text)
    assert xsrf
    body = _body()
    created = alice.post(
        f"{platform.url}{SERVICE}/applications/new",
        data={
            **{k: v for k, v in body.items() if k != "datasets"},
            "dataset": ["health_records"],
            "fields:health_records": ["sex", "district"],
            "_xsrf": xsrf.group(1),
        },
        timeout=30,
    )
    assert created.status_code == 200 and "/applications/" in created.url
    assert "合规审查中" in created.text and "sex, district" in created.text
    listing = alice.get(f"{platform.url}{SERVICE}/applications", timeout=30)
    assert body["scenario"] in listing.text
    rita, _ = platform.service_session("rita")
    page = rita.get(created.url, timeout=30)
    assert 'value="compliance_approve"' in page.text and 'value="extend"' in page.text
