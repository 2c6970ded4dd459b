"""Audit chain: append-only hash-chained events and the chain head.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.CheckConstraint("outcome IN ('ok', 'denied', 'error')", name="ck_audit_outcome"),
        sa.CheckConstraint(
            "actor_kind IN ('user', 'service', 'system')", name="ck_audit_actor_kind"
        ),
    )
    op.create_index("ix_audit_action", "audit_events", ["action"])
    op.create_index("ix_audit_actor", "audit_events", ["actor"])
    op.create_index("ix_audit_tenant", "audit_events", ["tenant"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_index("ix_audit_tenant", "audit_events")
    op.drop_index("ix_audit_actor", "audit_events")
    op.drop_index("ix_audit_action", "audit_events")
    op.drop_table("audit_events")
