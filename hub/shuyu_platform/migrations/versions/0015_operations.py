"""Operations: incidents and drills of the emergency plan (R24), raised alerts (R15).

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("started_by", sa.String(255), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("suspended", sa.Text(), nullable=False),
        sa.Column("stopped_servers", sa.Text(), nullable=False),
        sa.Column("audit_seq", sa.Integer(), nullable=False),
        sa.Column("audit_hash", sa.String(64), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.CheckConstraint("kind IN ('incident', 'drill')", name="ck_incident_kind"),
        sa.CheckConstraint("scope IN ('tenant', 'dataset', 'all')", name="ck_incident_scope"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("event_seqs", sa.Text(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("raised_at", sa.String(32), nullable=False),
        sa.Column("webhook", sa.String(16), nullable=False),
        sa.Index("ix_alert_rule_subject", "rule", "subject"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("incidents")
