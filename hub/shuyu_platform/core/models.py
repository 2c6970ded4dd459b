"""Tables of the platform database (SQLAlchemy 2 declarative models).

Schema changes go through an Alembic migration in ``migrations/versions``; the models
here and the newest migration must agree (a test compares them).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every platform table."""


class AuditEvent(Base):
    """One record of the append-only, hash-chained audit log (R13, R14).

    ``hash`` is the SHA-256 of the record's canonical form, which includes
    ``prev_hash``; see :mod:`shuyu_platform.core.audit`. Records are never updated or
    deleted by the platform.
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(32))  # UTC, ISO 8601 with microseconds and 'Z'
    actor: Mapped[str] = mapped_column(String(255))
    actor_kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(1024))
    tenant: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (
        CheckConstraint("outcome IN ('ok', 'denied', 'error')", name="ck_audit_outcome"),
        CheckConstraint("actor_kind IN ('user', 'service', 'system')", name="ck_audit_actor_kind"),
        Index("ix_audit_action", "action"),
        Index("ix_audit_actor", "actor"),
        Index("ix_audit_tenant", "tenant"),
    )


class AuditHead(Base):
    """The chain's head: sequence number and hash of the newest record.

    Exactly one row (id = 1). Every append updates it first inside the writing
    transaction, which serialises concurrent writers on every database, and it lets
    verification notice records cut from the end of the chain.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (CheckConstraint("id = 1", name="ck_audit_head_single_row"),)


class Tenant(Base):
    """A tenant's operating status. No row means active and never suspended."""

    __tablename__ = "tenants"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    reason: Mapped[str] = mapped_column(Text, default="")
    changed_by: Mapped[str] = mapped_column(String(255), default="")
    changed_at: Mapped[str] = mapped_column(String(32), default="")

    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended')", name="ck_tenant_status"),
    )


class DatasetState(Base):
    """A dataset's supply status (R23). No row means active and never suspended."""

    __tablename__ = "dataset_states"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)  # the dataset name
    status: Mapped[str] = mapped_column(String(16), default="active")
    reason: Mapped[str] = mapped_column(Text, default="")
    changed_by: Mapped[str] = mapped_column(String(255), default="")
    changed_at: Mapped[str] = mapped_column(String(32), default="")

    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended')", name="ck_dataset_status"),
    )


class Grant(Base):
    """A tenant's right to use one dataset: which fields, which rows, what DP budget, until when.

    At most one grant per (tenant, dataset) is active at a time; a new one replaces it.
    Grants are issued by ``shuyu grant add`` (and, once applications land, by an approved
    scenario application); each change of ``status`` is an audited transition, see
    :mod:`shuyu_platform.access.grants`.
    """

    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    scenario: Mapped[str] = mapped_column(Text, default="")
    fields: Mapped[str] = mapped_column(Text)  # JSON list of field names, in policy order
    row_filter: Mapped[str] = mapped_column(Text, default="{}")  # JSON {field: [values]}
    budget_epsilon: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="active")
    issued_by: Mapped[str] = mapped_column(String(255))
    issued_at: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[str] = mapped_column(String(32))  # UTC, ISO 8601 with 'Z'
    ended_by: Mapped[str] = mapped_column(String(255), default="")
    ended_at: Mapped[str] = mapped_column(String(32), default="")
    end_reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        CheckConstraint(
            "status IN ('active', 'revoked', 'expired', 'replaced')", name="ck_grant_status"
        ),
        CheckConstraint("budget_epsilon >= 0", name="ck_grant_budget"),
        Index("ix_grant_tenant_dataset", "tenant", "dataset"),
    )


class PrivacyBudget(Base):
    """The privacy loss spent by one tenant on one dataset within one scenario.

    The cap is the ε of the tenant's active grant for the dataset (a replacement grant in
    the same scenario continues the same account, so re-issuing a grant never refills
    it). ``spent_micro`` is ε in millionths, so concurrent debits add exact integers;
    :mod:`shuyu_platform.dp.budget` debits it with one conditional UPDATE.
    """

    __tablename__ = "privacy_budgets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    scenario: Mapped[str] = mapped_column(Text, default="")
    dataset: Mapped[str] = mapped_column(String(64))
    spent_micro: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))

    __table_args__ = (
        UniqueConstraint("tenant", "scenario", "dataset", name="uq_budget_account"),
        CheckConstraint("spent_micro >= 0", name="ck_budget_spent"),
    )


