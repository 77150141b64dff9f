"""Streamed requests in the history: whether a row is a stream, and its time to first token.

Revision ID: 0004_stream
Revises: 0003_tokens
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_stream"
down_revision: str | None = "0003_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch_alter_table: SQLite cannot alter a table in place; Alembic copies it there, and on
    # PostgreSQL it is a plain ALTER TABLE. Existing rows were all answered whole: not streamed.
    with op.batch_alter_table("request_history") as table:
        table.add_column(
            sa.Column("streamed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        table.add_column(sa.Column("time_to_first_token_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_history") as table:
        table.drop_column("time_to_first_token_ms")
        table.drop_column("streamed")
