"""Fixtures for the frontend tests: real backends on loopback, and pages run by AppTest.

Each backend is `uvicorn app.main:create_app --factory` in a process of its own, forked from one
that imported the app once (`backend/tests/preloaded.py`), started once per test process (each
pytest-xdist worker) on a free 127.0.0.1 port, with SQLite in a temporary folder and the offline
`local` model. The pages run in-process under AppTest and reach a backend over
HTTP, exactly as they do in a browser session.

- `backend`: the everyday backend, on this process's real Redis (`worker_services`), emptied
  before each test: tables, cached answers, cache counters and everything in Redis, so a test
  asserts exact figures. Without a real Redis its tests skip (fail under
  REQUIRE_REAL_SERVICES=1), as the Redis tier does; the seam matrix credits them to
  `redis-server`.
- `backend_without_provider`: its AI provider is an unreachable OpenAI-compatible server, and
  one failure opens the circuit breaker, so processing answers 502, then 503 with Retry-After.
  The breaker is closed again before each test.
- `backend_without_database`: its DATABASE_URL points where nothing listens, so it is up and
  not ready.
- `rate_limited_backend`: every key may make RATE_LIMIT text requests a minute (elsewhere, a
  limit no test reaches). Its in-memory limiter cannot be emptied: one test uses it.
- `provider_backend`: its AI provider is `loopback_provider`, the OpenAI-compatible server on
  loopback, which the test tells how to answer (fail, take its time) and how to stream (break
  off, or pause, after a few chunks). Before each test it is emptied (rows, cached answers),
  its circuit breaker closed and its provider answering at once, in full: what one test told
  the shared provider must not reach the next (a provider left failing answers the next
  test's stream with an error before its first word). It has no Redis, as `make run` starts
  the backend: its jobs run on its embedded worker, in its own memory. (The everyday
  backend's jobs would wait for a worker process: with REDIS_URL the API runs none.)
- `read_markdown`: what a person reads where a page shows Markdown (alerts, captions, badges).

A worker starts a backend when its first test needs it; under pytest-xdist every frontend test
goes to one worker (`backend/tests/worker_schedule.py`), so each backend starts once per run.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import sqlite3
import ssl
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fakes.services import free_port, server_process
from markdown_it import MarkdownIt
from worker_services import FRONTEND_DB, Services

# Streamlit, Redis, the backend's settings and the provider fake are imported where they are
# used: the pytest-xdist controller imports this file too, to run no test.
if TYPE_CHECKING:
    from fakes.openai_server import OpenAICompatibleServer
    from streamlit.components.v2.component_manager import BidiComponentManager
    from streamlit.testing.v1 import AppTest

PUBLIC_KEY = "frontend-public-key"
OPERATOR_KEY = "frontend-operator-key"
KEY_HASH_SECRET = "frontend-key-hash-secret-0123456789abcdef"
UNREACHED_RATE_LIMIT = 10_000
RATE_LIMIT = 2
PAGES = Path(__file__).parents[1] / "streamlit_app" / "views"
APP = PAGES.parent / "main.py"
STARTUP_SECONDS = 60  # a bound, not a target: start-up takes seconds on a loaded machine
PAGE_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class LiveBackend:
    url: str
    database: Path
    redis_url: str | None
    public_key: str = PUBLIC_KEY
    operator_key: str = OPERATOR_KEY
    requests_per_minute: int = UNREACHED_RATE_LIMIT

    def client(self, api_key: str | None = PUBLIC_KEY) -> httpx.Client:
        """An HTTP client for a test's own arrange and assert steps."""
        headers = {"X-API-Key": api_key} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, verify=_tls_context())


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Built once: the URL is plain HTTP, yet httpx builds a TLS context for every client,
    reading the CA bundle (~20 ms of CPU), and most tests open a client or two."""
    return httpx.create_ssl_context()


@contextmanager
def running_backend(
    folder: Path,
    settings: dict[str, str] | None = None,
    *,
    requests_per_minute: int = UNREACHED_RATE_LIMIT,
) -> Iterator[LiveBackend]:
    """A backend process with the test keys, and `settings` as environment variables."""
    from app.core.config import Settings

    settings = settings or {}
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "app.db"
    port = free_port()
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields  # a developer's own settings stay out
    }
    env = {
        **inherited,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "API_KEYS": PUBLIC_KEY,
        "INTERNAL_API_KEYS": OPERATOR_KEY,
        "KEY_HASH_SECRET": KEY_HASH_SECRET,
        "AI_MODEL": "local",
        "RATE_LIMIT_TIERS": json.dumps({"free": requests_per_minute, "pro": requests_per_minute}),
        **settings,
    }
    backend = LiveBackend(
        f"http://127.0.0.1:{port}",
        database,
        settings.get("REDIS_URL"),
        requests_per_minute=requests_per_minute,
    )
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with server_process(
        command,
        health_url=f"{backend.url}/v1/health",
        folder=folder,
        env=env,
        startup_seconds=STARTUP_SECONDS,
        preloaded=True,
    ):
        yield backend


def _flush(redis_url: str) -> None:
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with Redis.from_url(
        redis_url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    ) as redis:
        redis.flushdb()


def _empty_tables(database: Path) -> None:
    with closing(sqlite3.connect(database, timeout=10)) as connection, connection:
        tables = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name != 'alembic_version' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        for (table,) in tables:
            connection.execute(f'DELETE FROM "{table}"')  # noqa: S608 - names from the schema


@pytest.hookimpl(tryfirst=True)  # before the seam matrix reads the tiers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on the everyday backend runs on this worker's real Redis: the tier it proves."""
    for item in items:
        if "live_backend" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.tiers("redis-server"))


