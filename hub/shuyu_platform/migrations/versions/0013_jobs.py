"""Sealed production runs: the jobs queue, and egress requests of kind 'job'.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OLD = "kind IN ('cells', 'file', 'dashboard')"
NEW = "kind IN ('cells', 'file', 'dashboard', 'job')"
STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out')"


def _kinds(check: str) -> None:
    # SQLite cannot drop a constraint: the table is copied. PostgreSQL alters it in place.
    sqlite = op.get_context().dialect.name == "sqlite"
    with op.batch_alter_table("egress_requests", recreate="always" if sqlite else "auto") as batch:
        batch.drop_constraint("ck_egress_kind", type_="check")
        batch.create_check_constraint("ck_egress_kind", sa.text(check))


def upgrade() -> None:
    _kinds(NEW)
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("code_bytes", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("runner", sa.String(64), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("usage", sa.Text(), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("ended_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.CheckConstraint("kind IN ('notebook', 'script')", name="ck_job_kind"),
        sa.CheckConstraint(STATUSES, name="ck_job_status"),
    )
    op.create_index("ix_job_status", "jobs", ["status", "created_at"])
    op.create_index("ix_job_tenant", "jobs", ["tenant", "status"])


def downgrade() -> None:
    op.drop_index("ix_job_tenant", "jobs")
    op.drop_index("ix_job_status", "jobs")
    op.drop_table("jobs")
    _kinds(OLD)
