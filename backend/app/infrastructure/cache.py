"""The response cache: the store behind the domain service's cache-aside (get, or compute and set).

- JSON only, never pickle: a value read back from a shared Redis cannot run code, and any tool can
  inspect it.
- A small in-process LRU sits in front of Redis: a repeated key costs no round trip, and the LRU is
  the memory cache when no Redis is configured or Redis is down.
- Redis failures never reach the caller of get/set: the cache serves from memory while the
  process's `RedisAvailability` says Redis is down, so an outage degrades the service instead of
  failing it.
- Freshness is judged against `expires_at` stored in the value, by an injected clock; Redis's own
  TTL only collects garbage. That makes expiry and stale-while-error testable without sleeping.
"""

import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.core.exceptions import CacheUnavailableError
from app.infrastructure import redis_client
from app.infrastructure.metrics import Metrics
from app.infrastructure.redis_client import REDIS_ERRORS, RedisAvailability

logger = logging.getLogger(__name__)

Backend = Literal["redis", "memory", "memory-fallback"]
Outcome = Literal["hit", "stale", "miss"]

# Field names in the shared stats hash, one per lookup outcome.
_STAT_FIELDS: dict[Outcome, str] = {"hit": "hits", "stale": "stale_hits", "miss": "misses"}

# Inside ResponseCache, `set` names its method; this alias keeps the built-in type reachable there.
_KeySet = set[str]

