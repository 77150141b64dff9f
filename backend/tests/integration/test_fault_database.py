"""Database faults: writes refused with a clear 503, readiness down, nothing half-written.

PostgreSQL is reached through a loopback proxy the test cuts (or one that breaks a connection
mid-transaction), so the shared server itself is never touched; or it is a private cluster the
test starts itself (initdb, pg_ctl), kills and restarts, or holds in recovery. SQLite loses its
volume (the database's folder disappears, as when a mount is missing). Rows are counted
afterwards through a connection of the test's own, straight to the database.
"""

import asyncio
import hashlib
import os
import pwd
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import Account, ApiKey, RequestHistory
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend
from fakes.providers import FakeProvider
from fakes.services import (
    PostgresCluster,
    port_no_one_else_gets,
    postgres_bindir,
    unavailable,
)
from fakes.tcp_proxy import TcpProxy
from httpx import AsyncClient, Response
from shared.errors import ErrorResponse
from shared.health import ReadinessResponse
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

OPERATOR = {"X-API-Key": OPERATOR_KEY}
QUESTION = {"operation": "summarize", "text": "The dam held through the storm. Roads reopened."}
WARM_UP = {"operation": "sentiment", "text": "The new library is bright, quiet and well stocked."}
EMAIL = "grace@example.com"


# The conftest's tier fixture, narrowed to one engine: each fault below is specific to it.
on_postgresql = pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
on_sqlite = pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)


def through(proxy: TcpProxy, backend: DatabaseBackend) -> DatabaseBackend:
    """The same database, reached through `proxy`."""
    url = make_url(backend.url).set(host="127.0.0.1", port=proxy.port)
    return DatabaseBackend(f"{backend.name}-proxied", url.render_as_string(hide_password=False))


def upstream(backend: DatabaseBackend) -> tuple[str, int]:
    url = make_url(backend.url)
    return url.host or "127.0.0.1", url.port or 5432


async def register(client: AsyncClient) -> Response:
    return await client.post("/v1/auth/register", json={"email": EMAIL, "display_name": "Grace"})


def error_code(response: Response) -> str:
    """The code of a response carrying the shared error body (validated, not just read)."""
    return ErrorResponse.model_validate(response.json()).error.code


async def database_status(client: AsyncClient) -> str:
    response = await client.get("/internal/health", headers=OPERATOR)
    body = ReadinessResponse.model_validate(response.json())
    (database,) = (dep for dep in body.dependencies if dep.name == "database")
    return database.status


async def row_counts(backend: DatabaseBackend) -> dict[str, int]:
    """Rows per table, and accounts without a key, read straight from the database."""
    keyless = ~Account.id.in_(select(ApiKey.account_id))
    queries = {
        "history": select(func.count()).select_from(RequestHistory),
        "accounts": select(func.count()).select_from(Account),
        "keys": select(func.count()).select_from(ApiKey),
        "keyless_accounts": select(func.count()).select_from(Account).where(keyless),
    }
    database = Database(backend.url)
    try:
        async with database.session() as session:
            return {name: await session.scalar(query) or 0 for name, query in queries.items()}
    finally:
        await database.dispose()


