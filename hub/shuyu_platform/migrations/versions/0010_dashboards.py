"""Egress requests of kind 'dashboard': showcase notebooks published through review.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OLD = "kind IN ('cells', 'file')"
NEW = "kind IN ('cells', 'file', 'dashboard')"


def _kinds(check: str) -> None:
    # SQLite cannot drop a constraint: the table is copied. PostgreSQL alters it in place
    # (copying it there would drop the primary key that egress_decisions refers to).
    sqlite = op.get_context().dialect.name == "sqlite"
    with op.batch_alter_table("egress_requests", recreate="always" if sqlite else "auto") as batch:
        batch.drop_constraint("ck_egress_kind", type_="check")
        batch.create_check_constraint("ck_egress_kind", sa.text(check))


def upgrade() -> None:
    _kinds(NEW)


def downgrade() -> None:
    _kinds(OLD)
