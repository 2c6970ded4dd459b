"""Alert rules over the audit chain and the platform's metrics (R15).

The rules are a YAML file (``policies/operations/alerts.yaml``, ``c.Shuyu.alert_rules_file``)
validated like the dataset policies: every problem named with its place in the file.
Three kinds of rule:

- ``audit_count``: at least ``threshold`` audit records matching ``action`` (exact, or a
  prefix ending in ``.``), ``outcome`` and ``detail`` (equal values; ``detail_contains``:
  substrings) within ``window_minutes``, counted per ``group_by`` (actor, tenant,
  target, or all together);
- ``review_overdue``: an export request or application waiting for a reviewer longer
  than ``hours``;
- ``metric``: a sample of the service's own metrics above or below a bound.

:func:`evaluate` runs every rule; each alert is stored (:class:`~..core.models.Alert`),
recorded in the audit chain as ``alert.raise`` with the sequence numbers of the records
behind it, shown on the alerts page, and posted to ``c.Shuyu.alert_webhook_url`` if set.
The same records never raise the same rule twice.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import requests
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..core import audit
from ..core.db import parse_stamp, session_scope, stamp
from ..core.models import Alert, AuditEvent
from ..core.settings import Shuyu
from .metrics import WAITING, PlatformMetrics

log = logging.getLogger("shuyu.alerts")

#: How many audit records an alert names at most (the newest ones).
MAX_EVENTS = 50
WEBHOOK_TIMEOUT_SECONDS = 5


class AlertRulesError(ValueError):
    """The rules file is unreadable or invalid; the message names every problem."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")]
    description: Annotated[str, Field(min_length=1, max_length=500)]
    severity: Literal["info", "warning", "critical"] = "warning"