class DpGlobalBudget(Base):
    """The privacy loss spent by all tenants together on one dataset in one period.

    The cap is the policy's ``dp.global_budget_epsilon``; ``period`` names the calendar
    period (``2026``, ``2026-Q4`` or ``2026-11``, UTC) of its ``dp.budget_period``. It is
    debited in the same transaction as the tenant's :class:`PrivacyBudget`, so pooling
    grants across tenants can never spend more than the dataset's cap.
    """

    __tablename__ = "dp_global_budgets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(16))
    spent_micro: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))

    __table_args__ = (
        UniqueConstraint("dataset", "period", name="uq_global_budget"),
        CheckConstraint("spent_micro >= 0", name="ck_global_budget_spent"),
    )


class DpRelease(Base):
    """One debited DP query or model fit, and the answer released for it.

    Written as ``debited`` in the transaction that spends the budget, then ``released``
    with the answer and its SHA-256 (so egress checks can recognise DP output). If
    nothing could be released (the engine failed, or the service died first) it is
    settled: ``refunded`` (its ε given back to both accounts) or, where the operator
    keeps the cost of failures, ``failed`` (the ε stays spent).
    """

    __tablename__ = "dp_releases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    budget_id: Mapped[int] = mapped_column(ForeignKey("privacy_budgets.id"))
    global_budget_id: Mapped[int | None] = mapped_column(
        ForeignKey("dp_global_budgets.id"), nullable=True, default=None
    )
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    tenant: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # query | model
    epsilon_micro: Mapped[int] = mapped_column(Integer)
    request: Mapped[str] = mapped_column(Text)  # canonical JSON of the checked request
    status: Mapped[str] = mapped_column(String(16), default="debited")
    answer: Mapped[str] = mapped_column(Text, default="")  # canonical JSON, once released
    answer_sha256: Mapped[str] = mapped_column(String(64), default="")
    raw_version: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)
    """The raw version (:class:`RawVersion`) the answer was computed on."""
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[str] = mapped_column(String(32))
    released_at: Mapped[str] = mapped_column(String(32), default="")

    __table_args__ = (
        CheckConstraint(
            "status IN ('debited', 'released', 'failed', 'refunded')", name="ck_release_status"
        ),
        CheckConstraint("kind IN ('query', 'model')", name="ck_release_kind"),
        Index("ix_release_tenant", "tenant", "dataset"),
        Index("ix_release_answer", "answer_sha256"),
    )


class EgressRequest(Base):
    """A merchant's request to take cell outputs or a file out of the sandbox (R10–R12).

    The content is frozen at submission in ``outbox/<id>.json`` (read-only, its SHA-256
    here); every status change follows :data:`shuyu_platform.egress.requests.TRANSITIONS` and is
    recorded as an :class:`EgressDecision` and an audit event in the same transaction.
    """

    __tablename__ = "egress_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # cells | file | dashboard | job
    title: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)  # notebook or file path in the work folder
    status: Mapped[str] = mapped_column(String(32))
    snapshot_sha256: Mapped[str] = mapped_column(String(64))
    snapshot_bytes: Mapped[int] = mapped_column(Integer)
    checks: Mapped[str] = mapped_column(Text, default="{}")  # JSON report of the checks
    verdict: Mapped[str] = mapped_column(String(16), default="")  # pass | warn | fail
    created_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))
    # JSON {files: [{name, bytes, sha256, watermark}], provenance_sha256, released_at},
    # set with the approved -> released transition (shuyu_platform.egress.release).
    release_manifest: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        CheckConstraint("kind IN ('cells', 'file', 'dashboard', 'job')", name="ck_egress_kind"),
        Index("ix_egress_tenant_status", "tenant", "status"),
    )


class EgressDecision(Base):
    """One transition of an egress request: who, from which status to which, and why."""

    __tablename__ = "egress_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("egress_requests.id"))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[str] = mapped_column(String(32))

    __table_args__ = (Index("ix_egress_decision_request", "request_id"),)


class Application(Base):
    """A tenant's application for one scenario and its data grants (R19, R20).

    Status changes follow :data:`shuyu_platform.workflow.applications.TRANSITIONS`; each is an
    :class:`ApplicationDecision` and an audit event in the same transaction.
    """

    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    applicant: Mapped[str] = mapped_column(String(255))
    scenario: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(Text)
    security_measures: Mapped[str] = mapped_column(Text)
    nature: Mapped[str] = mapped_column(String(32))  # public_interest | commercial
    period_start: Mapped[str] = mapped_column(String(10))  # ISO date
    period_end: Mapped[str] = mapped_column(String(10))
    datasets: Mapped[str] = mapped_column(Text)  # JSON [{dataset, fields, epsilon, department}]
    status: Mapped[str] = mapped_column(String(32))
    deadline: Mapped[str] = mapped_column(String(32))  # of the current stage, UTC
    extended: Mapped[bool] = mapped_column(Boolean, default=False)  # in the current stage
    grant_ids: Mapped[str] = mapped_column(Text, default="[]")  # JSON, once approved
    created_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))

    __table_args__ = (
        CheckConstraint(
            "nature IN ('public_interest', 'commercial')", name="ck_application_nature"
        ),
        Index("ix_application_tenant_status", "tenant", "status"),
    )


