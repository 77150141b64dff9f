"""Batch jobs: the jobs, their items, and history rows that name the job and item they were.

Revision ID: 0005_jobs
Revises: 0004_stream
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_jobs"
down_revision: str | None = "0004_stream"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("api_key_id", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(32), nullable=True),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_jobs_api_key_id_created_at", "jobs", ["api_key_id", "created_at"])
    op.create_table(
        "job_items",
        sa.Column(
            "job_id",
            sa.String(32),
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_job_items_job_id"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("ref", sa.String(200), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_job_items_job_id_status", "job_items", ["job_id", "status"])
    # batch_alter_table: SQLite cannot alter a table in place (Alembic copies it there).
    with op.batch_alter_table("request_history") as table:
        table.add_column(sa.Column("job_id", sa.String(32), nullable=True))
        table.add_column(sa.Column("job_item", sa.Integer(), nullable=True))
        # NULLs are distinct in a unique index on both engines: rows of plain requests never clash.
        table.create_index("uq_request_history_job_item", ["job_id", "job_item"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("request_history") as table:
        table.drop_index("uq_request_history_job_item")
        table.drop_column("job_item")
        table.drop_column("job_id")
    op.drop_index("ix_job_items_job_id_status", table_name="job_items")
    op.drop_table("job_items")
    op.drop_index("ix_jobs_api_key_id_created_at", table_name="jobs")
    op.drop_table("jobs")
