"""A global DP budget per dataset and period, and DP debits that settle (refunded).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

OLD = "status IN ('debited', 'released', 'failed')"
NEW = "status IN ('debited', 'released', 'failed', 'refunded')"


def _recreate() -> str:
    """SQLite cannot drop a constraint, so the table is copied; PostgreSQL alters it in
    place (a copy would drop what other tables' foreign keys refer to)."""
    return "always" if op.get_context().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    op.create_table(
        "dp_global_budgets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("spent_micro", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("dataset", "period", name="uq_global_budget"),
        sa.CheckConstraint("spent_micro >= 0", name="ck_global_budget_spent"),
    )
    with op.batch_alter_table("dp_releases", recreate=_recreate()) as batch:
        batch.add_column(
            sa.Column(
                "global_budget_id",
                sa.Integer(),
                sa.ForeignKey("dp_global_budgets.id", name="fk_release_global_budget"),
                nullable=True,
            )
        )
        batch.drop_constraint("ck_release_status", type_="check")
        batch.create_check_constraint("ck_release_status", sa.text(NEW))


def downgrade() -> None:
    with op.batch_alter_table("dp_releases", recreate=_recreate()) as batch:
        batch.drop_constraint("ck_release_status", type_="check")
        batch.create_check_constraint("ck_release_status", sa.text(OLD))
        batch.drop_column("global_budget_id")
    op.drop_table("dp_global_budgets")
