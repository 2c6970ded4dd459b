"""Output volumes metered by the egress gateway, per user, day and kind.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "output_volumes",
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_output_volume_day", "output_volumes", ["day"])


def downgrade() -> None:
    op.drop_index("ix_output_volume_day", "output_volumes")
    op.drop_table("output_volumes")
