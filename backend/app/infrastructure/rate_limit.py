"""Per-caller request limits, counted in Redis by the `limits` library (in memory if Redis is down).

- Moving window: at most N requests in any 60 seconds, so there is no burst of 2N at a window
  boundary, and the reset time is exact (when the oldest counted request leaves the window).
- Redis is the app's own client: `limits` opens its client on that client's connection pool (its
  documented `connection_pool` option), so it inherits our short timeouts and no-retry policy,
  and tests hand in fakeredis exactly as they do for the cache.
- A Redis failure never fails the request: this process counts in memory while its
  `RedisAvailability` holds Redis down. Requests counted in memory during an outage are not in
  Redis afterwards: the limit is looser for one window, never stricter.
- `limits` reads `time.time()` itself, so windows use the wall clock, not the injected one.
"""

import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from app.infrastructure.redis_client import REDIS_ERRORS, RedisAvailability

Backend = Literal["redis", "memory", "memory-fallback"]


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
        self, redis: RedisAvailability | None, *, key_prefix: str = "llm:ratelimit"
    ) -> None:
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: tuple[RedisAvailability, MovingWindowRateLimiter] | None = None
        if redis is not None:
            storage = _redis_storage(redis.client, key_prefix)
            self._shared = (redis, MovingWindowRateLimiter(storage))

    @property
    def backend(self) -> Backend:
        if self._shared is None:
            return "memory"
        return "redis" if self._shared[0].up else "memory-fallback"

    async def hit(self, identity: str, *, per_minute: int, cost: int = 1) -> RateLimitResult:
        """Charge `cost` requests to `identity`; refused (and not charged) if over `per_minute`."""
        item = RateLimitItemPerMinute(per_minute)
        if self._shared is not None:
            availability, shared = self._shared
            if availability.client_now() is not None:
                try:
                    result = await _hit(shared, item, identity, cost)
                except REDIS_ERRORS as exc:
                    availability.failed(exc)
                else:
                    availability.answered()
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
