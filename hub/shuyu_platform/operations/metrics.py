"""The platform service's Prometheus metrics (R15: watch for leaks, tampering, misuse).

Two kinds of figures:

- **requests and latencies per route**, counted as the service answers them
  (:meth:`PlatformMetrics.observe`, tornado's ``log_function``);
- **state of the platform**, read from the platform database at each scrape
  (:class:`StateCollector`): DP queries and ε spent per dataset, export requests by
  status, review waiting times, sandboxes running (from the audit chain's
  ``server.start``/``server.stop`` records), the audit chain's length and the result of
  the last verification.

``GET metrics`` on the service answers in the Prometheus text format to a bearer token
(:data:`METRICS_TOKEN_FILE` in the hub zone), the way Prometheus' ``authorization:
credentials_file`` sends it; see ``images/prometheus/``.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tornado import web

from ..core import keyfiles
from ..core.db import parse_stamp, session_scope
from ..core.models import (
    Alert,
    Application,
    AuditEvent,
    AuditHead,
    DpRelease,
    EgressRequest,
    Incident,
    OutputVolume,
)
from ..core.settings import Shuyu

log = logging.getLogger("shuyu.service")
access_log = logging.getLogger("tornado.access")

#: The bearer token Prometheus scrapes with, in the hub zone (made on first start).
METRICS_TOKEN_FILE = "metrics-token"
#: Statuses in which a request or an application waits for a person's decision.
WAITING: dict[str, tuple[type[EgressRequest] | type[Application], tuple[str, ...]]] = {
    "egress": (EgressRequest, ("submitted", "resubmitted")),
    "application": (Application, ("compliance_review", "source_review")),
}
#: Latency buckets (seconds) of the service's answers.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def metrics_token(settings: Shuyu) -> str:
    """The scrape token (hex), made in the hub zone on first use (mode 0600)."""
    return keyfiles.secret_file(settings.zone("hub") / METRICS_TOKEN_FILE).hex()


def browser_bytes_served(session: Session) -> dict[str, int]:
    """Bytes the egress gateway has served to browsers, per tenant, over every day it
    metered (:class:`~shuyu_platform.core.models.OutputVolume`): a counter that only grows."""
    rows = session.execute(
        select(OutputVolume.tenant, func.sum(OutputVolume.bytes)).group_by(OutputVolume.tenant)
    )
    return {tenant: int(total or 0) for tenant, total in rows}


@dataclass
class VerifyState:
    """The last verification of the audit chain this process made (None: none yet)."""

    ok: bool | None = None
    at: float = 0.0
    checked: int = 0


class StateCollector:
    """Figures read from the platform database at each scrape."""

    def __init__(self, settings: Shuyu, verify: VerifyState) -> None:
        self.settings = settings
        self.verify = verify

    def collect(self) -> Iterator[Metric]:
        """Every state metric, from one database session."""
        with session_scope(self.settings.db_url) as session:
            yield from self._dp(session)
            yield from self._egress(session)
            yield from self._waiting(session)
            yield self._sandboxes(session)
            yield from self._audit(session)
            yield from self._operations(session)
            served = browser_bytes_served(session)
        family = CounterMetricFamily(
            "shuyu_browser_bytes_served", "Bytes served to browsers", labels=["tenant"]
        )
        for tenant, count in sorted(served.items()):
            family.add_metric([tenant], count)
        yield family

    def _dp(self, session: Session) -> Iterator[Metric]:
        queries = CounterMetricFamily(
            "shuyu_dp_releases",
            "DP queries and model fits debited, by dataset, kind and status",
            labels=["dataset", "kind", "status"],
        )
        spent = CounterMetricFamily(
            "shuyu_dp_epsilon_spent",
            "Privacy loss (epsilon) spent on a dataset, refunds excluded",
            labels=["dataset"],
        )
        totals: dict[str, int] = {}
        rows = session.execute(
            select(
                DpRelease.dataset,
                DpRelease.kind,
                DpRelease.status,
                func.count(),
                func.sum(DpRelease.epsilon_micro),
            ).group_by(DpRelease.dataset, DpRelease.kind, DpRelease.status)
        )
        for dataset, kind, status, count, micro in rows:
            queries.add_metric([dataset, kind, status], count)
            if status != "refunded":
                totals[dataset] = totals.get(dataset, 0) + int(micro or 0)
        for dataset, micro in sorted(totals.items()):
            spent.add_metric([dataset], micro / 1e6)
        yield queries
        yield spent

    def _egress(self, session: Session) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "shuyu_export_requests",
            "Export (egress) requests by kind and current status",
            labels=["kind", "status"],
        )
        rows = session.execute(
            select(EgressRequest.kind, EgressRequest.status, func.count()).group_by(
                EgressRequest.kind, EgressRequest.status
            )
        )
        for kind, status, count in rows:
            family.add_metric([kind, status], count)
        yield family

    def _waiting(self, session: Session) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "shuyu_reviews_waiting", "Requests waiting for a reviewer", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "shuyu_review_oldest_waiting_seconds",
            "How long the longest-waiting request of a queue has waited",
            labels=["queue"],
        )
        now = time.time()
        for queue, (model, statuses) in WAITING.items():
            stamps = session.scalars(select(model.updated_at).where(model.status.in_(statuses)))
            waits = [now - parse_stamp(s).timestamp() for s in stamps]
            count.add_metric([queue], len(waits))
            oldest.add_metric([queue], max(waits, default=0.0))
        yield count
        yield oldest

    def _sandboxes(self, session: Session) -> Metric:
        family = GaugeMetricFamily(
            "shuyu_sandboxes_running", "Sandboxed servers running, by tenant", labels=["tenant"]
        )
        for tenant, count in sorted(running_sandboxes(session).items()):
            family.add_metric([tenant], count)
        return family

    def _audit(self, session: Session) -> Iterator[Metric]:
        head = session.get(AuditHead, 1)
        yield GaugeMetricFamily(
            "shuyu_audit_records", "Records in the audit chain", value=head.seq if head else 0
        )
        if self.verify.ok is not None:
            yield GaugeMetricFamily(
                "shuyu_audit_verify_ok",
                "1 if the last verification of the audit chain found it intact, else 0",
                value=1 if self.verify.ok else 0,
            )
            yield GaugeMetricFamily(
                "shuyu_audit_verify_timestamp_seconds",
                "When the audit chain was last verified (Unix time)",
                value=self.verify.at,
            )

    def _operations(self, session: Session) -> Iterator[Metric]:
        alerts = CounterMetricFamily("shuyu_alerts", "Alerts raised, by rule", labels=["rule"])
        for rule, count in session.execute(select(Alert.rule, func.count()).group_by(Alert.rule)):
            alerts.add_metric([rule], count)
        yield alerts
        incidents = CounterMetricFamily(
            "shuyu_emergencies", "Emergency-plan starts, by kind", labels=["kind"]
        )
        for kind, count in session.execute(
            select(Incident.kind, func.count()).group_by(Incident.kind)
        ):
            incidents.add_metric([kind], count)
        yield incidents


def running_sandboxes(session: Session) -> dict[str, int]:
    """Servers per tenant whose newest ``server.start``/``server.stop`` record is a start."""
    latest = (
        select(func.max(AuditEvent.seq).label("seq"))
        .where(AuditEvent.action.in_(("server.start", "server.stop")))
        .where(AuditEvent.outcome == "ok")
        .group_by(AuditEvent.actor, AuditEvent.target)
        .subquery()
    )
    rows = session.execute(
        select(AuditEvent.tenant, func.count())
        .join(latest, AuditEvent.seq == latest.c.seq)
        .where(AuditEvent.action == "server.start")
        .group_by(AuditEvent.tenant)
    )
    return {tenant or "": count for tenant, count in rows}


class PlatformMetrics:
    """One service's registry: request metrics it counts and the state it reads."""

    def __init__(self, settings: Shuyu) -> None:
        self.registry = CollectorRegistry()
        self.verify = VerifyState()
        self.requests = Counter(
            "shuyu_http_requests",
            "Requests the platform service answered, by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shuyu_http_request_duration_seconds",
            "Time the platform service took to answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StateCollector(settings, self.verify))

    def observe(self, handler: web.RequestHandler) -> None:
        """Count one answered request (tornado's ``log_function``) and log it as tornado would."""
        status = handler.get_status()
        seconds = handler.request.request_time()
        route = type(handler).__name__
        self.requests.labels(route, handler.request.method or "", str(status)).inc()
        self.latency.labels(route).observe(seconds)
        level = access_log.info if status < 400 else access_log.warning
        if status >= 500:
            level = access_log.error
        level("%d %s %.2fms", status, handler._request_summary(), 1000.0 * seconds)

    def verified(self, ok: bool, checked: int = 0) -> None:
        """Remember the result of a verification of the audit chain (for the next scrape)."""
        self.verify.ok = ok
        self.verify.at = time.time()
        self.verify.checked = checked

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


class MetricsHandler(web.RequestHandler):
    """``GET metrics``: the Prometheus text format, to the scrape token only."""

    def get(self) -> None:
        expected = metrics_token(self.settings["shuyu"])
        given = self.request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
            self.set_status(401)
            self.set_header("WWW-Authenticate", 'Bearer realm="shuyu-metrics"')
            self.finish("Send 'Authorization: Bearer <token>' (hub zone file metrics-token).\n")
            return
        metrics: PlatformMetrics = self.settings["metrics"]
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(metrics.exposition())


def routes() -> list[tuple[str, Any]]:
    """Paths (relative to the service prefix) and their handlers."""
    return [(r"metrics", MetricsHandler)]
