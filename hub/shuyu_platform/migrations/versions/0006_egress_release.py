"""The manifest of a released egress request (R12).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("egress_requests") as batch:
        batch.add_column(
            sa.Column("release_manifest", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("egress_requests") as batch:
        batch.drop_column("release_manifest")
