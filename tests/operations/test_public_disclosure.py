"""Public disclosure and the annual report: every figure from the database and the audit
chain, reproducible with one command, rendered in Debian's chromium (Playwright), and
printed to PDF by chromium."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from harness import BIN, REPO, cli_env, run_in_thread
from served import serving
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.core.db import stamp
from shuyu_platform.core.models import Application, ApplicationDecision
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import load_policies
from shuyu_platform.operations import disclosure, emergency

YEAR = datetime.now(UTC).year
POLICIES = load_policies(REPO / "policies")


def scripted_year(settings: Shuyu) -> None:
    """Three applications decided (approved after 2 days, deemed approved, rejected), one
    DP query, one export, a suspension, an incident and a drill."""
    now = datetime.now(UTC)
    with db.session_scope(settings.db_url) as session:
        for number, (status, action, days) in enumerate(
            [("approved", "source_approve", 2), ("approved", "deem_approve", 4),
             ("rejected", "reject", 1)]
        ):  # fmt: skip
            created = stamp(now.replace(day=1, hour=0, minute=0))
            decided = stamp(now.replace(day=1 + days, hour=0, minute=0))
            session.add(
                Application(
                    id=f"{number:032d}", tenant="kangning", applicant="alice", scenario="s",
                    purpose="p", method="m", security_measures="s", nature="commercial",
                    period_start="2026-01-01", period_end="2026-12-31", datasets="[]",
                    status=status, deadline=decided, created_at=created, updated_at=decided,
                )
            )  # fmt: skip
            session.flush()
            session.add(
                ApplicationDecision(
                    application_id=f"{number:032d}", actor="sam", action=action,
                    from_status="source_review", to_status=status, created_at=decided,
                )
            )  # fmt: skip
        grant = grants.issue(
            session, POLICIES["health_records"], tenant="kangning", fields=None, actor="op",
            budget_epsilon=1.0,
        )  # fmt: skip
    from shuyu_platform.dp import budget

    release = budget.debit(
        settings.db_url, grant, policy=POLICIES["health_records"], username="alice",
        kind="query", cost_micro=100_000, request={},
    )  # fmt: skip
    budget.release(settings.db_url, release, {"n": 1}, username="alice")
    audit.append(settings.db_url, actor="platform", action="egress.released", tenant="kangning")
    emergency.start(settings, "tenant", "kangning", reason="演练 test", actor="op")
    emergency.drill(settings, "dataset", "bus_ridership", actor="op")


def test_every_figure_comes_from_the_database_and_the_chain(settings: Shuyu) -> None:
    scripted_year(settings)
    figures = disclosure.year_figures(settings, YEAR)
    totals = figures["totals"]
    assert totals["applications_approved"] == 1 and totals["applications_deemed_approved"] == 1
    assert totals["applications_rejected"] == 1 and totals["median_decision_days"] == 2.0
    assert (totals["dp_queries"], totals["dp_epsilon"], totals["exports_released"]) == (1, 0.1, 1)
    assert (totals["suspensions"], totals["incidents"], totals["drills"]) == (1, 1, 1)
    assert figures["platform"]["datasets_offered"] == 4
    assert figures["platform"]["tenants_suspended"] == 1 and figures["platform"]["audit_verified"]
    month = datetime.now(UTC).strftime("%Y-%m")
    assert figures["months"][month]["dp_queries"] == 1
    # one command reproduces the same figures
    env = cli_env(settings)
    printed = subprocess.run(
        [str(BIN / "shuyu"), "report", "figures", "--year", str(YEAR)],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    again = json.loads(printed)
    assert again["totals"] == totals and again["months"] == figures["months"]


@pytest.mark.browser
def test_the_public_page_and_the_report_render_in_chromium(settings: Shuyu, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    scripted_year(settings)
    with serving(settings) as base:

        def render() -> None:
            with sync_playwright() as p:
                page_answer = requests.get(f"{base}disclosure", timeout=120)
                assert page_answer.status_code == 200  # public: no sign-in
                assert "img-src 'self' data:" in page_answer.headers["Content-Security-Policy"]
                browser = p.chromium.launch(
                    executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                )
                try:
                    page = browser.new_page(viewport={"width": 1200, "height": 900})
                    errors: list[str] = []  # the bare service has no favicon; the hub serves it
                    page.on(
                        "response",
                        lambda r: (
                            errors.append(r.url)
                            if r.status >= 400 and "favicon" not in r.url
                            else None
                        ),
                    )
                    page.goto(f"{base}disclosure")
                    assert page.locator("#datasets-offered").inner_text() == "4"
                    row = page.locator('tr[data-figure="applications_deemed_approved"] td').nth(1)
                    assert row.inner_text() == "1"
                    for name in ("applications", "use", "security"):
                        width = page.eval_on_selector(f"#chart-{name}", "img => img.naturalWidth")
                        assert width > 300, name
                    page.screenshot(path=str(tmp_path / "disclosure.png"), full_page=True)
                    page.goto(f"{base}disclosure/report?year={YEAR}")
                    assert f"数域平台{YEAR}年度运营报告" in page.locator("h1").inner_text()
                    # the incident and the drill
                    assert page.locator("#emergencies tbody tr").count() == 2
                    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
                    assert not errors, errors
                finally:
                    browser.close()

        run_in_thread(render)


@pytest.mark.browser
def test_the_annual_report_is_printed_to_pdf_by_chromium(settings: Shuyu, tmp_path: Path) -> None:
    scripted_year(settings)
    env = cli_env(settings)
    out = tmp_path / "report"
    subprocess.run(
        [str(BIN / "shuyu"), "report", "annual", "--year", str(YEAR), "--out", str(out)],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    html = (out / f"shuyu-annual-report-{YEAR}.html").read_text("utf-8")
    assert "<style>" in html and "data:image/svg+xml;base64," in html  # stands alone
    pdf = (out / f"shuyu-annual-report-{YEAR}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") >= 2
