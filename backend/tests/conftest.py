"""Fixtures for every backend test: settings, the app and its client, and the service tiers.

Redis runs on three tiers: fakeredis (always), a real server and a testcontainers container
(this process's own, from `worker_services`). The database runs on SQLite (always) and
PostgreSQL (this process's own database, copied from a migrated template; `fakes/postgres.py`).
A test that asks for `redis_backend` or `database_backend` runs once per tier; a tier that is
missing skips with the reason, or fails the run under REQUIRE_REAL_SERVICES=1.

Every fixture names what it depends on in its signature, so a reader can follow a test down to
the server it uses: test → `redis_backend` → `services` (worker_services.py) → a redis-server.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fakes.clock import FakeClock
from fakes.services import RedisServerProcess, port_no_one_else_gets, unavailable
from hypothesis import settings as hypothesis_settings
from worker_services import WORKER, Services

# The app, pydantic-ai, SQLAlchemy and the Redis clients are imported where they are used: the
# pytest-xdist controller imports this file too, to run no test, and would wait seconds for them
# before starting the workers.
if TYPE_CHECKING:
    import fakeredis
    from app.core.config import Settings
    from app.infrastructure.database.engine import Database
    from fakes.providers import FakeProvider, RecordingSleep
    from httpx import AsyncClient
    from pydantic_ai.models import Model
    from redis.asyncio import Redis

PUBLIC_KEY = "test-public-key"
OPERATOR_KEY = "test-operator-key"
TEST_KEY_HASH_SECRET = "test-key-hash-secret-0123456789abcdef"

# Property-based tests (the contract fuzzing) run `quick` by default, so everyday runs stay fast;
# `make test-fuzz` (and CI) runs `thorough`. Pick one with --hypothesis-profile=NAME. `quick` is
# registered as Hypothesis's own `default` too, rather than loaded here: test modules import
# this file a second time (`from conftest import ...`), which must not undo the option.
hypothesis_settings.register_profile("quick", max_examples=5)
hypothesis_settings.register_profile("default", hypothesis_settings.get_profile("quick"))
hypothesis_settings.register_profile("thorough", max_examples=20)
# Where CI is set, Hypothesis loads its own `ci` profile instead of `default`: 100 examples, a
# minute and more of fuzzing inside `make test`. The same budget as `quick` there too.
hypothesis_settings.register_profile(
    "ci",
    hypothesis_settings.get_profile("ci"),
    max_examples=hypothesis_settings.get_profile("quick").max_examples,
)


@pytest.fixture(scope="session", autouse=True)
def no_real_model_requests() -> None:
    """A test that reaches a real LLM provider by accident fails loudly instead of spending."""
    from pydantic_ai import models

    models.ALLOW_MODEL_REQUESTS = False


# --- Redis tiers -------------------------------------------------------------------------------


@dataclass
class RedisBackend:
    """One Redis tier: fakeredis (no URL, a shared FakeServer) or a real server at `url`."""

    name: str
    url: str | None = None
    fake_server: fakeredis.FakeServer | None = None

    def client(self) -> Redis:
        """A new client on this backend, for the app or for the test's own inspection."""
        import fakeredis
        from app.infrastructure.redis_client import create_redis

        if self.fake_server is not None:
            return fakeredis.FakeAsyncRedis(server=self.fake_server)
        assert self.url is not None
        return create_redis(self.url, timeout_seconds=1.0)

    def wire(self, stack: AsyncExitStack, overrides: dict[str, Any]) -> Redis | None:
        """How an app under test reaches this tier: fakeredis as a client handed in (closed with
        `stack`), a real server as REDIS_URL among the settings `overrides`."""
        if self.fake_server is None:
            overrides.setdefault("redis_url", self.url)
            return None
        client = self.client()
        stack.push_async_callback(client.aclose)
        return client


REDIS_TIERS = ["fakeredis", "redis-server", "container"]


async def _redis_tier(name: str, services: Services) -> RedisBackend:
    """The named tier, empty: a new FakeServer, or this process's server or container, flushed."""
    import fakeredis

    if name == "fakeredis":
        return RedisBackend(name, fake_server=fakeredis.FakeServer())
    url = services.redis_server_url() if name == "redis-server" else services.container_redis_url()
    backend = RedisBackend(name, url=url)
    client = backend.client()
    try:
        await client.flushdb()
    except Exception as exc:
        unavailable(f"Redis at {url} does not answer: {exc}")
    finally:
        await client.aclose()
    return backend


@pytest.fixture(params=REDIS_TIERS)
async def redis_backend(request: pytest.FixtureRequest, services: Services) -> RedisBackend:
    """Each Redis tier in turn, empty at the start of the test (flushed, never shared keys)."""
    return await _redis_tier(request.param, services)


@pytest.fixture(params=["default", *REDIS_TIERS])
async def optional_redis(request: pytest.FixtureRequest, services: Services) -> RedisBackend | None:
    """No Redis at all (None: the app's in-memory stores, as without REDIS_URL), then each
    Redis tier: for a seam that must behave alike with and without Redis."""
    if request.param == "default":
        return None
    return await _redis_tier(request.param, services)


@pytest.fixture
async def redis_inspector(redis_backend: RedisBackend) -> AsyncIterator[Redis]:
    """The test's own client on the app's Redis, straight to the server (never through a
    test's proxy), to look at what the app stored."""
    client = redis_backend.client()
    yield client
    await client.aclose()


# --- Database tiers ----------------------------------------------------------------------------


@dataclass
class DatabaseBackend:
    name: str
    url: str


