"""The Redis client factory, and the process's one opinion of whether Redis answers.

Callers (cache, rate limiter, breaker store, readiness) decide what to do when Redis is down;
a client that silently retried for seconds would turn a Redis outage into a slow API instead of
a degraded but fast one.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.maint_notifications import MaintNotificationsConfig

logger = logging.getLogger(__name__)

# What a failing or unreachable Redis raises: redis-py's own errors, and OSError (the built-in
# TimeoutError, which asyncio.TimeoutError is since 3.11, included) from the socket underneath.
REDIS_ERRORS = (RedisError, OSError)


def create_redis(url: str, *, timeout_seconds: float) -> Redis:
    """A client whose every command either answers or fails within about `timeout_seconds`.

    Creating the client does not connect (the first command does), so this never fails for an
    unreachable server.
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        # redis-py 8 retries failed commands by default, with backoff, which multiplies the
        # timeout; every caller has its own fallback, so one attempt is enough.
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


@dataclass
class _RequestRecord:
    failed: bool = False


# The current request's record, set by `request_scope`; a mutable record rather than a flag, so
# that the tasks a request starts (a batch's items) write to the same one.
_current_request: ContextVar[_RequestRecord | None] = ContextVar("redis_request", default=None)


@contextmanager
def request_scope() -> Iterator[None]:
    """Marks one request: once a Redis command of it has failed, it sends no other.

    The API's middleware opens one per HTTP request. Without it (a script, a test of one
    component) only the retry window applies.
    """
    token = _current_request.set(_RequestRecord())
    try:
        yield
    finally:
        _current_request.reset(token)


def _request_failed() -> bool:
    record = _current_request.get()
    return record is not None and record.failed


class RedisAvailability:
    """The process's Redis client and whether it may be asked now, for every user of it at
    once: cache (its stats included), rate limiter, breaker store.

    A timeout or a refusal anywhere marks Redis down for the whole process: no command is sent
    for `retry_seconds`, then the first caller probes with its own command while the others keep
    to their memory fallbacks; each failed probe starts another window. A request that has met a
    failure sends no other command (see `request_scope`), so it pays at most one timeout, even
    when it outlives the window. An outage therefore costs one failed command per window for
    the whole process, whatever the traffic and however many components use Redis.
    """

    def __init__(
        self,
        client: Redis,
        *,
        # Wall time by default, as the cache's and breaker's clocks: tests move one fake clock.
        clock: Callable[[], float] = time.time,
        retry_seconds: float = 1.0,
    ) -> None:
        self.client = client
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._up = True
        self._retry_at = 0.0

    @property
    def up(self) -> bool:
        """Whether the last command answered."""
        return self._up

    def client_now(self, *, explicit: bool = False) -> Redis | None:
        """The client if a command may be sent now, else None (use the memory fallback).

        When Redis is down and the window has ended, the caller that gets the client is the
        probe: the next window starts now, so concurrent callers stay on memory until it
        answers (or until that window ends too, should the probe never report). `explicit`
        calls, those an operator or a readiness probe makes, skip the window: they want the
        truth now, not the remembered outage.
        """
        if _request_failed():
            return None
        if self._up or explicit:
            return self.client
        now = self._clock()
        if now < self._retry_at:
            return None
        self._retry_at = now + self.retry_seconds
        return self.client

    def client_if_up(self) -> Redis | None:
        """The client only while Redis answers: for work that can wait (sending counts), and
        must never be the probe that pays a timeout."""
        return self.client if self._up and not _request_failed() else None

    def failed(self, reason: object) -> None:
        """A command failed: Redis is down for this process until the window ends."""
        record = _current_request.get()
        if record is not None:
            record.failed = True
        self._retry_at = self._clock() + self.retry_seconds
        if not self._up:
            logger.debug("Redis still unavailable (%r)", reason)
            return
        self._up = False
        logger.warning(
            "Redis unavailable (%r); cache, rate limits and circuit breakers use per-process "
            "memory, retrying after %.1fs",
            reason,
            self.retry_seconds,
        )

    def answered(self) -> None:
        """A command answered: Redis is in use again, by every component."""
        if not self._up:
            self._up = True
            logger.info("Redis available again; cache, rate limits and breakers are shared again")