@on_postgresql
class TestPostgresUnreachable:
    """Seam: API writes (history, registration) → Database sessions → PostgreSQL, through a proxy
    the test cuts and restores.

    Paths: FAULT-04
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    PostgreSQL behind a loopback TCP proxy that drops every connection, or resets one mid-
    transaction (a real partition, real driver errors).
    Faked: the AI provider (FakeProvider).
    """

    @pytest.mark.covers("FAULT-04")
    async def test_database_cut_writes_get_503_readiness_down_then_clean_recovery(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        provider: FakeProvider,
    ):
        """Losing the database refuses writes with a clear 503; its return needs no restart.

        Integration scope: text processing (history row) and registration (account and key)
        → sessions over a pooled asyncpg connection the cut kills → error mapping; readiness.
        Business impact: callers and load balancers see an honest, retryable "database
        unavailable" rather than a 500, and no retry meets a half-registered account.
        Test strategy: one request to fill the pool; cut the proxy; process a new text,
        register, probe readiness; restore; register the same email and process the same text.
        Success criteria: both writes 503 `database_unavailable` in the shared error body;
        database `down`; after restore 201 for the same email (nothing of it was committed)
        and the text answered from the cache without a second provider call (the answer was
        kept, only its history row was lost); one history row per 200, one account, one key.
        """
        async with TcpProxy(*upstream(database_backend)) as proxy:
            client = await make_client(
                database=through(proxy, database_backend), model=provider.model
            )
            warm = await client.post("/v1/text/process", json=WARM_UP)

            await proxy.cut()
            processed = await client.post("/v1/text/process", json=QUESTION)
            registered = await register(client)
            status_during = await database_status(client)
            await proxy.restore()
            registered_again = await register(client)
            processed_again = await client.post("/v1/text/process", json=QUESTION)

        assert warm.status_code == 200
        assert (processed.status_code, error_code(processed)) == (503, "database_unavailable")
        assert (registered.status_code, error_code(registered)) == (503, "database_unavailable")
        assert status_during == "down"
        assert registered_again.status_code == 201
        assert processed_again.json()["cached"] is True
        assert provider.calls == 2
        assert await row_counts(database_backend) == {
            "history": 2,
            "accounts": 1,
            "keys": 1,
            "keyless_accounts": 0,
        }

    @pytest.mark.covers("FAULT-04")
    async def test_connections_dropped_between_requests_next_write_still_200(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        provider: FakeProvider,
    ):
        """A database that closed the connections the app holds (a restart, a failover, an
        idle timeout) between two requests costs the next request nothing.

        Integration scope: the history's group commit, which keeps its connection from one
        batch to the next (KeptConnection), and the pool's pre-ping for every other checkout →
        connections the proxy has dropped → a fresh connection for the same transaction.
        Business impact: a kept connection trades the pool's pre-ping for CPU; without the
        retry on a fresh connection, the first request after every database restart would be
        a 503 although the database is up.
        Test strategy: one request (its history row committed on the kept connection, kept
        for a minute so that a slow machine still meets it kept); drop every connection at the
        proxy and accept new ones at once; process a new text.
        Success criteria: both 200; two history rows.
        """
        async with TcpProxy(*upstream(database_backend)) as proxy:
            client = await make_client(
                database=through(proxy, database_backend),
                model=provider.model,
                database_keep_connection_seconds=60,
            )
            warm = await client.post("/v1/text/process", json=WARM_UP)

            await proxy.cut()
            await proxy.restore()
            after = await client.post("/v1/text/process", json=QUESTION)

        assert (warm.status_code, after.status_code) == (200, 200), after.text
        assert (await row_counts(database_backend))["history"] == 2

    @pytest.mark.covers("FAULT-04")
    async def test_connection_lost_mid_registration_leaves_no_account(
        self, make_client: ClientFactory, database_backend: DatabaseBackend
    ):
        """A registration cut between its two inserts is rolled back whole.

        Integration scope: registration's transaction (account insert, then key insert) →
        asyncpg → PostgreSQL, through a proxy that resets the connection as the key insert
        is sent.
        Business impact: an account without a key could never be used nor registered again
        (its email is taken); a customer must be able to simply retry.
        Test strategy: register once through the tripwire, then again with the same email.
        Success criteria: the first is 503 `database_unavailable`; the retry is 201; the
        database holds one account and one key, and no account without a key.
        """
        async with TcpProxy(*upstream(database_backend), trip_on=b"INSERT INTO api_keys") as proxy:
            client = await make_client(database=through(proxy, database_backend))
            lost = await register(client)
            retried = await register(client)

        assert proxy.tripped
        assert (lost.status_code, error_code(lost)) == (503, "database_unavailable")
        assert retried.status_code == 201
        assert await row_counts(database_backend) == {
            "history": 0,
            "accounts": 1,
            "keys": 1,
            "keyless_accounts": 0,
        }


@contextmanager
def missing(folder: Path) -> Iterator[None]:
    """`folder` is gone (moved aside) inside the block, as with an unmounted volume."""
    aside = folder.with_name(folder.name + "-unmounted")
    folder.rename(aside)
    try:
        yield
    finally:
        aside.rename(folder)