class SoonAfter(BaseModel):
    """Count a record only if the same group had an ``action`` record at most ``minutes``
    before it (a budget exhausted soon after its grant was issued)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Annotated[str, Field(pattern=r"^[a-z_]+(\.[a-z_]+)*$", max_length=64)]
    minutes: Annotated[int, Field(ge=1, le=525_600)]


class AuditCountRule(_Rule):
    """At least ``threshold`` matching audit records in ``window_minutes`` per group."""

    kind: Literal["audit_count"]
    action: Annotated[str, Field(pattern=r"^[a-z_]+(\.[a-z_]+)*\.?$", max_length=64)]
    outcome: Literal["ok", "denied", "error"] | None = None
    detail: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    detail_contains: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    group_by: Literal["actor", "tenant", "target", "all"] = "actor"
    threshold: Annotated[int, Field(ge=1, le=100_000)]
    window_minutes: Annotated[int, Field(ge=1, le=525_600)]
    soon_after: SoonAfter | None = None


class ReviewOverdueRule(_Rule):
    """A request of ``queue`` waiting for a reviewer for more than ``hours``."""

    kind: Literal["review_overdue"]
    queue: Literal["egress", "application"]
    hours: Annotated[float, Field(gt=0, le=8760)]


class MetricRule(_Rule):
    """A sample of the service's metrics above ``above`` or below ``below``; raised again
    every ``repeat_minutes`` while it stays so."""

    kind: Literal["metric"]
    metric: Annotated[str, Field(pattern=r"^shuyu_[a-z0-9_]+$")]
    labels: dict[str, str] = Field(default_factory=dict)
    above: float | None = None
    below: float | None = None
    repeat_minutes: Annotated[int, Field(ge=1, le=525_600)] = 60


Rule = Annotated[AuditCountRule | ReviewOverdueRule | MetricRule, Field(discriminator="kind")]


class AlertRules(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: Annotated[list[Rule], Field(min_length=1)]

    def model_post_init(self, context: Any) -> None:
        """Names are unique; metric rules have exactly one bound."""
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rule names must be unique: {', '.join(twice)}")
        for rule in self.rules:
            if isinstance(rule, MetricRule) and (rule.above is None) == (rule.below is None):
                raise ValueError(f"rule {rule.name}: give exactly one of 'above' and 'below'")


def load_rules(path: Path) -> AlertRules:
    """Read and validate the rules file, or raise :class:`AlertRulesError` naming why."""
    try:
        data = yaml.safe_load(Path(path).read_text("utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise AlertRulesError(f"{path}: {err}") from None
    try:
        return AlertRules.model_validate(data)
    except ValidationError as err:
        lines = [
            f"{path}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in err.errors()
        ]
        raise AlertRulesError("\n".join(lines)) from None
    except ValueError as err:
        raise AlertRulesError(f"{path}: {err}") from None


# ------------------------------------------------------------------ evaluation
Finding = tuple[str, str, list[int]]  # subject, summary, audit seqs behind it


def _matches(rule: AuditCountRule, event: AuditEvent) -> bool:
    detail = json.loads(event.detail)
    for key, value in rule.detail.items():
        if detail.get(key) != value:
            return False
    return all(
        isinstance(detail.get(key), str) and text in detail[key]
        for key, text in rule.detail_contains.items()
    )


def _last_seqs(session: Session, rule: str) -> dict[str, int]:
    rows = session.execute(
        select(Alert.subject, func.max(Alert.last_seq))
        .where(Alert.rule == rule)
        .group_by(Alert.subject)
    )
    return {subject: seq for subject, seq in rows}


def _audit_count(session: Session, rule: AuditCountRule, now: datetime) -> list[Finding]:
    since = stamp(now - timedelta(minutes=rule.window_minutes))
    stmt = select(AuditEvent).where(AuditEvent.ts >= since)
    if rule.action.endswith("."):
        stmt = stmt.where(AuditEvent.action.startswith(rule.action, autoescape=True))
    else:
        stmt = stmt.where(AuditEvent.action == rule.action)
    if rule.outcome:
        stmt = stmt.where(AuditEvent.outcome == rule.outcome)
    done = _last_seqs(session, rule.name)
    anchors = _anchors(session, rule, now)
    groups: dict[str, list[int]] = {}
    for event in session.scalars(stmt.order_by(AuditEvent.seq)):
        subject = "*" if rule.group_by == "all" else (getattr(event, rule.group_by) or "-")
        if event.seq <= done.get(subject, 0) or not _matches(rule, event):
            continue
        if anchors is not None and not _soon_after(anchors.get(subject, []), event, rule):
            continue
        groups.setdefault(subject, []).append(event.seq)
    return [
        (
            subject,
            f"{len(seqs)} × {rule.action}"
            + (f" ({rule.outcome})" if rule.outcome else "")
            + f" within {rule.window_minutes} min"
            + ("" if subject == "*" else f" by {rule.group_by} {subject}"),
            seqs,
        )
        for subject, seqs in groups.items()
        if len(seqs) >= rule.threshold
    ]


def _anchors(
    session: Session, rule: AuditCountRule, now: datetime
) -> dict[str, list[datetime]] | None:
    """When each group had the rule's ``soon_after`` action (None: the rule has none)."""
    if rule.soon_after is None:
        return None
    reach = rule.window_minutes + rule.soon_after.minutes
    rows = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == rule.soon_after.action, AuditEvent.outcome == "ok")
        .where(AuditEvent.ts >= stamp(now - timedelta(minutes=reach)))
    )
    found: dict[str, list[datetime]] = {}
    for event in rows:
        subject = "*" if rule.group_by == "all" else (getattr(event, rule.group_by) or "-")
        found.setdefault(subject, []).append(datetime.fromisoformat(event.ts))
    return found


def _soon_after(anchors: list[datetime], event: AuditEvent, rule: AuditCountRule) -> bool:
    assert rule.soon_after is not None
    at = datetime.fromisoformat(event.ts)
    limit = timedelta(minutes=rule.soon_after.minutes)
    return any(timedelta(0) <= at - anchor <= limit for anchor in anchors)


def _review_overdue(session: Session, rule: ReviewOverdueRule, now: datetime) -> list[Finding]:
    model, statuses = WAITING[rule.queue]
    done = _last_seqs(session, rule.name)
    found = []
    for row in session.scalars(select(model).where(model.status.in_(statuses))):
        waited = now - parse_stamp(row.updated_at)
        if waited <= timedelta(hours=rule.hours):
            continue
        target = f"{'egress' if rule.queue == 'egress' else 'application'}:{row.id}"
        seqs = list(
            session.scalars(
                select(AuditEvent.seq).where(AuditEvent.target == target).order_by(AuditEvent.seq)
            )
        )
        if not seqs or done.get(row.id, 0) >= seqs[-1]:
            continue
        hours = waited.total_seconds() / 3600
        found.append((row.id, f"{rule.queue} {row.id} waiting {hours:.0f} h for review", seqs))
    return found