class ApplicationDecision(Base):
    """One transition of an application: who, for which department, from which status."""

    __tablename__ = "application_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    department: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[str] = mapped_column(String(32))


class Registration(Base):
    """An organisation's application to join as a data merchant (R18).

    ``submitted`` until the operator approves (creating the tenant's accounts) or
    rejects it with reasons; see :mod:`shuyu_platform.workflow.onboarding`.
    """

    __tablename__ = "registrations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_name: Mapped[str] = mapped_column(Text)
    uscc: Mapped[str] = mapped_column(String(18))  # unified social credit code
    contact_name: Mapped[str] = mapped_column(Text)
    contact_phone: Mapped[str] = mapped_column(String(20))
    tenant: Mapped[str] = mapped_column(String(64))  # the tenant slug asked for
    users: Mapped[str] = mapped_column(Text)  # JSON [{username, real_name}]
    status: Mapped[str] = mapped_column(String(16))
    deadline: Mapped[str] = mapped_column(String(32))  # the operator's, UTC
    decided_by: Mapped[str] = mapped_column(String(255), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    # SHA-256 of the token the applicant was given to follow the registration; the
    # token itself is shown once, at submission.
    status_token_sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(32))


class OutputVolume(Base):
    """Bytes a user's servers sent to the browser on one UTC day, by kind (R15).

    Written by the hub-side egress gateway (:mod:`shuyu_platform.egress.metering`):
    ``kind`` is ``http`` for response bodies or ``ws:<msg_type>`` for kernel websocket
    frames (``ws:other`` for anything else). The daily cap is checked against the sum
    over kinds.
    """

    __tablename__ = "output_volumes"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("ix_output_volume_day", "day"),)


class Job(Base):
    """A sealed production run: frozen code run on production inputs, results via review.

    The code is frozen at submission in the jobs zone (``jobs/<id>/code.json``, read-only,
    its SHA-256 here); every status change follows
    :data:`shuyu_platform.jobs.queue.TRANSITIONS` and is audited in the same transaction.
    When a run ends its outputs and log become the egress request ``request_id``.
    """

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # notebook | script
    entry: Mapped[str] = mapped_column(Text)  # the notebook or script, relative path
    purpose: Mapped[str] = mapped_column(Text)
    parameters: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON
    outputs: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of glob patterns
    code_sha256: Mapped[str] = mapped_column(String(64))
    code_bytes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    runner: Mapped[str] = mapped_column(String(64), default="")  # who claimed the run
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it failed, for the merchant
    usage: Mapped[str] = mapped_column(Text, default="{}")  # JSON: wall, cpu, memory, disk
    inputs: Mapped[str] = mapped_column(Text, default="{}")  # JSON {dataset: sha256}
    request_id: Mapped[str] = mapped_column(String(32), default="")  # its egress request
    created_at: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[str] = mapped_column(String(32), default="")
    ended_at: Mapped[str] = mapped_column(String(32), default="")
    updated_at: Mapped[str] = mapped_column(String(32))

    __table_args__ = (
        CheckConstraint("kind IN ('notebook', 'script')", name="ck_job_kind"),
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')",
            name="ck_job_status",
        ),
        Index("ix_job_status", "status", "created_at"),
        Index("ix_job_tenant", "tenant", "status"),
    )


class RawVersion(Base):
    """One version of a dataset's raw data, as a source department supplied it (R21).

    The file ``raw/<dataset>/<version>.parquet`` is written once and never changed; the
    dataset's current version is the one ``raw/<dataset>.parquet`` links to (see
    :mod:`shuyu_platform.data.supply`). ``status``: ``stored`` (written, not yet
    current), ``current``, ``superseded``, ``withdrawn`` (R23: never computed on
    again) or ``expired`` (removed by the retention setting).
    """

    __tablename__ = "raw_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    source_name: Mapped[str] = mapped_column(Text, default="")  # the supplied file's name
    supplied_by: Mapped[str] = mapped_column(String(255))
    supplied_at: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    current_since: Mapped[str] = mapped_column(String(32), default="")
    ended_by: Mapped[str] = mapped_column(String(255), default="")
    ended_at: Mapped[str] = mapped_column(String(32), default="")
    end_reason: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        UniqueConstraint("dataset", "version", name="uq_raw_version"),
        CheckConstraint(
            "status IN ('stored', 'current', 'superseded', 'withdrawn', 'expired')",
            name="ck_raw_version_status",
        ),
    )