@on_sqlite
class TestSqliteVolumeMissing:
    """Seam: API writes → Database sessions → a SQLite file whose folder has disappeared.

    Paths: FAULT-04
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    aiosqlite on a real file whose folder the test moves away and back.
    Faked: the AI provider (FakeProvider).
    """

    @pytest.mark.covers("FAULT-04")
    async def test_database_folder_gone_writes_get_503_until_it_returns(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        provider: FakeProvider,
    ):
        """A SQLite database that cannot be opened is an outage, reported as one.

        Integration scope: text processing and registration → SQLite connections that cannot
        open the file → error mapping; readiness; the same app once the folder is back.
        Business impact: a missing volume shows as a 503 and a `down` probe an operator can
        act on, not as 500s; the app recovers when the volume returns, with no restart.
        Test strategy: start the app; move the database's folder away before its first
        query (an open connection would keep the moved file); process, register, probe;
        move the folder back; repeat both writes.
        Success criteria: 503 `database_unavailable` for both writes and database `down`;
        afterwards 201 and a cached 200; one history row, one account with its key.
        """
        volume = Path(make_url(database_backend.url).database or "").parent
        client = await make_client(database=database_backend, model=provider.model)

        with missing(volume):
            processed = await client.post("/v1/text/process", json=QUESTION)
            registered = await register(client)
            status_during = await database_status(client)
        registered_again = await register(client)
        processed_again = await client.post("/v1/text/process", json=QUESTION)

        assert (processed.status_code, error_code(processed)) == (503, "database_unavailable")
        assert (registered.status_code, error_code(registered)) == (503, "database_unavailable")
        assert status_during == "down"
        assert registered_again.status_code == 201
        assert processed_again.json()["cached"] is True
        assert provider.calls == 1
        assert await row_counts(database_backend) == {
            "history": 1,
            "accounts": 1,
            "keys": 1,
            "keyless_accounts": 0,
        }


# --- A PostgreSQL of the test's own: killed, restarted, held in recovery -----------------------

READY_DEADLINE = 20.0  # seconds a private cluster may take to accept connections again


def _postgres_user_missing() -> bool:
    """As root, PostgreSQL must run as `postgres`; is there no such user?"""
    if os.geteuid() != 0:
        return False
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return True
    return False


@pytest.fixture(scope="session")
async def postgres_template() -> AsyncIterator[PostgresCluster]:
    """One migrated, stopped cluster per session; each test starts a copy (initdb takes
    seconds, a copy a fraction of one)."""
    bindir = postgres_bindir()
    if bindir is None:
        unavailable("no `initdb` on PATH nor in /usr/lib/postgresql: needed for a private cluster")
    if _postgres_user_missing():
        unavailable("running as root with no `postgres` user to run a private PostgreSQL")
    assert bindir is not None
    template = PostgresCluster.initialize(bindir, port_no_one_else_gets())
    try:
        template.start()
        database = Database(template.url)
        try:
            await database.migrate()
        finally:
            await database.dispose()
        template.stop()
        yield template
    finally:
        template.close()


@pytest.fixture
def postgres_cluster(postgres_template: PostgresCluster) -> Iterator[PostgresCluster]:
    """A running, migrated cluster for this test alone, on a port nobody else gets."""
    cluster = postgres_template.copy(port_no_one_else_gets())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def own(cluster: PostgresCluster) -> DatabaseBackend:
    return DatabaseBackend("postgres-cluster", cluster.url)


async def wait_until_accepting(cluster: PostgresCluster) -> None:
    """Polls with a connection of the test's own until the cluster accepts it."""
    database = Database(cluster.url)
    deadline = time.monotonic() + READY_DEADLINE
    try:
        while not await database.ping():
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL at {cluster.url} refused for {READY_DEADLINE}s")
            await asyncio.sleep(0.02)
    finally:
        await database.dispose()


def text_of(index: int) -> str:
    return f"Report {index}: the harbour reopened after the storm and ferries ran late."


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def history_hashes(backend: DatabaseBackend) -> list[str]:
    database = Database(backend.url)
    try:
        async with database.session() as session:
            return list(await session.scalars(select(RequestHistory.text_sha256)))
    finally:
        await database.dispose()


