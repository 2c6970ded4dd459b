"""Operations pages and APIs: alerts (R15) and fees (R25).

``GET alerts`` and ``GET api/alerts`` list the alerts raised by the rules of
:mod:`shuyu_platform.operations.alerts` for administrators and auditors, each with links
to the audit records behind it. ``GET fees`` is a merchant's monthly statement, or for
administrators every tenant's and the attribution to source departments;
``fees/statement`` is the printable statement, ``api/fees/statement(.csv)`` its data.
Every read of these is audited. ``GET disclosure`` (public, no sign-in) shows the
platform's operation in figures (R22, R26), from the snapshot the service refreshes on a
schedule; ``GET disclosure/report?year=`` is the annual operation report.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from tornado import web

from ..core.roles import AUDIT_READ, TENANTS_MANAGE
from ..core.settings import Shuyu
from ..operations import alerts, disclosure, emergency, fees
from .base import ApiHandler, BaseHandler
from .request_models import ReportQuery, StatementQuery

HERE = Path(__file__).parent
#: Debian's chromium, which prints the annual report to PDF (no downloaded browser).
CHROMIUM = "/usr/bin/chromium"


def require_operator(handler: BaseHandler, what: str) -> None:
    """Refuse (403, audited) anyone but administrators and auditors."""
    if not handler.has_scope(TENANTS_MANAGE):
        handler.require_scope(AUDIT_READ, what, "administrator or auditor")


class AlertsApi(ApiHandler):
    """``GET api/alerts``: the newest alerts, newest first."""

    def get(self) -> None:
        require_operator(self, "Reading alerts")
        raised = alerts.recent(self.shuyu)
        self.audit("alerts.read", "alerts", detail={"count": len(raised)})
        self.write_json({"alerts": raised})


class AlertsPage(BaseHandler):
    """``GET alerts``: the alerts, linked to the audit records behind each."""

    @web.authenticated
    def get(self) -> None:
        require_operator(self, "Reading alerts")
        raised = alerts.recent(self.shuyu)
        rules = {r.name: r for r in self.settings["alert_rules"].rules}
        self.audit("alerts.read", "alerts", detail={"count": len(raised)})
        self.render_page("alerts.html", alerts=raised, rules=rules)


def _whose(handler: BaseHandler) -> tuple[str, str]:
    """(tenant, month) of a statement the caller may read, or 403/400."""
    asked = handler.query_model(StatementQuery)
    month = asked.month or datetime.now(UTC).strftime("%Y-%m")
    if handler.has_scope(TENANTS_MANAGE):
        return asked.tenant, month
    if handler.tenant is None:
        handler.require_scope(TENANTS_MANAGE, "Reading statements", "administrator")
    if asked.tenant and asked.tenant != handler.tenant:
        raise web.HTTPError(
            403, f"{handler.user['name']} may read only tenant {handler.tenant}'s statements"
        )
    return str(handler.tenant), month


def _statement(handler: BaseHandler) -> fees.Statement:
    tenant, month = _whose(handler)
    if not tenant:
        raise web.HTTPError(400, "name the tenant: ?tenant=<slug>")
    try:
        statement = fees.statement_for(handler.shuyu, tenant, month, handler.settings["policies"])
    except fees.PricingError as err:
        raise web.HTTPError(500, "%s", f"the pricing policy is invalid: {err}") from None
    handler.audit("fees.statement", f"tenant:{tenant}", detail={"month": month})
    return statement


class FeesPage(BaseHandler):
    """``GET fees``: the merchant's statement; for administrators every tenant's."""

    @web.authenticated
    def get(self) -> None:
        tenant, month = _whose(self)
        policies = self.settings["policies"]
        if tenant:
            one = fees.statement_for(self.shuyu, tenant, month, policies)
            self.audit("fees.statement", f"tenant:{tenant}", detail={"month": month})
            self.render_page("statement.html", statement=one, printable=False)
            return
        every = fees.statements(self.shuyu, month, policies)
        departments: dict[str, Decimal] = {}
        for one in every:
            for name, amount in one.by_department.items():
                departments[name] = departments.get(name, Decimal(0)) + amount
        self.audit("fees.overview", "tenants", detail={"month": month, "tenants": len(every)})
        self.render_page(
            "fees.html",
            month=month,
            statements=every,
            departments=dict(sorted(departments.items())),
            total=sum((s.total for s in every), Decimal(0)),
        )


class StatementPage(BaseHandler):
    """``GET fees/statement?tenant=&month=``: the statement laid out for printing."""

    @web.authenticated
    def get(self) -> None:
        self.render_page("statement.html", statement=_statement(self), printable=True)


class StatementApi(ApiHandler):
    """``GET api/fees/statement?tenant=&month=``: the statement as JSON."""

    def get(self) -> None:
        self.write_json(_statement(self).as_dict())


class StatementCsvApi(ApiHandler):
    """``GET api/fees/statement.csv?tenant=&month=``: the statement as CSV (UTF-8, BOM)."""

    def get(self) -> None:
        statement = _statement(self)
        name = f"statement-{statement.tenant}-{statement.month}.csv"
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.finish(fees.statement_csv(statement))


class DisclosurePage(BaseHandler):
    """``GET disclosure``: the public page, from the stored snapshot (no sign-in)."""

    def get(self) -> None:
        content = disclosure.stored(self.shuyu)
        self.render_page(
            "disclosure.html",
            figures=content["figures"],
            charts=content["charts"],
            labels=disclosure.LABELS,
        )


class ReportPage(BaseHandler):
    """``GET disclosure/report?year=``: the annual operation report (no sign-in)."""

    def get(self) -> None:
        year = self.query_model(ReportQuery).year or datetime.now(UTC).year
        self.finish(report_html(self.shuyu, year, self.settings["templates"]))


def report_html(shuyu: Shuyu, year: int, templates: object, *, inline_css: bool = False) -> str:
    """The annual operation report of ``year`` as an HTML page.

    ``inline_css`` puts the style sheet into the page, for a file that stands alone (the
    service's own pages link it; their content security policy forbids inline style).
    """
    figures = disclosure.year_figures(shuyu, year)
    charts = {k: disclosure.charts.data_uri(v) for k, v in disclosure.chart_svgs(figures).items()}
    incidents = [i for i in emergency.incidents(shuyu) if i["started_at"].startswith(str(year))]
    return standalone(
        templates,
        "report.html",
        inline_css=inline_css,
        figures=figures,
        charts=charts,
        labels=disclosure.LABELS,
        incidents=incidents,
    )


def standalone(templates: object, template: str, *, inline_css: bool, **context: object) -> str:
    """A page rendered for nobody in particular (public, or a file to print)."""
    page = templates.get_template(template)  # type: ignore[attr-defined]
    return page.render(
        user=None,
        tenant=None,
        scopes=set(),
        has_scope=lambda scope: False,
        inline_css=(HERE / "static" / "shuyu.css").read_text("utf-8") if inline_css else "",
        **context,
    )


def print_pdf(html: Path, pdf: Path, *, chromium: str = CHROMIUM, timeout: float = 180) -> None:
    """Print a standalone HTML file to PDF with headless chromium."""
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
        f"--print-to-pdf={pdf}", html.resolve().as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0 or not pdf.exists() or pdf.stat().st_size == 0:
        raise RuntimeError(f"chromium did not print {html}: {result.stderr[-2000:]}")


def routes() -> list[tuple[str, type]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [
        (r"alerts/?", AlertsPage),
        (r"api/alerts/?", AlertsApi),
        (r"fees/?", FeesPage),
        (r"fees/statement/?", StatementPage),
        (r"api/fees/statement/?", StatementApi),
        (r"api/fees/statement\.csv", StatementCsvApi),
        (r"disclosure/?", DisclosurePage),
        (r"disclosure/report/?", ReportPage),
    ]