@pytest.fixture(scope="session")
def live_backend(
    tmp_path_factory: pytest.TempPathFactory, services: Services
) -> Iterator[LiveBackend]:
    redis_url = services.redis_server_url(FRONTEND_DB)
    _flush(redis_url)  # what another run left in a shared TEST_REDIS_URL must not leak in
    folder = tmp_path_factory.mktemp("backend")
    with running_backend(folder, {"REDIS_URL": redis_url}) as backend:
        yield backend


@pytest.fixture
def backend(live_backend: LiveBackend) -> LiveBackend:
    """This process's backend, emptied: no rows, no cached answers, counters at zero."""
    _empty_tables(live_backend.database)
    assert live_backend.redis_url is not None
    with live_backend.client(OPERATOR_KEY) as operator:
        # The backend adds its latest lookups to the counters in Redis with its next Redis
        # command: this one, so the flush below takes them too.
        operator.get("/internal/cache/stats").raise_for_status()
        _flush(live_backend.redis_url)
        operator.post("/internal/cache/invalidate", json={}).raise_for_status()  # its LRU
    return live_backend


@pytest.fixture(scope="session")
def provider_down_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBackend]:
    settings = {
        "AI_MODEL": "openai-chat:gpt-4o-mini",
        "AI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        "AI_API_KEY": "not-used",
        "AI_MAX_ATTEMPTS": "1",
        "BREAKER_FAILURE_THRESHOLD": "1",
        "BREAKER_RECOVERY_SECONDS": "600",
    }
    with running_backend(tmp_path_factory.mktemp("no-provider"), settings) as backend:
        yield backend


@pytest.fixture
def backend_without_provider(provider_down_backend: LiveBackend) -> LiveBackend:
    """The backend whose provider is unreachable, its circuit breaker closed."""
    with provider_down_backend.client(OPERATOR_KEY) as operator:
        operator.post("/internal/resilience/breakers/ai_provider/reset").raise_for_status()
    return provider_down_backend


@pytest.fixture(scope="session")
def backend_without_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBackend]:
    settings = {
        "DATABASE_URL": f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none",
        "DATABASE_AUTO_MIGRATE": "false",  # it starts; its database never answers
    }
    with running_backend(tmp_path_factory.mktemp("no-database"), settings) as backend:
        yield backend


@pytest.fixture(scope="session")
def rate_limited_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBackend]:
    folder = tmp_path_factory.mktemp("rate-limited")
    with running_backend(folder, requests_per_minute=RATE_LIMIT) as backend:
        yield backend