# Keys asked of Redis per SCAN step, and so the largest UNLINK batch.
_SCAN_COUNT = 500


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A value found in the cache; `fresh` is False for a stale entry served within its grace."""

    value: dict[str, Any]
    stored_at: float
    expires_at: float
    fresh: bool


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    stale_hits: int
    hit_ratio: float
    backend: Backend
    key_count: int


@dataclass(frozen=True, slots=True)
class _Record:
    """One stored entry: the JSON document exactly as Redis holds it, and its two timestamps."""

    payload: bytes
    stored_at: float
    expires_at: float

    def entry(self, *, fresh: bool) -> CacheEntry:
        # Decoded on every read, so no two callers share (and mutate) one cached dict, and the
        # LRU returns exactly what a JSON round trip through Redis would.
        value: dict[str, Any] = json.loads(self.payload)["v"]
        return CacheEntry(value, self.stored_at, self.expires_at, fresh)


def _encode(value: dict[str, Any], *, stored_at: float, expires_at: float) -> _Record:
    document = {"v": value, "stored_at": stored_at, "expires_at": expires_at}
    # allow_nan=False: NaN and Infinity are not JSON, and other readers of Redis would reject them.
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return _Record(text.encode(), stored_at, expires_at)


def _decode(payload: bytes | str) -> _Record | None:
    """The record in `payload`, or None when it is not a document this cache wrote."""
    raw = payload.encode() if isinstance(payload, str) else payload
    try:
        document = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    if not isinstance(document, dict) or not isinstance(document.get("v"), dict):
        return None
    stored_at, expires_at = document.get("stored_at"), document.get("expires_at")
    if not (_is_number(stored_at) and _is_number(expires_at)):
        return None
    return _Record(raw, float(stored_at), float(expires_at))


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _judge(record: _Record, now: float, allow_stale_seconds: float) -> Outcome:
    if now < record.expires_at:
        return "hit"
    if now < record.expires_at + allow_stale_seconds:
        return "stale"
    return "miss"


def _glob_escape(text: str) -> str:
    """`text` matched literally by a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _as_str(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


class ResponseCache:
    """JSON values under `key_prefix + "namespace:digest"`, in an LRU and (when given) Redis.

    Hit, miss and stale counts are kept in a Redis hash shared by every worker. They ride along
    with the next command this worker sends anyway, so counting costs no extra round trip; the
    shared totals therefore lag by this worker's lookups since its last Redis command (at most
    `stats_flush_seconds` when it serves only from its LRU, longer while Redis is down: counts
    are never what probes a sick Redis).

    A fresh LRU entry is served without asking Redis, so an invalidation made by another worker
    reaches this worker's LRU only when the entry expires; an LRU entry that is not fresh is always
    checked against Redis.
    """

    def __init__(
        self,
        redis: RedisAvailability | None,
        *,
        lru_size: int = 1024,
        key_prefix: str = "llm:cache:",
        clock: Callable[[], float] = time.time,
        max_stale_seconds: float = 0.0,
        stats_flush_seconds: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        if lru_size < 1:
            raise ValueError("lru_size must be at least 1: the LRU is also the fallback store")
        if not key_prefix:
            raise ValueError("key_prefix must not be empty: invalidate() deletes prefix*")
        self._redis = redis
        self._lru_size = lru_size
        self._prefix = key_prefix
        # Wall-clock time by default, not monotonic: expires_at is shared with other processes.
        self._clock = clock
        self._max_stale_seconds = max_stale_seconds
        self._stats_flush_seconds = stats_flush_seconds
        self._metrics = metrics
        self._stats_key = f"{key_prefix}__stats__"
        self._lru: OrderedDict[str, _Record] = OrderedDict()
        # Every lookup of this process (reported while Redis is not in use) and the part of them
        # not yet added to the shared hash in Redis.
        self._local = dict.fromkeys(_STAT_FIELDS.values(), 0)
        self._pending = dict.fromkeys(_STAT_FIELDS.values(), 0)
        self._last_flush = clock()

    @property
    def backend(self) -> Backend:
        if self._redis is None:
            return "memory"
        return "redis" if self._redis.up else "memory-fallback"

    @property
    def redis_available(self) -> bool:
        """Whether the last Redis command succeeded (False without Redis)."""
        return self._redis is not None and self._redis.up

    async def get(self, key: str, *, allow_stale_seconds: float = 0.0) -> CacheEntry | None:
        """The entry under `key`: fresh, stale within `allow_stale_seconds` past expiry, or None."""
        full_key = self._full_key(key)
        now = self._clock()
        cached = self._lru.get(full_key)
        if cached is not None and now < cached.expires_at:
            self._lru.move_to_end(full_key)
            self._count("hit")
            await self._flush_if_due(now)
            return cached.entry(fresh=True)
        redis = self._usable_redis()
        if redis is not None:
            try:
                payload = await self._redis_get(redis, full_key)
            except REDIS_ERRORS as exc:
                self._mark_down(exc)
            else:
                self._mark_up()
                return await self._from_redis(redis, full_key, payload, now, allow_stale_seconds)
        # Read again: other requests may have changed the LRU while this one awaited Redis.
        return self._from_memory(full_key, now, allow_stale_seconds)

    async def set(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Store `value` for `ttl_seconds`. Raises TypeError/ValueError if it is not JSON."""
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        full_key = self._full_key(key)
        now = self._clock()
        record = _encode(value, stored_at=now, expires_at=now + ttl_seconds)
        self._remember(full_key, record)
        redis = self._usable_redis()
        if redis is None:
            return
        # Redis keeps the key through the longest stale grace, then collects it.
        expire_ms = max(1, math.ceil((ttl_seconds + self._max_stale_seconds) * 1000))
        counts = self._take_counts()
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.set(full_key, record.payload, px=expire_ms)
                self._queue_counts(pipe, counts)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._keep_counts(counts)
            self._mark_down(exc)
            return
        self._mark_up()

    async def invalidate(self, namespace: str | None = None) -> int:
        """Delete every key of `namespace` (or of the whole cache); returns how many were removed.

        Raises CacheUnavailableError when Redis is configured but cannot be reached: unlike a
        lookup, an invalidation that silently skipped Redis would let the old values come back.
        This process's memory is emptied all the same, and the error says so.
        """
        if namespace == "":
            raise ValueError("namespace must not be empty; pass None to invalidate everything")
        prefix = self._prefix if namespace is None else f"{self._prefix}{namespace}:"
        removed = {key for key in self._lru if key.startswith(prefix)}
        for key in removed:
            del self._lru[key]
        if self._redis is None:
            return len(removed)
        unavailable = CacheUnavailableError(
            f"Redis is unavailable: {len(removed)} answer(s) were removed from this "
            "worker's memory, but the answers in Redis, shared by every worker, remain. "
            "Invalidate again once Redis is back.",
            details={"namespace": namespace, "memory_removed": len(removed), "redis": "down"},
        )
        # Tried even while Redis is marked unavailable: an operator asked for it explicitly.
        redis = self._usable_redis(explicit=True)
        if redis is None:
            raise unavailable
        try:
            removed |= await self._unlink_matching(redis, _glob_escape(prefix) + "*")
        except REDIS_ERRORS as exc:
            self._mark_down(exc)
            raise unavailable from exc
        self._mark_up()
        return len(removed)

    async def stats(self) -> CacheStats:
        """Totals of every worker from Redis, or of this process while Redis is not in use."""
        redis = self._usable_redis()
        if redis is not None:
            try:
                totals = await self._shared_totals(redis)
                key_count = len(await self._scan_keys(redis, _glob_escape(self._prefix) + "*"))
            except REDIS_ERRORS as exc:
                self._mark_down(exc)
            else:
                self._mark_up()
                return self._make_stats(totals, key_count)
        return self._make_stats(self._local, len(self._lru))

    async def ping(self) -> bool:
        """Readiness: whether Redis answers now (True without Redis, the LRU is always there)."""
        if self._redis is None:
            return True
        # Tried even while Redis is marked unavailable, so a probe sees recovery at once.
        redis = self._usable_redis(explicit=True)
        if redis is None:
            return False
        if await redis_client.ping(redis):
            self._mark_up()
            return True
        self._mark_down("PING failed")
        return False

    # Lookup paths.

    async def _from_redis(
        self,
        redis: Redis,
        full_key: str,
        payload: bytes | str | None,
        now: float,
        allow_stale_seconds: float,
    ) -> CacheEntry | None:
        if payload is None:
            # Redis is the shared truth: the key expired or another worker invalidated it.
            self._lru.pop(full_key, None)
            self._count("miss")
            return None
        record = _decode(payload)
        if record is None:
            logger.warning("Cache value under %s is not a JSON cache entry; deleting it", full_key)
            self._lru.pop(full_key, None)
            self._count("miss")
            await self._delete(redis, full_key)
            return None
        outcome = _judge(record, now, allow_stale_seconds)
        self._count(outcome)
        if outcome == "miss":
            return None
        current = self._lru.get(full_key)
        # A set() made by this process while the GET was in flight is newer: keep it.
        if current is None or current.stored_at <= record.stored_at:
            self._remember(full_key, record)
        return record.entry(fresh=outcome == "hit")

    def _from_memory(
        self, full_key: str, now: float, allow_stale_seconds: float
    ) -> CacheEntry | None:
        cached = self._lru.get(full_key)
        outcome: Outcome = "miss" if cached is None else _judge(cached, now, allow_stale_seconds)
        self._count(outcome)
        if cached is None or outcome == "miss":
            # Kept while a longer grace could still serve it, as Redis keeps it.
            if cached is not None and now >= cached.expires_at + self._max_stale_seconds:
                self._lru.pop(full_key, None)
            return None
        self._lru.move_to_end(full_key)
        return cached.entry(fresh=outcome == "hit")

    def _remember(self, full_key: str, record: _Record) -> None:
        self._lru[full_key] = record
        self._lru.move_to_end(full_key)
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)

    def _full_key(self, key: str) -> str:
        namespace, colon, digest = key.partition(":")
        # The namespace is what invalidate() selects by; a key without one could never be
        # invalidated alone, and could collide with the stats hash.
        if not (namespace and colon and digest):
            raise ValueError(f"cache keys are 'namespace:digest', got {key!r}")
        return self._prefix + key

    # Redis commands. Each raises the client's errors; the public methods decide what they mean.

    async def _redis_get(self, redis: Redis, full_key: str) -> bytes | str | None:
        counts = self._take_counts()
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.get(full_key)
                self._queue_counts(pipe, counts)
                results = await pipe.execute()
        except BaseException:
            self._keep_counts(counts)
            raise
        payload: bytes | str | None = results[0]
        return payload

    async def _delete(self, redis: Redis, full_key: str) -> None:
        try:
            await redis.unlink(full_key)
        except REDIS_ERRORS as exc:
            self._mark_down(exc)

    async def _scan_keys(self, redis: Redis, pattern: str) -> _KeySet:
        keys: _KeySet = set()
        async for key in redis.scan_iter(match=pattern, count=_SCAN_COUNT):
            keys.add(_as_str(key))
        keys.discard(self._stats_key)
        return keys

    async def _unlink_matching(self, redis: Redis, pattern: str) -> _KeySet:
        removed: _KeySet = set()
        cursor = 0
        while True:
            cursor, found = await redis.scan(cursor, match=pattern, count=_SCAN_COUNT)
            # SCAN may return a key twice; the stats hash is not an entry and survives.
            batch = {_as_str(key) for key in found} - removed - {self._stats_key}
            if batch:
                # UNLINK frees memory in the background, so a large namespace does not block Redis.
                await redis.unlink(*batch)
                removed |= batch
            if cursor == 0:
                return removed

    async def _shared_totals(self, redis: Redis) -> dict[str, int]:
        counts = self._take_counts()
        try:
            async with redis.pipeline(transaction=False) as pipe:
                self._queue_counts(pipe, counts)
                pipe.hgetall(self._stats_key)
                results = await pipe.execute()
        except BaseException:
            self._keep_counts(counts)
            raise
        raw: dict[bytes | str, bytes | str] = results[-1]
        totals = {_as_str(field): int(value) for field, value in raw.items()}
        return {field: totals.get(field, 0) for field in _STAT_FIELDS.values()}

    async def _flush_if_due(self, now: float) -> None:
        """Send pending counts when no lookup has reached Redis for `stats_flush_seconds`."""
        if now - self._last_flush < self._stats_flush_seconds or not any(self._pending.values()):
            return
        # Only while Redis answers: a flush riding on an LRU hit must never be the probe that
        # makes that hit wait out a timeout.
        redis = None if self._redis is None else self._redis.client_if_up()
        if redis is None:
            return
        counts = self._take_counts()
        try:
            async with redis.pipeline(transaction=False) as pipe:
                self._queue_counts(pipe, counts)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._keep_counts(counts)
            self._mark_down(exc)
            return
        self._mark_up()

    # Counting.

    def _count(self, outcome: Outcome) -> None:
        field = _STAT_FIELDS[outcome]
        self._local[field] += 1
        if self._redis is not None:
            self._pending[field] += 1
        if self._metrics is not None:
            self._metrics.cache_lookups.labels(outcome=outcome).inc()

    def _queue_counts(self, pipe: Pipeline, counts: dict[str, int]) -> None:
        for field, amount in counts.items():
            if amount:
                pipe.hincrby(self._stats_key, field, amount)

    def _take_counts(self) -> dict[str, int]:
        """The counts not yet sent, now in the caller's hands: zero here until more lookups.

        Taken, not copied: a copy left in `_pending` while the command is in flight would be
        sent again by any other request's command meanwhile (each request's lookup and write
        carry the counts), and the error grew with every round until HINCRBY overflowed.
        """
        counts = {field: amount for field, amount in self._pending.items() if amount}
        for field in counts:
            self._pending[field] = 0
        self._last_flush = self._clock()
        return counts

    def _keep_counts(self, counts: dict[str, int]) -> None:
        """Counts whose command failed: sent with a later one (a failed pipeline applied none
        of them, or some: counts are best effort, never counted twice on purpose)."""
        for field, amount in counts.items():
            self._pending[field] += amount

    def _make_stats(self, counts: dict[str, int], key_count: int) -> CacheStats:
        hits, misses = counts["hits"], counts["misses"]
        lookups = hits + misses
        return CacheStats(
            hits=hits,
            misses=misses,
            stale_hits=counts["stale_hits"],
            hit_ratio=hits / lookups if lookups else 0.0,
            backend=self.backend,
            key_count=key_count,
        )

    # Availability.

    def _usable_redis(self, *, explicit: bool = False) -> Redis | None:
        """The client, unless this process holds Redis down for now (see RedisAvailability)."""
        return None if self._redis is None else self._redis.client_now(explicit=explicit)

    def _mark_down(self, reason: BaseException | str) -> None:
        if self._redis is not None:
            self._redis.failed(reason)

    def _mark_up(self) -> None:
        if self._redis is not None:
            self._redis.answered()
