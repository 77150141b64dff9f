"""The backing services of a benchmark run: Redis when one answers, and a migrated database."""

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
# Every key the app writes (cache, breaker, rate limits) starts with this; only these are deleted,
# so pointing BENCH_REDIS_URL at a database that holds other data does not lose it.
_APP_KEYS = "llm:*"


@dataclass(frozen=True)
class RedisChoice:
    url: str | None
    description: str


def choose_redis() -> RedisChoice:
    """BENCH_REDIS_URL (must answer; empty means none), else the default URL if it answers."""
    explicit = os.environ.get("BENCH_REDIS_URL")
    if explicit is not None and not explicit.strip():
        return RedisChoice(None, "in-memory cache and breaker (BENCH_REDIS_URL is empty)")
    url = explicit or DEFAULT_REDIS_URL
    try:
        with _client(url) as client:
            version = client.info("server")["redis_version"]
    except (RedisError, OSError) as exc:
        if explicit:
            raise RuntimeError(f"BENCH_REDIS_URL={explicit} does not answer: {exc}") from exc
        return RedisChoice(None, f"in-memory cache and breaker (no Redis answers at {url})")
    return RedisChoice(url, f"Redis {version} at {url}")


def clear_redis(url: str | None) -> None:
    """Removes the app's keys: each server starts with a cold cache, a closed breaker and no
    requests counted against a rate limit."""
    if url is None:
        return
    with _client(url) as client:
        keys = list(client.scan_iter(match=_APP_KEYS, count=1000))
        if keys:
            client.unlink(*keys)


def _client(url: str) -> Redis:
    return Redis.from_url(
        url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )


def migrate(env: dict[str, str]) -> None:
    """Migrations run once before the servers start, as in a deployment (`make migrate`);
    two workers migrating a fresh database at once would race."""
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"], env=env, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"migrations failed:\n{completed.stderr}")


def _sqlite_path(database_url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    return Path(database_url.removeprefix(prefix)) if database_url.startswith(prefix) else None


def history_rows(database_url: str) -> int | None:
    """Rows in request_history (SQLite only): one per processed request."""
    path = _sqlite_path(database_url)
    if path is None:
        return None
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute("SELECT count(*) FROM request_history").fetchone()
    return int(count)
