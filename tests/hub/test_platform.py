"""A real hub, proxy and platform service: login, spawn, catalogue, audit API, landing.

Everything goes over real HTTP through configurable-http-proxy, as a browser would.
"""

from __future__ import annotations

import pytest
import requests

from harness import Platform, shuyu
from kernel import Kernel
from shuyu_platform.core import checkpoints
from shuyu_platform.demo import DEMO_ACCOUNTS

pytestmark = pytest.mark.hub

SERVICE = "/services/shuyu"


def test_merchant_logs_in_starts_server_and_reaches_it_through_the_proxy(
    platform: Platform,
) -> None:
    session = platform.login("alice")
    server = platform.start_server(session, "alice")
    assert server["url"] == "/user/alice/"
    # An API call without the server's own OAuth cookie is refused ...
    anonymous = session.get(f"{platform.url}/user/alice/api/status", timeout=30)
    assert anonymous.status_code == 403
    # ... a page visit completes the OAuth dance with the hub, then the API answers.
    lab = session.get(f"{platform.url}/user/alice/lab", timeout=30)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    response = session.get(f"{platform.url}/user/alice/api/status", timeout=30)
    assert response.status_code == 200, response.text
    assert "kernels" in response.json()
    starts = platform.audit_events("server.start", actor="alice")
    assert starts and starts[-1]["outcome"] == "ok" and starts[-1]["tenant"] == "kangning"
    assert starts[-1]["detail"]["work_dir"].endswith("/work/kangning/alice")
    kernel = Kernel(platform.url, session, "alice")
    try:
        run = kernel.run("import shuyu\nprint(sorted(shuyu.catalogue()['dataset']))")
        assert run.ok, run.error
        assert "health_records" in run.stdout and "social_insurance" in run.stdout
        fields = kernel.run(
            "print(shuyu.dataset('health_records').set_index('name')['grade']['id_card'])"
        )
        assert fields.stdout.strip() == "L4", fields
        missing = kernel.run("shuyu.dataset('nope')")
        assert missing.error and missing.error["ename"] == "PlatformError"
        assert "No dataset named 'nope'" in missing.error["evalue"]
    finally:
        kernel.close()
    platform.stop_server(session, "alice")
    assert platform.audit_events("server.stop", actor="alice")


def test_logins_are_audited_including_failures(platform: Platform) -> None:
    platform.login("bob")
    bad = requests.Session()
    page = bad.get(f"{platform.url}/hub/login", timeout=30)
    xsrf = page.text.split('name="_xsrf" value="')[1].split('"')[0]
    refused = bad.post(
        f"{platform.url}/hub/login",
        data={"username": "bob", "password": "not-his-password", "_xsrf": xsrf},
        allow_redirects=False,
        timeout=30,
    )
    assert refused.status_code == 403
    logins = platform.audit_events("auth.login", actor="bob")
    outcomes = [(e["outcome"], e["detail"].get("reason")) for e in logins]
    assert ("ok", None) in outcomes and ("denied", "wrong password") in outcomes
    assert all("not-his-password" not in str(e) for e in logins)


def test_non_merchants_get_no_server(platform: Platform) -> None:
    session = platform.login("rita")
    response = platform.hub_api(session, "POST", "users/rita/server")
    assert response.status_code == 403


def test_service_refuses_anonymous_requests(platform: Platform) -> None:
    api = requests.get(f"{platform.url}{SERVICE}/api/catalogue", timeout=30)
    assert api.status_code == 401
    assert "Authorization: token" in api.json()["message"]
    page = requests.get(f"{platform.url}{SERVICE}/catalogue", allow_redirects=False, timeout=30)
    assert page.status_code == 302
    assert "/hub/api/oauth2/authorize" in page.headers["Location"]
    forged = requests.get(
        f"{platform.url}{SERVICE}/api/catalogue",
        headers={"Authorization": "token not-a-real-token"},
        timeout=30,
    )
    assert forged.status_code == 401


def test_catalogue_lists_every_dataset_with_fields_and_grades(platform: Platform) -> None:
    session = platform.login("bob")
    page = session.get(f"{platform.url}{SERVICE}/catalogue", timeout=30)  # completes OAuth
    assert page.status_code == 200, page.text
    assert "居民健康档案" in page.text and "市卫生健康委员会" in page.text
    body = session.get(f"{platform.url}{SERVICE}/api/catalogue", timeout=30).json()
    names = {d["dataset"] for d in body["datasets"]}
    assert names == {"health_records", "enterprise_credit", "bus_ridership", "social_insurance"}
    health = next(d for d in body["datasets"] if d["dataset"] == "health_records")
    for key in ("title", "department", "summary", "update_frequency", "provision_modes"):
        assert health[key], key
    fields = {f["name"]: f for f in health["fields"]}
    assert fields["id_card"]["grade"] == "L4" and fields["id_card"]["visible"] is False
    assert fields["settlement_amount"]["grade"] in {"L1", "L2"}
    # The attacker model its views are protected against, and their worst risk.
    model = health["attacker_model"]
    assert "settlement_amount" in model["quasi_identifiers"]
    assert model["sensitive_attributes"] == ["icd11_code"] and model["k_anonymity"] == 5
    risk = health["view_risk"]
    assert risk["views"] == 0 or risk["max_prosecutor_risk"] <= 1 / model["k_anonymity"]
    shown = session.get(f"{platform.url}{SERVICE}/catalogue/health_records", timeout=30)
    assert 'id="attacker-model"' in shown.text and "icd11_code" in shown.text
    one = session.get(f"{platform.url}{SERVICE}/api/catalogue/bus_ridership", timeout=30)
    assert one.json()["dataset"] == "bus_ridership"
    missing = session.get(f"{platform.url}{SERVICE}/api/catalogue/no_such_data", timeout=30)
    assert missing.status_code == 404
    assert "No dataset named 'no_such_data'" in missing.json()["message"]
    reads = platform.audit_events("catalogue.read", actor="bob")
    assert {e["target"] for e in reads} >= {"*", "bus_ridership", "no_such_data"} - {"no_such_data"}