@pytest.fixture(scope="session")
def loopback_provider() -> Iterator[OpenAICompatibleServer]:
    from fakes.openai_server import openai_compatible_server

    with openai_compatible_server() as server:
        yield server


@pytest.fixture(scope="session")
def live_provider_backend(
    loopback_provider: OpenAICompatibleServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveBackend]:
    settings = {
        "AI_MODEL": "openai-chat:fake-llm",
        "AI_BASE_URL": loopback_provider.base_url,
        "AI_API_KEY": "not-used",
        "AI_MAX_ATTEMPTS": "1",
    }
    with running_backend(tmp_path_factory.mktemp("provider"), settings) as backend:
        yield backend


def _answer_at_once(provider: OpenAICompatibleServer) -> None:
    provider.answer()
    provider.take(0)
    provider.release()


@pytest.fixture
def provider_backend(
    live_provider_backend: LiveBackend, loopback_provider: OpenAICompatibleServer
) -> Iterator[LiveBackend]:
    """The backend on the loopback provider, with no rows and no cached answers (a cached text
    would skip the provider), its circuit breaker closed, its provider answering at once."""
    _answer_at_once(loopback_provider)
    _empty_tables(live_provider_backend.database)
    with live_provider_backend.client(OPERATOR_KEY) as operator:
        operator.post("/internal/cache/invalidate", json={}).raise_for_status()
        operator.post("/internal/resilience/breakers/ai_provider/reset").raise_for_status()
    yield live_provider_backend
    _answer_at_once(loopback_provider)


PageFactory = Callable[..., "AppTest"]


@pytest.fixture(scope="session")
def streamlit_components() -> BidiComponentManager:
    """The Streamlit components installed, found once per process.

    Streamlit 1.67's AppTest looks for them on its first run by reading the metadata of every
    installed distribution (streamlit#15488): about 100 ms of CPU, half of what a page test
    costs. An AppTest keeps what it found in `_bidi_component_manager`, so `open_page` hands
    every AppTest this one; were the attribute renamed, each would only search again.
    """
    from streamlit.components.v2.component_manager import BidiComponentManager

    components = BidiComponentManager()
    components.discover_and_register_components(start_file_watching=False)
    return components


@pytest.fixture
def open_page(
    monkeypatch: pytest.MonkeyPatch, streamlit_components: BidiComponentManager
) -> PageFactory:
    """Loads a page file as AppTest, configured the way `make run` configures the app; `main`
    loads the whole app, with its navigation and sidebar."""

    def factory(
        name: str,
        backend_url: str,
        *,
        api_key: str | None = PUBLIC_KEY,
        operator_key: str | None = OPERATOR_KEY,
    ) -> AppTest:
        variables = {
            "BACKEND_URL": backend_url,
            "BACKEND_API_KEY": api_key,
            "BACKEND_OPERATOR_KEY": operator_key,
        }
        for variable, value in variables.items():
            if value is None:
                monkeypatch.delenv(variable, raising=False)
            else:
                monkeypatch.setenv(variable, value)
        from streamlit.testing.v1 import AppTest

        script = APP if name == "main" else PAGES / f"{name}.py"
        page = AppTest.from_file(str(script), default_timeout=PAGE_TIMEOUT_SECONDS)
        page._bidi_component_manager = streamlit_components  # see streamlit_components
        return page

    return factory


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens: the backend is down."""
    return f"http://127.0.0.1:{free_port()}"


# CommonMark with raw HTML on and GFM's autolinks, so an unescaped tag or address shows up as one.
_MARKDOWN = MarkdownIt("commonmark", {"linkify": True}).enable(["linkify", "strikethrough"])
_TAG = re.compile(r"<[^>]+>")


def _read(markdown: str) -> str:
    rendered = _MARKDOWN.render(markdown)
    elements = set(_TAG.findall(rendered)) - {"<p>", "</p>", "<code>", "</code>"}
    assert not elements, f"{markdown!r} renders as {rendered!r}"
    return html.unescape(_TAG.sub("", rendered)).strip()


@pytest.fixture
def read_markdown() -> Callable[[str], str]:
    """The text a page's Markdown shows; fails if it makes anything but paragraphs and code
    spans (an image, a link, a heading, an HTML tag)."""
    return _read