class Rebuild(Base):
    """The background rebuild of a dataset's views and twin after a new raw version.

    ``done`` of ``total`` steps (one per tenant view, one for the twin); operators watch
    it through the supply API and ``shuyu supply status``.
    """

    __tablename__ = "rebuilds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str] = mapped_column(Text, default="")  # what failed, or the step now
    started_at: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[str] = mapped_column(String(32), default="")

    __table_args__ = (
        CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_rebuild_status"),
        Index("ix_rebuild_dataset", "dataset"),
    )


class Import(Base):
    """A merchant's own data brought into the domain after review (R21).

    ``submitted`` after the automatic checks; a reviewer ``approved`` or ``rejected`` it
    by ``deadline``; an approved import is stored under ``imports/<tenant>/<id>/`` and
    mounted read-only in the tenant's sandboxes until the merchant ``deleted`` it. See
    :mod:`shuyu_platform.ingress.imports`.
    """

    __tablename__ = "imports"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))  # /data/imports/<name>.parquet
    filename: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(255))
    lawful_source: Mapped[str] = mapped_column(Text)
    authorisation: Mapped[str] = mapped_column(Text)
    scenario: Mapped[str] = mapped_column(Text)
    fields: Mapped[str] = mapped_column(Text)  # JSON {column: {identifier, sensitive}}
    sha256: Mapped[str] = mapped_column(String(64))  # of the file as submitted
    rows: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer)
    checks: Mapped[str] = mapped_column(Text)  # JSON report of the automatic checks
    status: Mapped[str] = mapped_column(String(16))
    deadline: Mapped[str] = mapped_column(String(32))
    decided_by: Mapped[str] = mapped_column(String(255), default="")
    decided_at: Mapped[str] = mapped_column(String(32), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    stored_sha256: Mapped[str] = mapped_column(String(64), default="")  # pseudonymised file
    deleted_by: Mapped[str] = mapped_column(String(255), default="")
    deleted_at: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[str] = mapped_column(String(32))

    __table_args__ = (
        CheckConstraint(
            "status IN ('submitted', 'approved', 'rejected', 'deleted')", name="ck_import_status"
        ),
        Index("ix_import_tenant_status", "tenant", "status"),
    )


class Incident(Base):
    """One start of the emergency plan (R24): a real incident or a drill on a scratch copy.

    ``suspended`` lists (JSON) what the start suspended, ``stopped_servers`` the servers
    it stopped; ``audit_seq``/``audit_hash`` are the chain head it signed, ``checkpoint``
    the signed checkpoint line; ``seconds`` how long the start took. See
    :mod:`shuyu_platform.operations.emergency`.
    """

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # incident | drill
    scope: Mapped[str] = mapped_column(String(16))  # tenant | dataset | all
    subject: Mapped[str] = mapped_column(String(64))  # tenant slug, dataset name, or "*"
    reason: Mapped[str] = mapped_column(Text)
    started_by: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[str] = mapped_column(String(32))
    suspended: Mapped[str] = mapped_column(Text)  # JSON [{kind, slug}]
    stopped_servers: Mapped[str] = mapped_column(Text)  # JSON [name]
    audit_seq: Mapped[int] = mapped_column(Integer)
    audit_hash: Mapped[str] = mapped_column(String(64))
    checkpoint: Mapped[str] = mapped_column(Text)  # the signed checkpoint's JSON line
    seconds: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        CheckConstraint("kind IN ('incident', 'drill')", name="ck_incident_kind"),
        CheckConstraint("scope IN ('tenant', 'dataset', 'all')", name="ck_incident_scope"),
    )


class Alert(Base):
    """One alert raised by a rule over the audit chain and the platform's state (R15).

    ``event_seqs`` (JSON list) are the audit records behind it; ``last_seq`` the newest,
    so the same records never raise the same rule twice. ``webhook`` says whether the
    webhook took it (``sent``, ``failed``, ``none``). See
    :mod:`shuyu_platform.operations.alerts`.
    """

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(Text)
    event_seqs: Mapped[str] = mapped_column(Text)
    last_seq: Mapped[int] = mapped_column(Integer)
    raised_at: Mapped[str] = mapped_column(String(32))
    webhook: Mapped[str] = mapped_column(String(16))

    __table_args__ = (Index("ix_alert_rule_subject", "rule", "subject"),)
