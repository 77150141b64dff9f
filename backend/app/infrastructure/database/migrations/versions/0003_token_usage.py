"""Token usage: tokens in and out per history row (flagged when estimated) and summed per key.

Revision ID: 0003_tokens
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_tokens"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows written before this migration have no token counts: NULL (unknown), not 0.
    with op.batch_alter_table("request_history") as table:
        table.add_column(sa.Column("input_tokens", sa.Integer(), nullable=True))
        table.add_column(sa.Column("output_tokens", sa.Integer(), nullable=True))
        table.add_column(
            sa.Column("tokens_estimated", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("api_keys") as table:
        table.add_column(
            sa.Column("input_tokens", sa.Integer(), nullable=False, server_default="0")
        )
        table.add_column(
            sa.Column("output_tokens", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as table:
        table.drop_column("output_tokens")
        table.drop_column("input_tokens")
    with op.batch_alter_table("request_history") as table:
        table.drop_column("tokens_estimated")
        table.drop_column("output_tokens")
        table.drop_column("input_tokens")
