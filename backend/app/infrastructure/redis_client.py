"""The Redis client factory: short timeouts and no hidden retries, so an outage fails fast.

Callers (the cache, readiness) decide what to do when Redis is down; a client that silently retried
for seconds would turn a Redis outage into a slow API instead of a degraded but fast one.
"""

import logging
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

logger = logging.getLogger(__name__)


def create_redis(url: str, *, timeout_seconds: float = 0.5) -> Redis:
    """A client whose every command either answers or fails within about `timeout_seconds`.

    Creating the client does not connect (the first command does), so this never fails for an
    unreachable server.
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        # redis-py 8 retries failed commands by default, with backoff, which multiplies the
        # timeout; the cache has its own fallback, so one attempt is enough.
        retry=Retry(NoBackoff(), 0),
        # Bytes in, bytes out: the cache decodes JSON itself and must see undecodable values.
        decode_responses=False,
        # No PING before commands after idle time: it would add a round trip to some requests.
        health_check_interval=0,
        # While maintenance notifications are on ("auto" by default, for Redis Enterprise),
        # the pool skips its check for connections the server has closed: after a Redis
        # restart, each pooled connection would fail its next command instead of reconnecting.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


def loggable_url(url: str) -> str:
    """The URL without credentials or query (where a password may also travel), for logs."""
    parts = urlsplit(url)
    address = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, address, parts.path, "", ""))


async def ping(redis: Redis) -> bool:
    """Whether Redis answers PING. Never raises: readiness probes call it."""
    try:
        return bool(await redis.ping())
    except Exception as exc:  # a probe reports failure, whatever its cause
        logger.debug("Redis ping failed: %r", exc)
        return False


class RedisAvailability:
    """When to try Redis again: after a failure, not for `retry_seconds`, so an outage costs one
    failed command per window instead of a socket timeout per request (a silent partition).
    One warning per outage, in the caller's logger, and one line when Redis is back.

    Shared by every Redis user with a per-process fallback: cache, rate limiter, breaker store.
    """

    def __init__(
        self, log: logging.Logger, *, fallback: str, recovered: str, retry_seconds: float = 1.0
    ) -> None:
        self.ok = True
        self.retry_seconds = retry_seconds
        self._retry_at = 0.0
        self._log = log
        self._fallback = fallback
        self._recovered = recovered

    def should_try(self, now: float) -> bool:
        return self.ok or now >= self._retry_at

    def mark_down(self, reason: object, now: float | None) -> None:
        """Redis failed; `now` None leaves the retry time where it was."""
        if now is not None:
            self._retry_at = now + self.retry_seconds
        if self.ok:
            self.ok = False
            self._log.warning(
                "Redis unavailable (%r); %s, retrying after %.1fs",
                reason,
                self._fallback,
                self.retry_seconds,
            )
        else:
            self._log.debug("Redis still unavailable (%r)", reason)

    def mark_up(self) -> bool:
        """Redis answered; True when that ends an outage."""
        if self.ok:
            return False
        self.ok = True
        self._log.info("Redis available again; %s", self._recovered)
        return True