@pytest.mark.tiers("postgresql")
class TestPostgresRestarting:
    """Seam: API reads and writes → Database sessions (pre-ping pool) → a private PostgreSQL
    that is killed and restarted, or held in recovery (SQLSTATE 57P03).

    Paths: FAULT-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    asyncpg and SQLAlchemy's pool on a private PostgreSQL cluster (a copy of a per-worker
    template on a port no other worker gets), held in recovery, SIGKILLed and restarted.
    Faked: the AI provider (the offline local model).
    """

    @pytest.mark.covers("FAULT-05")
    async def test_in_recovery_answers_503_with_retry_after_then_first_request_after_200(
        self, make_client: ClientFactory, postgres_cluster: PostgresCluster
    ):
        """A PostgreSQL that refuses connections while it recovers is an outage (503), not a
        bug (500); the first request once it accepts them is served.

        Integration scope: text processing (history write) and `/v1/history` (read) → pooled
        asyncpg connections → a cluster restarted as a standby without hot standby, which
        answers every connection with 57P03 `cannot_connect_now`; readiness.
        Business impact: load balancers and clients see a retryable 503 with Retry-After
        during every database restart or failover, and no 500s land in the error budget.
        Test strategy: one request fills the pool; restart the cluster held in recovery;
        process a text, list history, probe readiness; promote it and wait (polling with a
        connection of the test's own) until it accepts connections; repeat both requests.
        Success criteria: both 503 `database_unavailable` with `Retry-After`, database
        `down`; afterwards both 200 at the first attempt, the history listing both texts.
        """
        client = await make_client(database=own(postgres_cluster))
        warm = await client.post("/v1/text/process", json=WARM_UP)

        await asyncio.to_thread(postgres_cluster.stop)
        await asyncio.to_thread(postgres_cluster.start, in_recovery=True)
        refused = [
            await client.post("/v1/text/process", json=QUESTION),
            await client.get("/v1/history"),
        ]
        status_during = await database_status(client)
        await asyncio.to_thread(postgres_cluster.promote)
        await wait_until_accepting(postgres_cluster)
        served = [
            await client.post("/v1/text/process", json=QUESTION),
            await client.get("/v1/history"),
        ]

        assert warm.status_code == 200
        assert [(r.status_code, error_code(r)) for r in refused] == [
            (503, "database_unavailable")
        ] * 2
        assert [r.headers.get("Retry-After") for r in refused] == ["1", "1"]
        assert status_during == "down"
        assert [r.status_code for r in served] == [200, 200]
        assert served[1].json()["total"] == 2

    @pytest.mark.covers("FAULT-05")
    async def test_postmaster_killed_503_while_down_then_first_request_after_restart_200(
        self, make_client: ClientFactory, postgres_cluster: PostgresCluster
    ):
        """SIGKILL of the postmaster, then a restart through crash recovery: refused requests
        get 503, the first request after the restart is served, and exactly the answered
        requests have their history rows.

        Integration scope: concurrent text processing (group-committed history rows) → a
        pool of asyncpg connections killed with their server → crash recovery → the same
        pool, its dead connections replaced by pre-ping.
        Business impact: a crashed database costs retryable 503s only, never a 500, never an
        answer whose audit row is missing, and needs no app restart.
        Test strategy: 20 requests at once; kill the postmaster; 20 more at once; restart it
        and wait (a connection of the test's own) until it accepts connections; one request,
        then 20 at once. Read the history rows with a connection of the test's own.
        Success criteria: 200s, then 503 `database_unavailable` for all 20 sent while it was
        down, then 200 at the first attempt and for all 20 after; the history holds exactly
        the texts answered 200.
        """
        client = await make_client(database=own(postgres_cluster))

        async def burst(indexes: range) -> list[tuple[int, Response]]:
            async def one(index: int) -> tuple[int, Response]:
                body = {"operation": "summarize", "text": text_of(index)}
                return index, await client.post("/v1/text/process", json=body)

            return await asyncio.gather(*(one(index) for index in indexes))

        before = await burst(range(20))
        await asyncio.to_thread(postgres_cluster.kill)
        while_down = await burst(range(20, 40))
        await asyncio.to_thread(postgres_cluster.start)
        await wait_until_accepting(postgres_cluster)
        first = await burst(range(40, 41))
        after = await burst(range(41, 61))

        def outcomes(results: list[tuple[int, Response]]) -> set[str]:
            return {
                f"{r.status_code} {error_code(r) if r.is_error else ''}".strip() for _, r in results
            }

        answered = [index for index, r in before + first + after if r.status_code == 200]
        assert outcomes(before) == outcomes(first) == outcomes(after) == {"200"}
        assert outcomes(while_down) == {"503 database_unavailable"}
        assert sorted(await history_hashes(own(postgres_cluster))) == sorted(
            sha256(text_of(index)) for index in answered
        )
