"""Metering and fees: a scripted month of use gives the expected statement, priced by the
validated pricing policy, capped, free for public-interest use, attributed to the source
departments; CSV with a byte-order mark."""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from harness import BIN, REPO, Platform, cli_env, run_in_thread
from shuyu_platform.access import grants
from shuyu_platform.core import audit, db
from shuyu_platform.core.db import stamp
from shuyu_platform.core.models import Application
from shuyu_platform.core.settings import Shuyu
from shuyu_platform.data.policy import load_policies
from shuyu_platform.dp import budget
from shuyu_platform.operations import fees

POLICIES = load_policies(REPO / "policies")
MONTH = datetime.now(UTC).strftime("%Y-%m")


def scripted_month(settings: Shuyu) -> None:
    """kangning's month: two sandbox sessions (2 CPU-hours, 10 GB-hours in all), three DP
    queries (0.25 + 0.125 ε of health_records, 0.125 ε of social_insurance), one export,
    one sealed job (started twice: run again after a restart) and one approved import."""
    issued = {}
    with db.session_scope(settings.db_url) as session:
        for name in ("health_records", "social_insurance"):
            issued[name] = grants.issue(
                session, POLICIES[name], tenant="kangning", fields=None, actor="op",
                budget_epsilon=1.0, scenario="客流分析",
            )  # fmt: skip
    for name, eps in (
        ("health_records", 0.25),
        ("health_records", 0.125),
        ("social_insurance", 0.125),
    ):
        release_id = budget.debit(
            settings.db_url, issued[name], policy=POLICIES[name], username="alice", kind="query",
            cost_micro=round(eps * 1e6), request={"epsilon": eps},
        )  # fmt: skip
        budget.release(settings.db_url, release_id, {"n": 1}, username="alice")
    for cpu, memory in ((3000.0, 4.0), (4200.0, 6.0)):
        audit.append(
            settings.db_url, actor="alice", actor_kind="system", action="sandbox.usage",
            target="kangning/alice", tenant="kangning",
            detail={"cpu_seconds": cpu, "memory_gb_hours": memory, "wall_seconds": 3600},
        )  # fmt: skip
    audit.append(
        settings.db_url, actor="platform", actor_kind="system", action="egress.released",
        target="egress:" + "b" * 32, tenant="kangning", detail={"datasets": ["health_records"]},
    )  # fmt: skip
    for attempt in (1, 2):
        audit.append(
            settings.db_url, actor="platform", actor_kind="system", action="job.start",
            target="job:" + "c" * 32, tenant="kangning", detail={"attempt": attempt},
        )  # fmt: skip
    for tenant in ("kangning", "huaxin"):
        audit.append(
            settings.db_url, actor="rita", action="import.approve",
            target=f"import:{tenant}", tenant=tenant, detail={"name": "customers"},
        )  # fmt: skip
    # another tenant's use is not kangning's
    audit.append(
        settings.db_url, actor="bob", actor_kind="system", action="sandbox.usage",
        target="huaxin/bob", tenant="huaxin", detail={"cpu_seconds": 99999, "memory_gb_hours": 99},
    )  # fmt: skip


def _amounts(statement: fees.Statement) -> dict[str, Decimal]:
    return {line.item: line.amount for line in statement.lines}


def test_a_scripted_month_gives_the_expected_statement(settings: Shuyu) -> None:
    scripted_month(settings)
    statement = fees.statement_for(settings, "kangning", MONTH, POLICIES)
    used = statement.usage
    assert (used.cpu_seconds, used.memory_gb_hours, used.sandbox_sessions) == (7200.0, 10.0, 2)
    assert (used.dp_queries, used.dp_epsilon, used.exports_released) == (3, 0.5, 1)
    assert used.not_metered == []
    assert (used.sealed_jobs, used.imports) == (1, 1)
    assert statement.nature == "commercial" and not statement.free  # no application on record
    assert _amounts(statement) == {
        "cpu_hours": Decimal("1.20"),  # 2 h × 0.60
        "memory_gb_hours": Decimal("0.80"),  # 10 × 0.08
        "storage_gb": Decimal("0.00"),  # no disk image made here
        "dp_queries": Decimal("6.00"),  # 3 × 2.00
        "dp_epsilon": Decimal("50.00"),  # 0.5 × 100
        "exports_released": Decimal("50.00"),
        "sealed_jobs": Decimal("20.00"),
        "imports": Decimal("30.00"),
    }
    assert statement.total == Decimal("158.00") and not statement.capped
    # DP charges go to the queried datasets' departments, the rest in equal halves
    assert statement.by_department == {
        "市人力资源和社会保障局": Decimal("65.50"),  # 1.00 + 2.00 + 12.50 + 50.00 / 2
        "市卫生健康委员会": Decimal("92.50"),  # 1.00 + 4.00 + 37.50 + 100.00 / 2
    }
    assert sum(statement.by_department.values()) == statement.total


