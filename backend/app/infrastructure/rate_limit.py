"""Per-caller request limits, counted in Redis by the `limits` library (in memory if Redis is down).

- Moving window: at most N requests in any 60 seconds, so there is no burst of 2N at a window
  boundary, and the reset time is exact (when the oldest counted request leaves the window).
- Redis is the app's own client: `limits` opens its client on that client's connection pool (its
  documented `connection_pool` option), so it inherits our short timeouts and no-retry policy,
  and tests hand in fakeredis exactly as they do for the cache.
- A Redis failure never fails the request: this process counts in memory and tries Redis again
  after `redis_retry_seconds` (by the injected clock). Requests counted in memory during an
  outage are not in Redis afterwards: the limit is looser for one window, never stricter.
- `limits` reads `time.time()` itself, so windows use the wall clock, not the injected one.
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.infrastructure.redis_client import RedisAvailability

logger = logging.getLogger(__name__)

Backend = Literal["redis", "memory", "memory-fallback"]

# asyncio.TimeoutError is the built-in TimeoutError since 3.11 (and an OSError); named for clarity.
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the oldest counted request leaves the window
    retry_after_seconds: float | None  # set only when refused

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }


def _redis_storage(redis: Redis, key_prefix: str) -> RedisStorage:
    # `limits` annotates its options as scalars, but documents and supports `connection_pool`.
    options: dict[str, Any] = {"connection_pool": redis.connection_pool}
    return RedisStorage(
        "async+redis://", implementation="redispy", key_prefix=key_prefix, **options
    )


class RateLimiter:
    def __init__(
        self,
        redis: Redis | None,
        *,
        key_prefix: str = "llm:ratelimit",
        clock: Callable[[], float] = time.time,
        redis_retry_seconds: float = 1.0,
    ) -> None:
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._redis = None
        if redis is not None:
            self._redis = MovingWindowRateLimiter(_redis_storage(redis, key_prefix))
        self._clock = clock
        self._availability = RedisAvailability(
            logger,
            fallback="rate limits counted in memory",
            recovered="rate limits are counted in Redis",
            retry_seconds=redis_retry_seconds,
        )

    @property
    def backend(self) -> Backend:
        if self._redis is None:
            return "memory"
        return "redis" if self._availability.ok else "memory-fallback"

    async def hit(self, identity: str, *, per_minute: int, cost: int = 1) -> RateLimitResult:
        """Charge `cost` requests to `identity`; refused (and not charged) if over `per_minute`."""
        item = RateLimitItemPerMinute(per_minute)
        if self._redis is not None and self._availability.should_try(self._clock()):
            try:
                result = await _hit(self._redis, item, identity, cost)
            except _REDIS_ERRORS as exc:
                self._availability.mark_down(exc, self._clock())
            else:
                self._availability.mark_up()
                return result
        return await _hit(self._memory, item, identity, cost)


async def _hit(
    limiter: MovingWindowRateLimiter, item: RateLimitItem, identity: str, cost: int
) -> RateLimitResult:
    allowed = await limiter.hit(item, identity, cost=cost)
    stats = await limiter.get_window_stats(item, identity)
    return RateLimitResult(
        allowed=allowed,
        limit=item.amount,
        remaining=max(0, stats.remaining),
        reset_at=stats.reset_time,
        retry_after_seconds=None if allowed else max(0.0, stats.reset_time - time.time()),
    )
