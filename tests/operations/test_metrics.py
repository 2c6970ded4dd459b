"""The service's Prometheus endpoint, scraped over HTTP and parsed with prometheus-client's
own parser: request counts per route, DP ε per dataset, exports, reviews, sandboxes, the
audit chain."""

from __future__ import annotations

import json
import re

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness import REPO, Platform
from served import serving
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import OutputVolume
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import load_policies
from shuyu_platform.dp import budget
from shuyu_platform.operations.metrics import PlatformMetrics, metrics_token


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(base: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One authorised scrape, parsed."""
    response = requests.get(
        f"{base}metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.text)


def test_state_metrics_follow_the_database_and_the_audit_chain(settings: Shuyu) -> None:
    policy = load_policies(REPO / "policies")["health_records"]
    with db.session_scope(settings.db_url) as session:
        grant = grants.issue(
            session, policy, tenant="kangning", fields=None, actor="op", budget_epsilon=1.0
        )
    for eps in (0.25, 0.125):
        release_id = budget.debit(
            settings.db_url, grant, policy=policy, username="alice", kind="query",
            cost_micro=round(eps * 1e6), request={"epsilon": eps},
        )  # fmt: skip
        budget.release(settings.db_url, release_id, {"n": 1}, username="alice")
    audit.append(
        settings.db_url, actor="alice", action="server.start", target="", tenant="kangning"
    )
    audit.append(settings.db_url, actor="bob", action="server.start", target="", tenant="kangning")
    audit.append(settings.db_url, actor="bob", action="server.stop", target="", tenant="kangning")
    with db.session_scope(settings.db_url) as session:  # what the egress gateway metered
        for day, kind, count in (("2026-11-29", "http", 1000), ("2026-11-30", "ws:stream", 234)):
            session.add(
                OutputVolume(username="alice", day=day, kind=kind, tenant="kangning", bytes=count)
            )

    with serving(settings) as base:
        assert requests.get(f"{base}metrics", timeout=30).status_code == 401
        wrong = requests.get(f"{base}metrics", headers={"Authorization": "Bearer 00"}, timeout=30)
        assert wrong.status_code == 401 and "shuyu_" not in wrong.text
        requests.get(f"{base}api/catalogue", timeout=30)
        found = scrape(base, metrics_token(settings))

    assert found[("shuyu_dp_epsilon_spent_total", (("dataset", "health_records"),))] == 0.375
    key = (("dataset", "health_records"), ("kind", "query"), ("status", "released"))
    assert found[("shuyu_dp_releases_total", key)] == 2
    assert found[("shuyu_sandboxes_running", (("tenant", "kangning"),))] == 1
    with db.session_scope(settings.db_url) as session:
        length = audit.head(session)[0]
    assert found[("shuyu_audit_records", ())] == length
    assert found[("shuyu_reviews_waiting", (("queue", "egress"),))] == 0
    counted = [k for k in found if k[0] == "shuyu_http_requests_total"]
    assert any(("route", "CatalogueApi") in k[1] and ("status", "401") in k[1] for k in counted)
    assert ("shuyu_http_request_duration_seconds_count", (("route", "CatalogueApi"),)) in found
    assert found[("shuyu_browser_bytes_served_total", (("tenant", "kangning"),))] == 1234


@pytest.mark.hub
def test_metrics_scraped_through_the_proxy_report_the_last_verification(
    platform: Platform,
) -> None:
    platform.service_get("audrey", "api/audit/verify")  # fills the last-verification gauge
    token = (platform.home / "hub" / "metrics-token").read_bytes().hex()
    found = scrape(f"{platform.url}/services/shuyu/", token)
    assert found[("shuyu_audit_verify_ok", ())] == 1
    assert found[("shuyu_audit_verify_timestamp_seconds", ())] > 0
    assert found[("shuyu_audit_records", ())] > 0


def test_the_grafana_dashboard_and_scrape_config_use_what_the_service_exports(
    settings: Shuyu,
) -> None:
    board = json.loads((REPO / "images" / "grafana" / "shuyu-dashboard.json").read_text())
    queried = {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bshuyu_[a-z0-9_]+", target["expr"])
    }
    metrics = PlatformMetrics(settings)
    metrics.verified(True)
    audit.append(settings.db_url, actor="a", action="server.start", tenant="kangning")
    exported = set()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        exported |= {family.name + end for end in suffixes.get(family.type, [""])}
    assert queried and queried <= exported, queried - exported
    scrape = yaml.safe_load((REPO / "images" / "prometheus" / "scrape.yaml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "shuyu-service")
    assert job["metrics_path"] == "/services/shuyu/metrics"
    assert job["authorization"]["type"] == "Bearer"