def test_catalogue_with_a_hub_api_token(platform: Platform) -> None:
    session = platform.login("carol")
    created = platform.hub_api(
        session, "POST", "users/carol/tokens", json={"note": "catalogue test"}
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    response = requests.get(
        f"{platform.url}{SERVICE}/api/catalogue",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["datasets"]) == 4


def test_audit_api_is_for_auditors_only(platform: Platform) -> None:
    merchant = platform.login("alice")
    merchant.get(f"{platform.url}{SERVICE}/", timeout=30)
    refused = merchant.get(f"{platform.url}{SERVICE}/api/audit/events", timeout=30)
    assert refused.status_code == 403
    assert "auditor role" in refused.json()["message"]
    assert platform.audit_events("access.denied", actor="alice")

    auditor = platform.login("audrey")
    page = auditor.get(f"{platform.url}{SERVICE}/audit", timeout=30)
    assert page.status_code == 200 and "OK:" in page.text
    body = auditor.get(f"{platform.url}{SERVICE}/api/audit/events?limit=1000", timeout=30).json()
    actions = {e["action"] for e in body["events"]}
    assert {"policy.load", "auth.login", "access.denied"} <= actions
    verify = auditor.get(f"{platform.url}{SERVICE}/api/audit/verify", timeout=30).json()
    assert verify["ok"] is True and verify["checked"] >= len(body["events"])
    bad = auditor.get(f"{platform.url}{SERVICE}/api/audit/events?limit=0", timeout=30)
    assert bad.status_code == 400
    assert platform.audit_events("audit.read", actor="audrey")


def test_the_service_signs_checkpoints_and_the_register_publishes_them(
    platform: Platform,
) -> None:
    """The service anchors the chain at start; anyone can fetch and check the checkpoints."""
    register = requests.get(f"{platform.url}{SERVICE}/api/products", timeout=30)
    assert register.status_code == 200
    anchor = register.json()["audit_anchor"]
    key = checkpoints.parse_public_key(anchor["public_key"])
    every = requests.get(f"{platform.url}{SERVICE}/api/products/checkpoints", timeout=30).json()
    assert every["count"] >= 1 and anchor["checkpoints"][0] == every["checkpoints"][0]
    signed = [checkpoints.Checkpoint(**c) for c in every["checkpoints"]]
    assert all(c.signed_by(key) for c in signed)
    page = requests.get(f"{platform.url}{SERVICE}/products", timeout=30)
    assert anchor["public_key"] in page.text and signed[0].hash in page.text

    # An auditor's verification holds the chain to them.
    shuyu("audit", "checkpoint", env=platform.env)
    auditor = platform.login("audrey")
    auditor.get(f"{platform.url}{SERVICE}/", timeout=30)
    verify = auditor.get(f"{platform.url}{SERVICE}/api/audit/verify", timeout=30).json()
    assert verify["ok"] is True and verify["anchored"] >= 1, verify
    # So does the command, with the key exactly as the register published it.
    out = shuyu("audit", "verify", "--public-key", anchor["public_key"], env=platform.env)
    assert out.startswith("OK:") and "signed checkpoints" in out


@pytest.mark.parametrize(
    "account", [a for a in DEMO_ACCOUNTS if a.role != "merchant"], ids=lambda a: a.role
)
def test_each_role_lands_where_it_should(platform: Platform, account) -> None:
    session = platform.login(account.name, account.password)
    first = session.get(f"{platform.url}/hub/", allow_redirects=False, timeout=30)
    expected = {
        "reviewer": "/services/shuyu/",
        "source-reviewer": "/services/shuyu/",
        "admin": "/hub/admin",
        "auditor": "/services/shuyu/audit",
        "visitor": "/services/shuyu/catalogue",
    }[account.role]
    assert first.status_code == 302 and first.headers["Location"] == expected
    final = session.get(f"{platform.url}{expected}", timeout=30)
    assert final.status_code == 200, final.text


def test_merchant_lands_in_their_sandbox(platform: Platform) -> None:
    session = platform.login("bob")
    first = session.get(f"{platform.url}/hub/", allow_redirects=False, timeout=30)
    assert first.headers["Location"] == "/hub/spawn/bob"


def test_an_account_added_while_running_gets_its_role_at_first_login(platform: Platform) -> None:
    shuyu(
        "accounts",
        "add",
        "dora",
        "--role",
        "auditor",
        "--real-name",
        "钱多",
        "--password-stdin",
        env=platform.env,
        input="dora-long-password\n",
    )
    session = platform.login("dora", "dora-long-password")
    first = session.get(f"{platform.url}/hub/", allow_redirects=False, timeout=30)
    assert first.headers["Location"] == "/services/shuyu/audit"
    session.get(f"{platform.url}{SERVICE}/", timeout=30)
    events = session.get(f"{platform.url}{SERVICE}/api/audit/events", timeout=30)
    assert events.status_code == 200, events.text
