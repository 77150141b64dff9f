"""Database engine → migrations → tables, on SQLite and PostgreSQL; an outage seen from the API."""

import sqlite3
from datetime import UTC, datetime

import pytest
from app.core.exceptions import DatabaseUnavailableError
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import RequestHistory
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend
from fakes.services import free_port
from shared.errors import ErrorResponse
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

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


on_sqlite = pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
on_postgresql = pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)


def sqlite_path(backend: DatabaseBackend) -> str:
    return make_url(backend.url).database or ""


def history_row(api_key_id: str, *, row_id: int | None = None) -> RequestHistory:
    return RequestHistory(
        id=row_id,
        api_key_id=api_key_id,
        operation="summarize",
        text_length=1,
        text_sha256="0" * 64,
        model="local",
        cached=False,
        degraded=False,
        latency_ms=1.0,
        outcome="ok",
        created_at=datetime.now(UTC),
    )


class TestOutageOrBug:
    """Seam: Database.session → the driver's own errors (SQLSTATE, SQLite result codes) →
    DatabaseUnavailableError for "not now", the driver's error for a bug.

    Paths: DB-03
    Real: SQLAlchemy, aiosqlite on a migrated SQLite file, asyncpg on the worker's PostgreSQL
    database; the lock holder (sqlite3) and the backend terminator (pg_terminate_backend).
    Faked: nothing.
    """

    @on_sqlite
    @pytest.mark.covers("DB-03")
    async def test_sqlite_locked_past_busy_timeout_raises_database_unavailable(
        self, database_backend: DatabaseBackend
    ):
        """A write lock held longer than the busy timeout is an outage, told by SQLITE_BUSY.

        Integration scope: Database.session (busy timeout 50 ms) → aiosqlite → a file whose
        write lock another connection holds.
        Business impact: a long writer (a migration, a backup) makes requests wait, then
        answer a retryable 503, not a 500.
        Test strategy: hold `BEGIN EXCLUSIVE` in a sqlite3 connection of the test's own;
        write through the Database; release; write again.
        Success criteria: DatabaseUnavailableError with a Retry-After, caused by the driver's
        SQLITE_BUSY; the write after the release commits.
        """
        database = Database(database_backend.url, busy_timeout_seconds=0.05)
        holder = sqlite3.connect(sqlite_path(database_backend), isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            with pytest.raises(DatabaseUnavailableError) as caught:
                async with database.session() as session:
                    session.add(history_row("k1"))
            holder.execute("ROLLBACK")
            async with database.session() as session:
                session.add(history_row("k2"))
        finally:
            holder.close()
            await database.dispose()

        assert caught.value.retry_after_seconds == 1.0
        assert isinstance(caught.value.__cause__, OperationalError)
        assert caught.value.__cause__.orig.sqlite_errorname == "SQLITE_BUSY"  # type: ignore[union-attr]

    @on_sqlite
    @pytest.mark.covers("DB-03")
    async def test_sqlite_bad_sql_raises_the_driver_error_not_unavailable(
        self, database_backend: DatabaseBackend
    ):
        """Bad SQL is a bug (SQLITE_ERROR), though SQLite raises it as an OperationalError too.

        Integration scope: Database.session → aiosqlite → a statement SQLite cannot parse.
        Business impact: a bug must surface as a 500 that pages someone, not hide as an
        "outage" that clients retry for ever.
        Test strategy: execute a misspelt statement in a session.
        Success criteria: SQLAlchemy's OperationalError, not DatabaseUnavailableError.
        """
        database = Database(database_backend.url)
        try:
            with pytest.raises(OperationalError) as caught:
                async with database.session() as session:
                    await session.execute(text("SELEC 1"))
        finally:
            await database.dispose()

        assert not isinstance(caught.value, DatabaseUnavailableError)

    @on_postgresql
    @pytest.mark.covers("DB-03")
    async def test_postgres_backend_terminated_raises_database_unavailable(
        self, database_backend: DatabaseBackend
    ):
        """A server process ended under a session (57P01 admin shutdown, class 08 after it)
        is an outage; the next session gets a fresh connection.

        Integration scope: Database.session → a pooled asyncpg connection → its backend
        ended by pg_terminate_backend from a connection of the test's own.
        Business impact: failovers and restarts end server processes under live sessions;
        those requests must get a retryable 503.
        Test strategy: learn the session's backend pid; terminate it from a second
        Database; run another statement in the first session; then open a new session.
        Success criteria: DatabaseUnavailableError; the new session answers.
        """
        database, admin = Database(database_backend.url), Database(database_backend.url)

        async def query_after_its_backend_ended() -> None:
            async with database.session() as session:
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                async with admin.session() as other:
                    await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                await session.execute(text("SELECT 1"))

        try:
            with pytest.raises(DatabaseUnavailableError):
                await query_after_its_backend_ended()
            async with database.session() as session:
                answer = await session.scalar(text("SELECT 1"))
        finally:
            await admin.dispose()
            await database.dispose()

        assert answer == 1

    @on_postgresql
    @pytest.mark.covers("DB-03")
    async def test_postgres_unique_violation_raises_integrity_error(
        self, database_backend: DatabaseBackend
    ):
        """A constraint violation (SQLSTATE 23505) is the caller's to handle, not an outage.

        Integration scope: Database.session → asyncpg → a duplicate primary key.
        Business impact: a conflict must reach the code that turns it into a 409, not be
        retried as a 503.
        Test strategy: insert a history row, then another with the same id.
        Success criteria: IntegrityError, not DatabaseUnavailableError.
        """
        database = Database(database_backend.url)
        try:
            async with database.session() as session:
                session.add(history_row("k1", row_id=7))
            with pytest.raises(IntegrityError) as caught:
                async with database.session() as session:
                    session.add(history_row("k1", row_id=7))
        finally:
            await database.dispose()

        assert not isinstance(caught.value, DatabaseUnavailableError)
