"""Scenario applications and their decisions (R19, R20).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("applicant", sa.String(255), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("security_measures", sa.Text(), nullable=False),
        sa.Column("nature", sa.String(32), nullable=False),
        sa.Column("period_start", sa.String(10), nullable=False),
        sa.Column("period_end", sa.String(10), nullable=False),
        sa.Column("datasets", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("deadline", sa.String(32), nullable=False),
        sa.Column("extended", sa.Boolean(), nullable=False),
        sa.Column("grant_ids", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.CheckConstraint(
            "nature IN ('public_interest', 'commercial')", name="ck_application_nature"
        ),
    )
    op.create_index("ix_application_tenant_status", "applications", ["tenant", "status"])
    op.create_table(
        "application_decisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "application_id", sa.String(32), sa.ForeignKey("applications.id"), nullable=False
        ),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=False),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
    )
    op.create_index(
        "ix_application_decisions_application_id", "application_decisions", ["application_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_application_decisions_application_id", table_name="application_decisions")
    op.drop_table("application_decisions")
    op.drop_index("ix_application_tenant_status", table_name="applications")
    op.drop_table("applications")
