"""Versioned raw supply, view rebuilds, merchants' imports; DP releases name their version.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raw_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.Column("supplied_by", sa.String(255), nullable=False),
        sa.Column("supplied_at", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("current_since", sa.String(32), nullable=False),
        sa.Column("ended_by", sa.String(255), nullable=False),
        sa.Column("ended_at", sa.String(32), nullable=False),
        sa.Column("end_reason", sa.Text(), nullable=False),
        sa.UniqueConstraint("dataset", "version", name="uq_raw_version"),
        sa.CheckConstraint(
            "status IN ('stored', 'current', 'superseded', 'withdrawn', 'expired')",
            name="ck_raw_version_status",
        ),
    )
    op.create_table(
        "rebuilds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=False),
        sa.CheckConstraint("status IN ('running', 'done', 'failed')", name="ck_rebuild_status"),
    )
    op.create_index("ix_rebuild_dataset", "rebuilds", ["dataset"])
    op.create_table(
        "imports",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("lawful_source", sa.Text(), nullable=False),
        sa.Column("authorisation", sa.Text(), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("deadline", sa.String(32), nullable=False),
        sa.Column("decided_by", sa.String(255), nullable=False),
        sa.Column("decided_at", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("stored_sha256", sa.String(64), nullable=False),
        sa.Column("deleted_by", sa.String(255), nullable=False),
        sa.Column("deleted_at", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.CheckConstraint(
            "status IN ('submitted', 'approved', 'rejected', 'deleted')", name="ck_import_status"
        ),
    )
    op.create_index("ix_import_tenant_status", "imports", ["tenant", "status"])
    with op.batch_alter_table("dp_releases") as batch:
        batch.add_column(sa.Column("raw_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dp_releases") as batch:
        batch.drop_column("raw_version")
    op.drop_index("ix_import_tenant_status", "imports")
    op.drop_table("imports")
    op.drop_index("ix_rebuild_dataset", "rebuilds")
    op.drop_table("rebuilds")
    op.drop_table("raw_versions")