def _metric(
    rule: MetricRule, metrics: PlatformMetrics | None, session: Session, now: datetime
) -> list[Finding]:
    if metrics is None:
        return []
    value = metrics.registry.get_sample_value(rule.metric, rule.labels)
    if value is None:
        return []
    crossed = (rule.above is not None and value > rule.above) or (
        rule.below is not None and value < rule.below
    )
    if not crossed:
        return []
    last = session.scalar(select(func.max(Alert.raised_at)).where(Alert.rule == rule.name))
    if last and parse_stamp(last) > now - timedelta(minutes=rule.repeat_minutes):
        return []  # raised recently, still so: not again yet
    head_seq = audit.head(session)[0]
    bound = f"> {rule.above:g}" if rule.above is not None else f"< {rule.below:g}"
    return [("*", f"{rule.metric} = {value:g} ({bound})", [head_seq])]


def evaluate(
    settings: Shuyu,
    rules: AlertRules,
    metrics: PlatformMetrics | None = None,
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Run every rule once; store, audit and send each new alert; return them."""
    moment = now or datetime.now(UTC)
    raised: list[dict[str, Any]] = []
    with session_scope(settings.db_url) as session:
        for rule in rules.rules:
            if isinstance(rule, AuditCountRule):
                findings = _audit_count(session, rule, moment)
            elif isinstance(rule, ReviewOverdueRule):
                findings = _review_overdue(session, rule, moment)
            else:
                findings = _metric(rule, metrics, session, moment)
            for subject, summary, seqs in findings:
                row = Alert(
                    rule=rule.name,
                    severity=rule.severity,
                    subject=subject,
                    summary=summary,
                    event_seqs=json.dumps(seqs[-MAX_EVENTS:]),
                    last_seq=seqs[-1],
                    raised_at=stamp(moment),
                    webhook="none" if not settings.alert_webhook_url else "pending",
                )
                session.add(row)
                session.flush()
                audit.record(
                    session,
                    actor="system",
                    actor_kind="system",
                    action="alert.raise",
                    target=f"alert:{row.id}",
                    outcome="ok",
                    detail={
                        "rule": rule.name,
                        "severity": rule.severity,
                        "subject": subject,
                        "summary": summary,
                        "events": seqs[-MAX_EVENTS:],
                    },
                )
                raised.append(alert_dict(row, rule.description))
    for alert in raised:
        if settings.alert_webhook_url:
            _send(settings, alert)
    return raised


def _send(settings: Shuyu, alert: dict[str, Any]) -> None:
    """POST the alert as JSON to the webhook; record a failure in the audit chain."""
    try:
        response = requests.post(
            settings.alert_webhook_url,
            json={"source": "shuyu", "alert": alert},
            timeout=WEBHOOK_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        status, problem = "sent", ""
    except requests.RequestException as err:
        status, problem = "failed", str(err)[:300]
    with session_scope(settings.db_url) as session:
        row = session.get(Alert, alert["id"])
        if row is not None:
            row.webhook = status
        if problem:
            log.error("alert %s not delivered to the webhook: %s", alert["id"], problem)
            audit.record(
                session,
                actor="system",
                actor_kind="system",
                action="alert.webhook",
                target=f"alert:{alert['id']}",
                outcome="error",
                detail={"problem": problem},
            )
    alert["webhook"] = status


def alert_dict(row: Alert, description: str = "") -> dict[str, Any]:
    """JSON form of an alert."""
    return {
        "id": row.id,
        "rule": row.rule,
        "description": description,
        "severity": row.severity,
        "subject": row.subject,
        "summary": row.summary,
        "events": json.loads(row.event_seqs),
        "raised_at": row.raised_at,
        "webhook": row.webhook,
    }


def recent(settings: Shuyu, limit: int = 200) -> list[dict[str, Any]]:
    """The newest alerts, newest first."""
    with session_scope(settings.db_url) as session:
        rows = session.scalars(select(Alert).order_by(Alert.id.desc()).limit(limit))
        return [alert_dict(r) for r in rows]
