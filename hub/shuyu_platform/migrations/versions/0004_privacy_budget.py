"""Privacy-budget ledger and registered DP releases (R4, R11).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_budgets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("spent_micro", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("tenant", "scenario", "dataset", name="uq_budget_account"),
        sa.CheckConstraint("spent_micro >= 0", name="ck_budget_spent"),
    )
    op.create_table(
        "dp_releases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("budget_id", sa.Integer(), sa.ForeignKey("privacy_budgets.id"), nullable=False),
        sa.Column("grant_id", sa.Integer(), sa.ForeignKey("grants.id"), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("epsilon_micro", sa.Integer(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("answer_sha256", sa.String(64), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("released_at", sa.String(32), nullable=False),
        sa.CheckConstraint("status IN ('debited', 'released', 'failed')", name="ck_release_status"),
        sa.CheckConstraint("kind IN ('query', 'model')", name="ck_release_kind"),
    )
    op.create_index("ix_release_tenant", "dp_releases", ["tenant", "dataset"])
    op.create_index("ix_release_answer", "dp_releases", ["answer_sha256"])


def downgrade() -> None:
    op.drop_index("ix_release_answer", table_name="dp_releases")
    op.drop_index("ix_release_tenant", table_name="dp_releases")
    op.drop_table("dp_releases")
    op.drop_table("privacy_budgets")