def test_public_interest_use_is_free(settings: Shuyu) -> None:
    scripted_month(settings)
    now = stamp()
    with db.session_scope(settings.db_url) as session:
        session.add(
            Application(
                id="c" * 32, tenant="kangning", applicant="alice", scenario="客流分析",
                purpose="p", method="m", security_measures="s", nature="public_interest",
                period_start="2026-01-01", period_end="2026-12-31", datasets="[]",
                status="approved", deadline=now, created_at=now, updated_at=now,
            )
        )  # fmt: skip
    statement = fees.statement_for(settings, "kangning", MONTH, POLICIES)
    assert statement.free and statement.total == Decimal("0.00")
    assert statement.usage.dp_queries == 3  # still metered
    assert any("free" in note for note in statement.notes)


def test_caps_limit_an_item_and_the_month(settings: Shuyu, tmp_path: Path) -> None:
    scripted_month(settings)
    pricing = (REPO / "policies" / "operations" / "pricing.yaml").read_text()
    capped = pricing.replace("dp_epsilon: 2000.00", "dp_epsilon: 20.00").replace(
        "monthly_cap: 20000.00", "monthly_cap: 60.00"
    )
    (tmp_path / "pricing.yaml").write_text(capped)
    settings.pricing_file = str(tmp_path / "pricing.yaml")
    statement = fees.statement_for(settings, "kangning", MONTH, POLICIES)
    line = next(li for li in statement.lines if li.item == "dp_epsilon")
    assert line.capped and line.amount == Decimal("20.00")
    assert statement.subtotal == Decimal("128.00") and statement.total == Decimal("60.00")
    assert statement.capped and sum(statement.by_department.values()) == Decimal("60.00")


def test_the_csv_has_a_bom_and_every_line(settings: Shuyu) -> None:
    scripted_month(settings)
    data = fees.statement_csv(fees.statement_for(settings, "kangning", MONTH, POLICIES))
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["租户 tenant", "kangning", "月份 month", MONTH]
    items = {r[0]: r for r in rows[3:]}
    assert items["dp_epsilon"][5] == "50.00" and items["total"][5] == "158.00"
    assert items["department"][1] in {"市人力资源和社会保障局", "市卫生健康委员会"}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("currency: CNY", "currency: yuan"), "currency: String should match pattern"),
        (("dp_queries: 2.00", "dp_queries: -2"), "prices.dp_queries: Input should be greater"),
        (("  imports: 30.00", "  lunch: 30.00"), "prices.lunch.[key]: Input should be"),
        (("unknown_nature: commercial", "unknown_nature: charity"), "unknown_nature: Input"),
    ],
)
def test_an_invalid_pricing_policy_is_refused_saying_where(
    tmp_path: Path, change: tuple[str, str], says: str
) -> None:
    text = (REPO / "policies" / "operations" / "pricing.yaml").read_text()
    assert change[0] in text
    (tmp_path / "pricing.yaml").write_text(text.replace(*change))
    with pytest.raises(fees.PricingError) as refused:
        fees.load_pricing(tmp_path / "pricing.yaml")
    assert says in str(refused.value)


@pytest.mark.browser
def test_the_printable_statement_renders_in_chromium_and_prints_to_pdf(
    settings: Shuyu, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    scripted_month(settings)
    out = tmp_path / "statement"
    env = cli_env(settings)
    subprocess.run(
        [str(BIN / "shuyu"), "fees", "statement", "--tenant", "kangning", "--month", MONTH,
         "--csv", f"{out}.csv", "--html", f"{out}.html", "--pdf", f"{out}.pdf"],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    assert Path(f"{out}.pdf").read_bytes().startswith(b"%PDF-")
    assert Path(f"{out}.csv").read_bytes().startswith(b"\xef\xbb\xbf")

    def render() -> None:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 900})
                page.goto(Path(f"{out}.html").as_uri())
                assert page.locator("#total").inner_text() == "158.00"
                assert page.locator("#departments tbody tr").count() == 2
                assert page.locator('tr[data-item="dp_epsilon"] td').nth(4).inner_text() == "50.00"
                page.screenshot(path=str(tmp_path / "statement.png"), full_page=True)
            finally:
                browser.close()

    run_in_thread(render)


@pytest.mark.hub
def test_a_merchant_reads_only_its_own_tenants_statement(platform: Platform) -> None:
    own = platform.service_get("alice", f"api/fees/statement?month={MONTH}")
    assert own.status_code == 200 and own.json()["tenant"] == "kangning"
    other = platform.service_get("alice", f"api/fees/statement?tenant=huaxin&month={MONTH}")
    assert other.status_code == 403 and "kangning" in other.json()["message"]
    assert platform.service_get("victor", "api/fees/statement?tenant=huaxin").status_code == 403
    bad = platform.service_get("ada", "api/fees/statement?tenant=huaxin&month=2026-13")
    assert bad.status_code == 400 and "month" in bad.json()["message"]
    csv_answer = platform.service_get("ada", f"api/fees/statement.csv?tenant=huaxin&month={MONTH}")
    assert csv_answer.status_code == 200 and csv_answer.content.startswith(b"\xef\xbb\xbf")
    overview = platform.service_get("ada", f"fees?month={MONTH}")
    assert overview.status_code == 200 and "kangning" in overview.text
    assert platform.audit_events("fees.statement", actor="ada")