@pytest.fixture(scope="session")
async def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test copies it, which is cheaper than migrating again."""
    from app.infrastructure.database.engine import Database

    path = tmp_path_factory.mktemp("db") / "template.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.migrate()
    await database.dispose()
    return path


@pytest.fixture(scope="session")
async def postgres_database() -> AsyncIterator[Database | None]:
    """This process's PostgreSQL database (`<base>_<worker>`), or None without TEST_DATABASE_URL."""
    from fakes.postgres import create_worker_database, drop_worker_database

    base_url = os.environ.get("TEST_DATABASE_URL")
    if not base_url:
        yield None
        return
    database = await create_worker_database(base_url, WORKER)
    yield database
    await drop_worker_database(base_url, database)


async def _truncate(database: Database) -> None:
    from app.infrastructure.database.models import Base
    from sqlalchemy import text

    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    async with database.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_backend(sqlite_template: Path, tmp_path: Path) -> DatabaseBackend:
    """A fresh copy of the migrated SQLite file: the default database of `make_client`."""
    path = tmp_path / "app.db"
    shutil.copyfile(sqlite_template, path)
    return DatabaseBackend("sqlite", f"sqlite+aiosqlite:///{path}")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_backend(
    request: pytest.FixtureRequest,
    sqlite_backend: DatabaseBackend,
    postgres_database: Database | None,
) -> DatabaseBackend:
    """Each database tier in turn, with empty tables."""
    if request.param == "sqlite":
        return sqlite_backend
    if postgres_database is None:
        unavailable("no PostgreSQL: set TEST_DATABASE_URL=postgresql+asyncpg://user@host/db")
    assert postgres_database is not None
    await _truncate(postgres_database)
    return DatabaseBackend("postgresql", postgres_database.url)


# --- Settings, app, client ---------------------------------------------------------------------


def make_settings(database: DatabaseBackend, **overrides: Any) -> Settings:
    """The test settings on `database`; an override that names no setting is an error.

    `Settings` ignores unknown names (the environment holds many variables that are not ours),
    so a misspelt override would otherwise be dropped and the test would run on the default.
    """
    from app.core.config import Settings

    if unknown := sorted(set(overrides) - set(Settings.model_fields)):
        hints = [
            f"{name!r}"
            + "".join(
                f" (did you mean {close!r}?)"
                for close in difflib.get_close_matches(name, Settings.model_fields, n=1)
            )
            for name in unknown
        ]
        raise TypeError(f"unknown setting {', '.join(hints)}: see app/core/config.py")
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database.url,
        "database_auto_migrate": False,
        "api_keys": [PUBLIC_KEY],
        "internal_api_keys": [OPERATOR_KEY],
        "key_hash_secret": TEST_KEY_HASH_SECRET,
        "log_level": "WARNING",
        # The production default (0.25 s) is measured against a healthy round trip; on a loaded
        # CI machine a real redis-server can stall longer, and the app would fall back to memory
        # mid-test. A test about a slow Redis sets its own timeout (test_faults.FROZEN_TIMEOUT).
        "redis_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def job_when(
    client: AsyncClient,
    job_id: str,
    done: Callable[[dict[str, Any]], bool],
    *,
    within: float,
    headers: dict[str, str] | None = None,
    explain: Callable[[], str] = str,
) -> dict[str, Any]:
    """The job's status once `done` holds for it; fails past `within` seconds, adding what
    `explain()` says (a worker's log, say)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        info: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        if done(info):
            return info
        if loop.time() > deadline:
            pytest.fail(f"job not in the expected state within {within:g} s: {info}{explain()}")
        await asyncio.sleep(0.02)


@pytest.fixture
def redis_process() -> Iterator[RedisServerProcess]:
    """A private redis-server for this test alone, which the test may kill and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("no `redis-server` on PATH: this test starts and kills its own Redis")
    assert binary is not None
    server = RedisServerProcess(binary, port_no_one_else_gets())
    server.start()
    yield server
    server.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider() -> FakeProvider:
    """A fake AI provider, succeeding until the test says otherwise."""
    from fakes.providers import FakeProvider

    return FakeProvider()


@pytest.fixture
def sleep() -> RecordingSleep:
    """The retry loop's sleep: records each wait and returns at once."""
    from fakes.providers import RecordingSleep

    return RecordingSleep()


ClientFactory = Callable[..., Awaitable["AsyncClient"]]


@pytest.fixture
async def make_client(
    sqlite_backend: DatabaseBackend, clock: FakeClock, sleep: RecordingSleep
) -> AsyncIterator[ClientFactory]:
    """Builds an app (fresh per call) inside its lifespan and returns an in-process client.

    `database` and `redis` pick the tiers, `model` the AI model (default: the offline local
    one); other keywords override settings, and a name that is not a setting raises TypeError.
    Every app shares the test's `clock` and the retry loop's `sleep`: a test (or a class) that
    needs another sleep passes it as `sleep=`. The client sends the public key unless
    `api_key` says otherwise.
    """
    from app.main import create_app
    from app.resources import Externals
    from asgi_lifespan import LifespanManager
    from httpx import ASGITransport, AsyncClient

    async with AsyncExitStack() as stack:

        async def factory(
            *,
            database: DatabaseBackend | None = None,
            redis: RedisBackend | None = None,
            api_key: str | None = PUBLIC_KEY,
            model: Model | None = None,
            sleep: Callable[[float], Awaitable[None]] = sleep,
            **overrides: Any,
        ) -> AsyncClient:
            redis_client = redis.wire(stack, overrides) if redis is not None else None
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
