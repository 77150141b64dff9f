"""Shared clients: created and closed by the lifespan, handed out by the API dependencies."""

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import Redis

from app.core.config import Settings
from app.infrastructure.cache import ResponseCache
from app.infrastructure.database.engine import Database
from app.infrastructure.metrics import Metrics
from app.infrastructure.redis_client import create_redis
from app.services.auth import Authenticator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Externals:
    """Clients of out-of-process services handed in instead of built from settings.

    Tests pass a fakeredis client or a fake AI model here: the fake stands where the outside
    world stands, and everything of ours between the route and that boundary runs for real.
    """

    redis: Redis | None = None
    clock: Callable[[], float] = time.time


@dataclass
class Resources:
    settings: Settings
    metrics: Metrics
    database: Database
    redis: Redis | None
    cache: ResponseCache
    authenticator: Authenticator


@asynccontextmanager
async def open_resources(
    settings: Settings, metrics: Metrics, externals: Externals
) -> AsyncIterator[Resources]:
    database = Database(settings.database_url)
    redis = externals.redis
    if redis is None and settings.redis_url:
        redis = create_redis(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
    try:
        if settings.auto_migrate:
            await database.migrate()
        cache = ResponseCache(
            redis,
            lru_size=settings.cache_lru_size,
            max_stale_seconds=settings.cache_stale_grace_seconds,
            metrics=metrics,
            clock=externals.clock,
        )
        if settings.uses_dev_keys:
            logger.warning(
                "development keys in use: public %r, operator %r (set API_KEYS and "
                "INTERNAL_API_KEYS to replace them)",
                settings.api_keys[0],
                settings.internal_api_keys[0],
            )
        yield Resources(
            settings=settings,
            metrics=metrics,
            database=database,
            redis=redis,
            cache=cache,
            authenticator=Authenticator(settings),
        )
    finally:
        if redis is not None and externals.redis is None:  # close only what we opened
            await redis.aclose()
        await database.dispose()
