"""Database engine → migrations → tables, on SQLite and PostgreSQL."""

from datetime import UTC, datetime

import pytest
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import RequestHistory
from conftest import DatabaseBackend
from sqlalchemy import select


class TestDatabaseRoundTrip:
    """Seam: Database (SQLAlchemy async) → driver (aiosqlite, asyncpg) → migrated schema."""

    @pytest.mark.covers("DB-01")
    async def test_row_written_is_read_back_with_aware_timestamp(
        self, database_backend: DatabaseBackend
    ):
        """A row survives the round trip and its timestamp keeps its timezone.

        Integration scope: migrations → session commit → a new session's query, per engine.
        Business impact: history timestamps must mean the same instant on SQLite and PostgreSQL
        (asyncpg rejects naive datetimes; SQLite silently accepts anything).
        Test strategy: write a RequestHistory row in one session, read it in another.
        Success criteria: same fields back, `created_at` timezone-aware and equal to the input.
        """
        database = Database(database_backend.url)
        created = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
        row = RequestHistory(
            api_key_id="k1",
            operation="summarize",
            text_length=42,
            text_sha256="0" * 64,
            model="local",
            cached=False,
            degraded=False,
            latency_ms=1.5,
            outcome="ok",
            created_at=created,
        )
        try:
            async with database.session() as session:
                session.add(row)

            async with database.session() as session:
                stored = (await session.execute(select(RequestHistory))).scalar_one()
        finally:
            await database.dispose()

        assert (stored.api_key_id, stored.text_length, stored.outcome) == ("k1", 42, "ok")
        assert stored.created_at.tzinfo is not None
        assert stored.created_at == created

    @pytest.mark.covers("DB-02")
    async def test_unreachable_database_raises_database_unavailable(self):
        """An outage surfaces as our DatabaseUnavailableError, never as a driver error.

        Integration scope: Database.session → asyncpg connection attempt → error translation.
        Business impact: the API maps it to a clear 503 instead of a 500 with a stack trace.
        Test strategy: open a session on a PostgreSQL URL whose port nothing listens on.
        Success criteria: DatabaseUnavailableError is raised; ping reports False.
        """
        from app.core.exceptions import DatabaseUnavailableError
        from fakes.services import free_port

        database = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
        try:
            with pytest.raises(DatabaseUnavailableError):
                async with database.session() as session:
                    await session.execute(select(RequestHistory))
            assert await database.ping() is False
        finally:
            await database.dispose()
