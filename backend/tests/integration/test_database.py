"""Database engine → migrations → tables, on SQLite and PostgreSQL; an outage seen from the API."""

from datetime import UTC, datetime

import pytest
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import RequestHistory
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend
from fakes.services import free_port
from shared.errors import ErrorResponse
from sqlalchemy import select

OPERATOR = {"X-API-Key": OPERATOR_KEY}


class TestDatabaseRoundTrip:
    """Seam: Database (SQLAlchemy async) → driver (aiosqlite, asyncpg) → migrated schema; an outage
    seen from the API.

    Paths: DB-01, DB-02
    Real: SQLAlchemy and the drivers on a migrated SQLite file and PostgreSQL database; for the
    outage, the app over in-process HTTP and asyncpg meeting a closed port.
    Faked: nothing: the unreachable database is a real refused connection.
    """

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
    async def test_unreachable_database_answers_503_never_a_driver_error(
        self, make_client: ClientFactory
    ):
        """An outage reaches callers as our 503 `database_unavailable`, never as a driver error.

        Integration scope: routes that read (history), write (registration) and probe
        (readiness) → Database sessions → asyncpg connecting to a port nothing listens on →
        error translation → error handler.
        Business impact: clients and load balancers see a clear, retryable 503 instead of a 500
        carrying a driver's stack trace.
        Test strategy: start the app on a PostgreSQL URL whose port is closed; read the history,
        register an account, ask for readiness.
        Success criteria: 503 `database_unavailable` in the shared error body for the read and
        the write; readiness reports the database down.
        """
        closed = DatabaseBackend(
            "postgresql", f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
        )
        client = await make_client(database=closed)

        read = await client.get("/v1/history")
        write = await client.post(
            "/v1/auth/register", json={"email": "ada@example.com", "display_name": "Ada"}
        )
        readiness = await client.get("/internal/health", headers=OPERATOR)

        for response in (read, write):
            assert response.status_code == 503
            assert ErrorResponse.model_validate(response.json()).error.code == (
                "database_unavailable"
            )
        statuses = {dep["name"]: dep["status"] for dep in readiness.json()["dependencies"]}
        assert statuses["database"] == "down"
