"""Scenario applications (R19, R20): one scenario, one authorization, reviewed on deadlines.

A tenant applies for one scenario: its purpose, the datasets and fields it needs, the
method, the period, the security measures, and whether it serves the public interest
or is commercial. The application goes through two review stages, each with a
deadline in working days (:mod:`~shuyu_platform.core.workdays`):

1. ``compliance_review``: the operator's compliance check (reviewer role), 5 days;
2. ``source_review``: the source department of every dataset asked for
   (source-reviewer role, speaking for that department), 10 days; the stage ends when
   every department has approved.

Transitions are in :data:`TRANSITIONS`, who may make each in :data:`ACTORS`; each is an
:class:`~shuyu_platform.core.models.ApplicationDecision` row and an ``application.<action>``
audit event in the same transaction. A rejection needs reasons. A reviewer of the
stage may extend its deadline once, with a reason. When a stage's deadline passes
without a decision, :func:`process_deadlines` records a deemed approval by the platform
(``deem_approve``) where the operator's policy says silence is approval
(``c.Shuyu.silence_approves``, R20), and otherwise leaves the application overdue.

Approval issues one grant per dataset (:mod:`~shuyu_platform.access.grants`): the fields
asked for, the ε
budget asked for (capped by the policy's default budget), and the period's end as
expiry, all under the application's scenario; the caller then builds the views.

::

    compliance_review --compliance_approve/deem_approve--> source_review
    source_review --source_approve (last department)/deem_approve--> approved
    compliance_review | source_review --reject--> rejected
    compliance_review | source_review --withdraw--> withdrawn
    compliance_review | source_review --extend (once per stage)--> (same status)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..access import grants
from ..core import audit
from ..core.db import parse_stamp, stamp
from ..core.models import Application, ApplicationDecision, Grant
from ..core.roles import APPLICATIONS_REVIEW, APPLICATIONS_SOURCE_REVIEW
from ..core.workdays import CHINA, Calendar
from ..data.policy import DatasetPolicy
from . import transitions as workflow
from .transitions import WorkflowError

#: status -> {action: next status}; ``source_approve`` stays until every department agrees.
TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "compliance_review": {
        "compliance_approve": "source_review",
        "deem_approve": "source_review",
        "reject": "rejected",
        "extend": "compliance_review",
        "withdraw": "withdrawn",
    },
    "source_review": {
        "source_approve": "approved",
        "deem_approve": "approved",
        "reject": "rejected",
        "extend": "source_review",
        "withdraw": "withdrawn",
    },
    "approved": {},
    "rejected": {},
    "withdrawn": {},
}
#: Who takes each action: the applicant, the stage's reviewer, or the platform.
ACTORS: Final[dict[str, str]] = {
    "compliance_approve": "reviewer",
    "source_approve": "reviewer",
    "reject": "reviewer",
    "extend": "reviewer",
    "deem_approve": "platform",
    "withdraw": "applicant",
}
#: Actions whose comment may not be empty.
NEEDS_COMMENT: Final[frozenset[str]] = frozenset({"reject", "extend"})
#: The review stages, with the settings attribute holding each one's working days.
STAGES: Final[dict[str, str]] = {
    "compliance_review": "compliance_review_days",
    "source_review": "source_review_days",
}
NATURES: Final[tuple[str, ...]] = ("public_interest", "commercial")
#: The longest period one application may ask for.
MAX_PERIOD_DAYS: Final[int] = 366


class ApplicationError(WorkflowError):
    """An application or decision that cannot be made; ``status`` is the HTTP status."""


def _text(body: Mapping[str, Any], key: str, limit: int) -> str:
    return workflow.text_field(body, key, limit=limit, error=ApplicationError)


def _date(body: Mapping[str, Any], key: str) -> date:
    try:
        return date.fromisoformat(str(body.get(key, "")))
    except ValueError:
        raise ApplicationError(f"{key} must be a date like 2027-01-31") from None


def parse(
    body: Mapping[str, Any], policies: Mapping[str, DatasetPolicy], *, today: date
) -> dict[str, Any]:
    """The checked content of an application (every problem is a clear 400)."""
    nature = body.get("nature")
    if nature not in NATURES:
        raise ApplicationError(f"nature must be one of {', '.join(NATURES)}")
    start, end = _date(body, "period_start"), _date(body, "period_end")
    if end <= start:
        raise ApplicationError("period_end must come after period_start")
    if end <= today:
        raise ApplicationError(f"the period ends on {end}, which has passed")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise ApplicationError(f"a period may last at most {MAX_PERIOD_DAYS} days")
    asked = body.get("datasets")
    if not isinstance(asked, list) or not asked:
        raise ApplicationError("datasets must list at least one {dataset, fields, epsilon}")
    datasets = []
    for position, item in enumerate(asked):
        if not isinstance(item, Mapping) or not isinstance(item.get("dataset"), str):
            raise ApplicationError(f"datasets[{position}] needs a dataset name")
        name = item["dataset"]
        policy = policies.get(name)
        if policy is None:
            raise ApplicationError(f"no dataset {name!r}; the catalogue has {', '.join(policies)}")
        if any(d["dataset"] == name for d in datasets):
            raise ApplicationError(f"{name} is listed twice")
        visible = [f for f, spec in policy.fields.items() if spec.visible]
        fields = item.get("fields") or visible
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise ApplicationError(f"fields of {name} must be a list of field names")
        unknown = [f for f in fields if f not in policy.fields]
        if unknown:
            raise ApplicationError(f"{name} has no field {', '.join(map(repr, unknown))}")
        hidden = [f for f in fields if f not in visible]
        if hidden:
            raise ApplicationError(
                f"{name}: {', '.join(hidden)} never leave(s) the raw zone (grade L4 or dropped)"
            )
        cap = policy.privacy.default_budget_epsilon
        epsilon = item.get("epsilon", cap)
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or epsilon <= 0:
            raise ApplicationError(f"epsilon of {name} must be a positive number")
        if epsilon > cap:
            raise ApplicationError(f"epsilon of {name} may be at most {cap} (its policy's budget)")
        datasets.append(
            {
                "dataset": name,
                "fields": [f for f in visible if f in fields],  # policy order
                "epsilon": float(epsilon),
                "department": policy.catalogue.department,
            }
        )
    return {
        "scenario": _text(body, "scenario", 200),
        "purpose": _text(body, "purpose", 4000),
        "method": _text(body, "method", 4000),
        "security_measures": _text(body, "security_measures", 4000),
        "nature": nature,
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "datasets": datasets,
    }


def departments(row: Application) -> list[str]:
    """The source departments whose approval the application needs."""
    return sorted({d["department"] for d in json.loads(row.datasets)})


def decisions_of(session: Session, application_id: str) -> list[ApplicationDecision]:
    """An application's transitions, oldest first."""
    return list(
        session.scalars(
            select(ApplicationDecision)
            .where(ApplicationDecision.application_id == application_id)
            .order_by(ApplicationDecision.id)
        )
    )


