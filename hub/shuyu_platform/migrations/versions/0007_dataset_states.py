"""Dataset suspension (R23).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_states",
        sa.Column("slug", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(255), nullable=False),
        sa.Column("changed_at", sa.String(32), nullable=False),
        sa.CheckConstraint("status IN ('active', 'suspended')", name="ck_dataset_status"),
    )


def downgrade() -> None:
    op.drop_table("dataset_states")
