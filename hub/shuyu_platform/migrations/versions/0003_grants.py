"""Grants: a tenant's fields, rows, DP budget and expiry per dataset (R7, R9).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("row_filter", sa.Text(), nullable=False),
        sa.Column("budget_epsilon", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_by", sa.String(255), nullable=False),
        sa.Column("issued_at", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.String(32), nullable=False),
        sa.Column("ended_by", sa.String(255), nullable=False),
        sa.Column("ended_at", sa.String(32), nullable=False),
        sa.Column("end_reason", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'revoked', 'expired', 'replaced')", name="ck_grant_status"
        ),
        sa.CheckConstraint("budget_epsilon >= 0", name="ck_grant_budget"),
    )
    op.create_index("ix_grant_tenant_dataset", "grants", ["tenant", "dataset"])


def downgrade() -> None:
    op.drop_index("ix_grant_tenant_dataset", table_name="grants")
    op.drop_table("grants")