def pending_departments(session: Session, row: Application) -> list[str]:
    """Departments that have not approved yet in the source review."""
    if row.status != "source_review":
        return []
    done = {
        d.department
        for d in decisions_of(session, row.id)
        if d.action == "source_approve" and d.from_status == "source_review"
    }
    return [d for d in departments(row) if d not in done]


def submit(
    session: Session,
    content: Mapping[str, Any],
    *,
    tenant: str,
    applicant: str,
    calendar: Calendar,
    days: int,
    now: datetime | None = None,
) -> Application:
    """Record a checked application in compliance review, with its deadline (audited)."""
    moment = now or datetime.now(UTC)
    row = Application(
        id=uuid.uuid4().hex,
        tenant=tenant,
        applicant=applicant,
        scenario=content["scenario"],
        purpose=content["purpose"],
        method=content["method"],
        security_measures=content["security_measures"],
        nature=content["nature"],
        period_start=content["period_start"],
        period_end=content["period_end"],
        datasets=audit.canonical_json(content["datasets"]),
        status="compliance_review",
        deadline=stamp(calendar.deadline(moment, days)),
        extended=False,
        grant_ids="[]",
        created_at=stamp(moment),
        updated_at=stamp(moment),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=applicant,
        action="application.submit",
        target=f"application:{row.id}",
        tenant=tenant,
        detail={
            "scenario": row.scenario,
            "nature": row.nature,
            "datasets": [d["dataset"] for d in content["datasets"]],
            "deadline": row.deadline,
        },
    )
    return row


