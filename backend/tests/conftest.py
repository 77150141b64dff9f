"""Fixtures for every backend test: settings, the app and its client, and the service tiers.

Redis runs on three tiers: fakeredis (always), a real server (TEST_REDIS_URL, or a `redis-server`
binary started for the session) and a testcontainers container (when a Docker API answers). The
database runs on SQLite (always) and PostgreSQL (TEST_DATABASE_URL). A test that asks for
`redis_backend` or `database_backend` runs once per tier; a tier that is missing skips with the
reason, or fails the run under REQUIRE_REAL_SERVICES=1.
"""

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from app.core.config import Settings
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import Base
from app.infrastructure.redis_client import create_redis
from app.main import create_app
from app.resources import Externals
from asgi_lifespan import LifespanManager
from fakes.clock import FakeClock
from fakes.providers import FakeProvider, RecordingSleep
from fakes.services import docker_answers, postgres_url, redis_server_url, unavailable
from httpx import ASGITransport, AsyncClient
from pydantic_ai import models
from pydantic_ai.models import Model
from redis.asyncio import Redis
from sqlalchemy import text

# A test that reaches a real LLM provider by accident fails loudly instead of spending money.
models.ALLOW_MODEL_REQUESTS = False

PUBLIC_KEY = "test-public-key"
OPERATOR_KEY = "test-operator-key"
TEST_KEY_HASH_SECRET = "test-key-hash-secret-0123456789abcdef"


# --- Redis tiers -------------------------------------------------------------------------------


@dataclass
class RedisBackend:
    """One Redis tier: fakeredis (no URL, a shared FakeServer) or a real server at `url`."""

    name: str
    url: str | None = None
    fake_server: fakeredis.FakeServer | None = None

    def client(self) -> Redis:
        """A new client on this backend, for the app or for the test's own inspection."""
        if self.fake_server is not None:
            return fakeredis.FakeAsyncRedis(server=self.fake_server)
        assert self.url is not None
        return create_redis(self.url, timeout_seconds=1.0)


@pytest.fixture(scope="session")
def real_redis_url() -> Iterator[str | None]:
    with redis_server_url() as url:
        yield url


@pytest.fixture(scope="session")
def container_redis_url() -> Iterator[str | None]:
    if not docker_answers():
        yield None
        return
    from testcontainers.community.redis import RedisContainer

    image = os.environ.get("TEST_REDIS_IMAGE", "redis:7")
    with RedisContainer(image) as container:
        host = container.get_container_host_ip()
        yield f"redis://{host}:{container.get_exposed_port(6379)}/0"


@pytest.fixture(params=["fakeredis", "redis-server", "container"])
async def redis_backend(
    request: pytest.FixtureRequest,
) -> AsyncIterator[RedisBackend]:
    """Each Redis tier in turn, empty at the start of the test (flushed, never shared keys)."""
    if request.param == "fakeredis":
        yield RedisBackend("fakeredis", fake_server=fakeredis.FakeServer())
        return
    if request.param == "redis-server":
        url = request.getfixturevalue("real_redis_url")
        reason = "no real Redis: set TEST_REDIS_URL or put `redis-server` on PATH"
    else:
        url = request.getfixturevalue("container_redis_url")
        reason = "no Docker API: start Docker, or run `make container-engine` (podman)"
    if url is None:
        unavailable(reason)
    backend = RedisBackend(request.param, url=url)
    client = backend.client()
    try:
        await client.flushdb()
    except Exception as exc:
        await client.aclose()
        unavailable(f"Redis at {url} does not answer: {exc}")
    await client.aclose()
    yield backend


# --- Database tiers ----------------------------------------------------------------------------


@dataclass
class DatabaseBackend:
    name: str
    url: str


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test copies it, which is cheaper than migrating again."""
    path = tmp_path_factory.mktemp("db") / "template.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.migrate()
    await database.dispose()
    return path


@pytest.fixture(scope="session")
async def postgres_database() -> AsyncIterator[Database | None]:
    """The PostgreSQL tier, migrated from scratch once per session."""
    url = postgres_url()
    if url is None:
        yield None
        return
    database = Database(url)
    async with database.engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    await database.migrate()
    yield database
    await database.dispose()


async def _truncate(database: Database) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with database.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_backend(sqlite_template: Path, tmp_path: Path) -> DatabaseBackend:
    path = tmp_path / "app.db"
    shutil.copyfile(sqlite_template, path)
    return DatabaseBackend("sqlite", f"sqlite+aiosqlite:///{path}")


@pytest.fixture
async def clean_postgres(postgres_database: Database | None) -> None:
    if postgres_database is not None:
        await _truncate(postgres_database)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request: pytest.FixtureRequest) -> DatabaseBackend:
    """Each database tier in turn, with empty tables."""
    if request.param == "sqlite":
        backend: DatabaseBackend = request.getfixturevalue("sqlite_backend")
        return backend
    database: Database | None = request.getfixturevalue("postgres_database")
    if database is None:
        unavailable("no PostgreSQL: set TEST_DATABASE_URL=postgresql+asyncpg://user@host/db")
    assert database is not None
    request.getfixturevalue("clean_postgres")
    return DatabaseBackend("postgresql", database.url)


# --- Settings, app, client ---------------------------------------------------------------------


def make_settings(database: DatabaseBackend, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database.url,
        "database_auto_migrate": False,
        "api_keys": [PUBLIC_KEY],
        "internal_api_keys": [OPERATOR_KEY],
        "key_hash_secret": TEST_KEY_HASH_SECRET,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider() -> FakeProvider:
    """A fake AI provider, succeeding until the test says otherwise."""
    return FakeProvider()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


ClientFactory = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture
async def make_client(
    sqlite_backend: DatabaseBackend, clock: FakeClock, sleep: RecordingSleep
) -> AsyncIterator[ClientFactory]:
    """Builds an app (fresh per call) inside its lifespan and returns an in-process client.

    `database` and `redis` pick the tiers, `model` the AI model (default: the offline local
    one), `sleep` the retry loop's sleep (default: the test's `sleep`); other keywords override
    settings. Every app shares the test's fake clock. The client sends the public key unless
    `api_key` says otherwise.
    """
    async with AsyncExitStack() as stack:

        async def factory(
            *,
            database: DatabaseBackend | None = None,
            redis: RedisBackend | None = None,
            api_key: str | None = PUBLIC_KEY,
            model: Model | None = None,
            sleep: RecordingSleep = sleep,
            **overrides: Any,
        ) -> AsyncClient:
            redis_client = None
            if redis is not None and redis.fake_server is not None:
                redis_client = redis.client()
                stack.push_async_callback(redis_client.aclose)
            elif redis is not None:
                overrides.setdefault("redis_url", redis.url)
            settings = make_settings(database or sqlite_backend, **overrides)
            externals = Externals(redis=redis_client, ai_model=model, clock=clock, sleep=sleep)
            app = create_app(settings, externals)
            manager = await stack.enter_async_context(LifespanManager(app))
            headers = {"X-API-Key": api_key} if api_key else {}
            return await stack.enter_async_context(
                AsyncClient(
                    transport=ASGITransport(app=manager.app),
                    base_url="http://testserver",
                    headers=headers,
                )
            )

        yield factory


@pytest.fixture
async def client(make_client: ClientFactory) -> AsyncClient:
    """The default app: SQLite, in-memory cache, local model, public key."""
    return await make_client()