def decide(
    session: Session,
    row: Application,
    action: str,
    *,
    actor: str,
    actor_scopes: Sequence[str] = (),
    actor_departments: Sequence[str] = (),
    actor_tenant: str | None = None,
    comment: str = "",
    department: str = "",
    settings: Any,
    policies: Mapping[str, DatasetPolicy],
    now: datetime | None = None,
) -> Application:
    """Apply ``action`` if the table and the rules allow it (audited); see the module."""
    moment = now or datetime.now(UTC)
    after = workflow.next_status(
        TRANSITIONS, row.status, action, f"application {row.id}", ApplicationError
    )
    who = ACTORS[action]
    comment = comment.strip()
    if who == "applicant" and actor != row.applicant:
        raise ApplicationError(f"only {row.applicant}, who applied, may {action} it", 403)
    if who == "platform" and actor != "platform":
        raise ApplicationError("only the platform records a deemed approval", 403)
    if who == "reviewer":
        if actor_tenant == row.tenant:
            raise ApplicationError("no one reviews an application of their own tenant", 403)
        if row.status == "compliance_review" and APPLICATIONS_REVIEW not in actor_scopes:
            raise ApplicationError("the compliance check needs the reviewer role", 403)
        if row.status == "source_review":
            department = _department(session, row, action, department, actor_departments)
        if action == "source_approve" and APPLICATIONS_SOURCE_REVIEW not in actor_scopes:
            raise ApplicationError("source approval needs the source-reviewer role", 403)
    if action in NEEDS_COMMENT and not comment:
        raise ApplicationError(f"'{action}' needs a reason for the applicant")
    if action == "extend" and row.extended:
        raise ApplicationError(f"the {row.status} deadline was extended once already", 409)

    before = row.status
    others = [d for d in pending_departments(session, row) if d != department]
    if action == "source_approve" and others:
        after = before  # other departments still have to approve
    if action == "extend":
        days = getattr(settings, STAGES[before])
        row.deadline = stamp(settings.calendar.deadline(parse_stamp(row.deadline), days))
        row.extended = True
    elif after != before and after in STAGES:  # a new stage: its own deadline, no extension
        row.deadline = stamp(settings.calendar.deadline(moment, getattr(settings, STAGES[after])))
        row.extended = False
    row.status = after
    row.updated_at = stamp(moment)
    session.add(
        ApplicationDecision(
            application_id=row.id,
            actor=actor,
            action=action,
            from_status=before,
            to_status=after,
            department=department,
            comment=comment,
            created_at=row.updated_at,
        )
    )
    audit.record(
        session,
        actor=actor,
        actor_kind="system" if who == "platform" else "user",
        action=f"application.{action}",
        target=f"application:{row.id}",
        tenant=row.tenant,
        detail={
            "from": before,
            "to": after,
            "comment": comment,
            "department": department,
            "deadline": row.deadline,
        },
    )
    if after == "approved":
        issue_grants(session, row, policies)
    return row


def _department(
    session: Session,
    row: Application,
    action: str,
    department: str,
    actor_departments: Sequence[str],
) -> str:
    """The department a source-stage decision speaks for (checked against the actor's)."""
    pending = pending_departments(session, row)
    mine = [d for d in pending if d in actor_departments]
    if department:
        if department not in departments(row):
            raise ApplicationError(f"application {row.id} needs nothing from {department}")
        if department not in actor_departments:
            raise ApplicationError(f"you do not speak for {department}", 403)
        if department not in pending:
            raise ApplicationError(f"{department} has approved already", 409)
        return department
    if not mine:
        raise ApplicationError(
            "the source review needs a reviewer of a department still pending: "
            + (", ".join(pending) or "none"),
            403,
        )
    return mine[0]


def issue_grants(
    session: Session, row: Application, policies: Mapping[str, DatasetPolicy]
) -> list[Grant]:
    """One grant per dataset asked for, expiring at the end of the period (audited)."""
    end = date.fromisoformat(row.period_end)
    expires = datetime.combine(end, time(23, 59, 59), tzinfo=CHINA).astimezone(UTC)
    issued = []
    for item in json.loads(row.datasets):
        issued.append(
            grants.issue(
                session,
                policies[item["dataset"]],
                tenant=row.tenant,
                fields=item["fields"],
                actor="platform",
                budget_epsilon=item["epsilon"],
                expires_at=expires,
                scenario=f"{row.scenario} ({row.id[:8]})",
            )
        )
    row.grant_ids = json.dumps([g.id for g in issued])
    return issued


def process_deadlines(
    session: Session,
    settings: Any,
    policies: Mapping[str, DatasetPolicy],
    *,
    now: datetime | None = None,
) -> list[Application]:
    """Deemed approvals of stages past their deadline, if silence is approval (R20)."""
    if not settings.silence_approves:
        return []
    moment = now or datetime.now(UTC)
    due = session.scalars(select(Application).where(Application.status.in_(list(STAGES)))).all()
    changed = []
    for row in due:
        if parse_stamp(row.deadline) >= moment:
            continue
        missing = ", ".join(pending_departments(session, row)) or "the compliance check"
        decide(
            session,
            row,
            "deem_approve",
            actor="platform",
            comment=f"no answer from {missing} by {row.deadline}: deemed approved (R20)",
            settings=settings,
            policies=policies,
            now=moment,
        )
        changed.append(row)
    return changed


def as_dict(
    row: Application,
    decisions: list[ApplicationDecision] | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An application as JSON."""
    moment = now or datetime.now(UTC)
    body: dict[str, Any] = {
        "id": row.id,
        "tenant": row.tenant,
        "applicant": row.applicant,
        "scenario": row.scenario,
        "purpose": row.purpose,
        "method": row.method,
        "security_measures": row.security_measures,
        "nature": row.nature,
        "period_start": row.period_start,
        "period_end": row.period_end,
        "datasets": json.loads(row.datasets),
        "status": row.status,
        "deadline": row.deadline if row.status in STAGES else "",
        "overdue": row.status in STAGES and parse_stamp(row.deadline) < moment,
        "extended": row.extended,
        "grant_ids": json.loads(row.grant_ids or "[]"),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if decisions is not None:
        body["decisions"] = [
            {
                "actor": d.actor,
                "action": d.action,
                "from": d.from_status,
                "to": d.to_status,
                "department": d.department,
                "comment": d.comment,
                "at": d.created_at,
            }
            for d in decisions
        ]
    return body
