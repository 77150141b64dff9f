"""ResponseCache on fakeredis and a real Redis (worker_services), on fakeredis alone for
outages (only fakeredis can be switched off and on again), and without Redis.

Time is a FakeClock: the cache judges freshness by its clock, so nothing here sleeps.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from app.core.config import load_settings
from app.core.exceptions import CacheUnavailableError, ConfigurationError
from app.infrastructure.cache import ResponseCache
from app.infrastructure.metrics import Metrics
from app.infrastructure.redis_client import RedisAvailability, create_redis, ping
from fakes.clock import FakeClock
from fakes.services import free_port
from redis.asyncio import Redis
from worker_services import Services

PREFIX = "test:cache:"
CACHE_LOGGER = "app.infrastructure.cache"
REDIS_LOGGER = "app.infrastructure.redis_client"


@dataclass
class RedisUnderTest:
    client: Redis
    # Only fakeredis can be switched off and on again, to play an outage.
    fake_server: fakeredis.FakeServer | None


@pytest.fixture(params=["fakeredis", pytest.param("real", marks=pytest.mark.real_services)])
async def redis_under_test(
    request: pytest.FixtureRequest, services: Services
) -> AsyncIterator[RedisUnderTest]:
    """fakeredis, then this test process's real Redis (flushed before and after)."""
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        fake = fakeredis.FakeAsyncRedis(server=server)
        yield RedisUnderTest(fake, server)
        await fake.aclose()
        return
    client = create_redis(services.redis_server_url(), timeout_seconds=0.5)
    await client.flushdb()
    yield RedisUnderTest(client, None)
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def fake_redis() -> AsyncIterator[RedisUnderTest]:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server)
    yield RedisUnderTest(client, server)
    await client.aclose()


CacheFactory = Callable[..., ResponseCache]


def _factory(redis: Redis | None, clock: FakeClock) -> CacheFactory:
    """Caches on `redis`, each with a Redis availability of its own, as in its own process."""

    def make(*, redis_retry_seconds: float = 1.0, **overrides: Any) -> ResponseCache:
        options: dict[str, Any] = {"key_prefix": PREFIX, "clock": clock} | overrides
        return ResponseCache(_available(redis, clock, redis_retry_seconds), **options)

    return make


def _available(
    redis: Redis | None, clock: FakeClock, retry_seconds: float = 1.0
) -> RedisAvailability | None:
    return (
        None
        if redis is None
        else RedisAvailability(redis, clock=clock, retry_seconds=retry_seconds)
    )


@pytest.fixture
def make_cache(redis_under_test: RedisUnderTest, clock: FakeClock) -> CacheFactory:
    return _factory(redis_under_test.client, clock)


@pytest.fixture
def make_fake_cache(fake_redis: RedisUnderTest, clock: FakeClock) -> CacheFactory:
    return _factory(fake_redis.client, clock)


@pytest.fixture
def make_memory_cache(clock: FakeClock) -> CacheFactory:
    return _factory(None, clock)


def _warnings(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]


class TestOptions:
    def test_lru_size_below_one_raises_value_error(self) -> None:
        with pytest.raises(ValueError, match="lru_size must be at least 1: the LRU is also"):
            ResponseCache(None, lru_size=0)

    def test_empty_key_prefix_raises_value_error(self) -> None:
        with pytest.raises(ValueError, match="key_prefix must not be empty"):
            ResponseCache(None, key_prefix="")

    def test_settings_with_lru_below_one_name_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)  # a developer's .env must not leak in
        monkeypatch.setenv("CACHE_LRU_SIZE", "0")

        # Refused with the variable's name at start-up, not by the cache's ValueError later.
        with pytest.raises(ConfigurationError, match="CACHE_LRU_SIZE"):
            load_settings()


class TestGetAndSet:
    async def test_unknown_key_then_stored_key_miss_then_hit(
        self, make_cache: CacheFactory
    ) -> None:
        cache = make_cache()
        assert await cache.get("summarize:abc") is None

        await cache.set("summarize:abc", {"summary": "short", "tokens": 3}, ttl_seconds=60)
        entry = await cache.get("summarize:abc")

        assert entry is not None
        assert entry.value == {"summary": "short", "tokens": 3}
        assert entry.fresh is True
        assert entry.expires_at - entry.stored_at == 60

    async def test_value_written_by_another_worker_hit_from_redis(
        self, make_cache: CacheFactory
    ) -> None:
        writer, reader = make_cache(), make_cache()

        await writer.set("summarize:abc", {"summary": "shared"}, ttl_seconds=60)
        entry = await reader.get("summarize:abc")

        assert entry is not None
        assert entry.value == {"summary": "shared"}

    async def test_returned_value_mutated_cache_unchanged(self, make_cache: CacheFactory) -> None:
        cache = make_cache()
        await cache.set("summarize:abc", {"items": [1, 2]}, ttl_seconds=60)
        first = await cache.get("summarize:abc")
        assert first is not None

        first.value["items"].append(3)
        second = await cache.get("summarize:abc")

        assert second is not None
        assert second.value == {"items": [1, 2]}

    async def test_value_not_json_serialisable_raises_type_error(
        self, make_cache: CacheFactory
    ) -> None:
        cache = make_cache()

        with pytest.raises(TypeError):
            await cache.set("summarize:abc", {"when": object()}, ttl_seconds=60)

    async def test_non_positive_ttl_raises_value_error(self, make_cache: CacheFactory) -> None:
        cache = make_cache()

        with pytest.raises(ValueError, match="ttl_seconds"):
            await cache.set("summarize:abc", {"x": 1}, ttl_seconds=0)

    async def test_sub_second_ttl_stored(self, make_cache: CacheFactory) -> None:
        cache = make_cache()

        await cache.set("summarize:abc", {"x": 1}, ttl_seconds=0.5)
        entry = await cache.get("summarize:abc")

        assert entry is not None
        assert entry.expires_at - entry.stored_at == 0.5

    async def test_value_with_nan_raises_value_error(self, make_cache: CacheFactory) -> None:
        cache = make_cache()

        # NaN is not JSON: another reader of Redis would reject the document.
        with pytest.raises(ValueError, match="JSON"):
            await cache.set("summarize:abc", {"score": float("nan")}, ttl_seconds=60)

    @pytest.mark.parametrize("key", ["abc", ":abc", "summarize:"])
    async def test_key_without_namespace_and_digest_raises_value_error(
        self, make_cache: CacheFactory, key: str
    ) -> None:
        cache = make_cache()

        with pytest.raises(ValueError, match="namespace:digest"):
            await cache.get(key)


class TestExpiry:
    async def test_clock_past_ttl_miss(self, make_cache: CacheFactory, clock: FakeClock) -> None:
        cache = make_cache()
        await cache.set("summarize:abc", {"summary": "old"}, ttl_seconds=60)

        clock.advance(60)
        entry = await cache.get("summarize:abc")

        assert entry is None

    async def test_clock_past_ttl_other_worker_also_misses(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        writer, reader = make_cache(), make_cache()
        await writer.set("summarize:abc", {"summary": "old"}, ttl_seconds=60)

        clock.advance(61)
        entry = await reader.get("summarize:abc")

        assert entry is None

    async def test_expired_within_grace_stale_entry_returned(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        cache = make_cache(max_stale_seconds=300)
        await cache.set("summarize:abc", {"summary": "old"}, ttl_seconds=60)

        clock.advance(60 + 100)
        entry = await cache.get("summarize:abc", allow_stale_seconds=300)

        assert entry is not None
        assert entry.fresh is False
        assert entry.value == {"summary": "old"}

    async def test_expired_beyond_grace_none(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        cache = make_cache(max_stale_seconds=300)
        await cache.set("summarize:abc", {"summary": "old"}, ttl_seconds=60)

        clock.advance(60 + 301)
        entry = await cache.get("summarize:abc", allow_stale_seconds=300)

        assert entry is None

    async def test_expired_without_stale_allowed_none(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        cache = make_cache(max_stale_seconds=300)
        await cache.set("summarize:abc", {"summary": "old"}, ttl_seconds=60)

        clock.advance(61)
        entry = await cache.get("summarize:abc")

        assert entry is None

    async def test_set_redis_ttl_covers_ttl_plus_max_stale(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        cache = make_cache(max_stale_seconds=300)

        await cache.set("summarize:abc", {"summary": "x"}, ttl_seconds=60)

        pttl = await redis_under_test.client.pttl(PREFIX + "summarize:abc")
        assert 359_000 < pttl <= 360_000

    async def test_set_without_stale_grace_redis_ttl_is_the_ttl(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        cache = make_cache()

        await cache.set("summarize:abc", {"summary": "x"}, ttl_seconds=60)

        pttl = await redis_under_test.client.pttl(PREFIX + "summarize:abc")
        assert 59_000 < pttl <= 60_000

    async def test_entry_past_the_longest_grace_dropped_from_memory(
        self, make_memory_cache: CacheFactory, clock: FakeClock
    ) -> None:
        cache = make_memory_cache(max_stale_seconds=300)
        await cache.set("summarize:abc", {"summary": "old"}, ttl_seconds=60)

        clock.advance(60 + 300)
        entry = await cache.get("summarize:abc", allow_stale_seconds=300)

        assert entry is None
        assert (await cache.stats()).key_count == 0


class TestLru:
    async def test_more_keys_than_lru_size_oldest_evicted(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        cache = make_cache(lru_size=2)
        for name in ("a", "b", "c"):
            await cache.set(f"summarize:{name}", {"name": name}, ttl_seconds=60)
        # With Redis emptied behind its back, only what the LRU kept can still be found.
        await redis_under_test.client.flushdb()

        found = {name: await cache.get(f"summarize:{name}") for name in ("a", "b", "c")}

        assert found["a"] is None
        assert found["b"] is not None
        assert found["c"] is not None

    async def test_recently_read_key_survives_eviction(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        cache = make_cache(lru_size=2)
        await cache.set("summarize:a", {"name": "a"}, ttl_seconds=60)
        await cache.set("summarize:b", {"name": "b"}, ttl_seconds=60)
        await cache.get("summarize:a")

        await cache.set("summarize:c", {"name": "c"}, ttl_seconds=60)
        await redis_under_test.client.flushdb()

        assert await cache.get("summarize:a") is not None
        assert await cache.get("summarize:b") is None

    async def test_lookup_from_redis_fills_lru(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        writer, reader = make_cache(), make_cache()
        await writer.set("summarize:abc", {"summary": "x"}, ttl_seconds=60)
        await reader.get("summarize:abc")

        await redis_under_test.client.flushdb()
        entry = await reader.get("summarize:abc")

        assert entry is not None

    async def test_lru_size_one_keeps_the_latest_entry(
        self, make_memory_cache: CacheFactory
    ) -> None:
        cache = make_memory_cache(lru_size=1)

        await cache.set("summarize:a", {"name": "a"}, ttl_seconds=60)
        await cache.set("summarize:b", {"name": "b"}, ttl_seconds=60)

        assert await cache.get("summarize:a") is None
        assert await cache.get("summarize:b") is not None

    async def test_set_while_lookup_in_flight_newer_value_kept(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        writer, cache = make_cache(), make_cache()
        await writer.set("summarize:abc", {"summary": "old"}, ttl_seconds=60)
        lookup = asyncio.create_task(cache.get("summarize:abc"))
        await asyncio.sleep(0)  # the lookup's GET is now on its way to Redis

        clock.advance(1)
        await cache.set("summarize:abc", {"summary": "new"}, ttl_seconds=60)
        await lookup
        entry = await cache.get("summarize:abc")

        assert entry is not None
        assert entry.value == {"summary": "new"}


class TestSerialisation:
    async def test_set_raw_redis_value_is_json_document(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest, clock: FakeClock
    ) -> None:
        cache = make_cache()

        await cache.set("summarize:abc", {"summary": "é", "n": 1.5}, ttl_seconds=60)

        raw = await redis_under_test.client.get(PREFIX + "summarize:abc")
        assert raw is not None
        assert json.loads(raw) == {
            "v": {"summary": "é", "n": 1.5},
            "stored_at": clock.now,
            "expires_at": clock.now + 60,
        }

    async def test_set_raw_redis_value_is_compact_utf8(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest, clock: FakeClock
    ) -> None:
        cache = make_cache()

        await cache.set("summarize:abc", {"summary": "é"}, ttl_seconds=60)

        raw = await redis_under_test.client.get(PREFIX + "summarize:abc")
        stored_at, expires_at = json.dumps(clock.now), json.dumps(clock.now + 60)
        expected = f'{{"v":{{"summary":"é"}},"stored_at":{stored_at},"expires_at":{expires_at}}}'
        assert raw == expected.encode()

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b"\x80\x04\x95 not json", id="pickle-like-bytes"),
            pytest.param(b'{"v": {"a": 1}', id="truncated-json"),
            pytest.param(b'["v", 1]', id="json-not-an-entry"),
            pytest.param(b'{"v": "text", "stored_at": 1, "expires_at": 2}', id="value-not-object"),
            pytest.param(b'{"v": {"a": 1}, "stored_at": 1}', id="expires-at-missing"),
            pytest.param(
                b'{"v": {"a": 1}, "stored_at": true, "expires_at": "9e18"}',
                id="timestamps-not-numbers",
            ),
        ],
    )
    async def test_corrupt_value_miss_and_deleted(
        self,
        make_cache: CacheFactory,
        redis_under_test: RedisUnderTest,
        caplog: pytest.LogCaptureFixture,
        raw: bytes,
    ) -> None:
        cache = make_cache()
        await redis_under_test.client.set(PREFIX + "summarize:abc", raw)

        entry = await cache.get("summarize:abc")

        assert entry is None
        assert await redis_under_test.client.exists(PREFIX + "summarize:abc") == 0
        assert len(_warnings(caplog, CACHE_LOGGER)) == 1
        assert cache.backend == "redis"


class TestInvalidate:
    async def test_one_namespace_removed_others_left(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        cache = make_cache()
        for key in ("summarize:a", "summarize:b", "sum:c", "translate:d"):
            await cache.set(key, {"k": key}, ttl_seconds=60)
        await redis_under_test.client.set("unrelated:summarize:x", b"1")

        removed = await cache.invalidate("summarize")

        assert removed == 2
        assert await cache.get("summarize:a") is None
        assert await cache.get("summarize:b") is None
        assert await cache.get("sum:c") is not None
        assert await cache.get("translate:d") is not None
        assert await redis_under_test.client.exists("unrelated:summarize:x") == 1

    async def test_namespace_invalidated_other_worker_lru_entry_not_served_once_stale(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        worker_a, worker_b = make_cache(max_stale_seconds=300), make_cache(max_stale_seconds=300)
        await worker_a.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await worker_b.get("summarize:a")

        await worker_a.invalidate("summarize")
        clock.advance(61)
        entry = await worker_b.get("summarize:a", allow_stale_seconds=300)

        assert entry is None

    async def test_all_namespaces_removed_everything_under_prefix(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        cache = make_cache()
        for key in ("summarize:a", "sum:c", "translate:d"):
            await cache.set(key, {"k": key}, ttl_seconds=60)
        await redis_under_test.client.set("unrelated:x", b"1")

        removed = await cache.invalidate()

        assert removed == 3
        assert (await cache.stats()).key_count == 0
        assert await cache.get("translate:d") is None
        assert await redis_under_test.client.exists("unrelated:x") == 1

    async def test_more_keys_than_one_scan_batch_all_removed(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        cache = make_cache()
        keys = {f"{PREFIX}bulk:{n}": b"{}" for n in range(1_200)}
        await redis_under_test.client.mset(keys)

        removed = await cache.invalidate("bulk")

        assert removed == 1_200
        assert await redis_under_test.client.dbsize() == 0

    async def test_namespace_with_glob_characters_matched_literally(
        self, make_cache: CacheFactory, redis_under_test: RedisUnderTest
    ) -> None:
        cache = make_cache()
        await cache.set("a?:1", {"k": 1}, ttl_seconds=60)
        await cache.set("ab:1", {"k": 2}, ttl_seconds=60)

        await cache.invalidate("a?")

        assert await redis_under_test.client.exists(PREFIX + "a?:1") == 0
        assert await redis_under_test.client.exists(PREFIX + "ab:1") == 1

    async def test_empty_namespace_raises_value_error(self, make_cache: CacheFactory) -> None:
        cache = make_cache()

        with pytest.raises(ValueError, match="namespace must not be empty; pass None"):
            await cache.invalidate("")

    @pytest.mark.parametrize("how", ["invalidated", "corrupted"])
    async def test_entry_gone_from_redis_not_served_from_memory_in_a_later_outage(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest, clock: FakeClock, how: str
    ) -> None:
        worker_a, worker_b = (
            make_fake_cache(max_stale_seconds=300),
            make_fake_cache(max_stale_seconds=300),
        )
        await worker_a.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await worker_b.get("summarize:a")
        if how == "invalidated":
            await worker_a.invalidate("summarize")
        else:
            await fake_redis.client.set(PREFIX + "summarize:a", b"not json")
        clock.advance(61)
        await worker_b.get("summarize:a", allow_stale_seconds=300)  # Redis: gone

        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False
        entry = await worker_b.get("summarize:a", allow_stale_seconds=300)

        assert entry is None

    async def test_invalidate_all_keeps_shared_stats(self, make_cache: CacheFactory) -> None:
        cache = make_cache()
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await cache.get("summarize:a")
        await cache.get("summarize:b")

        await cache.invalidate()
        stats = await cache.stats()

        assert (stats.hits, stats.misses, stats.key_count) == (1, 1, 0)

    async def test_entries_cached_during_an_outage_counted_as_removed(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest, clock: FakeClock
    ) -> None:
        cache = make_fake_cache(redis_retry_seconds=1)
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)  # in memory only
        fake_redis.fake_server.connected = True
        clock.advance(1)

        removed = await cache.invalidate("summarize")

        assert removed == 1


class TestStats:
    async def test_lookups_counted_hit_ratio_and_key_count(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        cache = make_cache(max_stale_seconds=300)
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await cache.set("summarize:b", {"k": 2}, ttl_seconds=10)
        await cache.get("summarize:a")
        await cache.get("summarize:a")
        await cache.get("summarize:a")
        await cache.get("summarize:missing")
        clock.advance(20)
        await cache.get("summarize:b", allow_stale_seconds=300)

        stats = await cache.stats()

        assert (stats.hits, stats.misses, stats.stale_hits) == (3, 1, 1)
        assert stats.hit_ratio == 0.75
        assert stats.key_count == 2
        assert stats.backend == "redis"

    async def test_no_lookups_hit_ratio_zero(self, make_cache: CacheFactory) -> None:
        cache = make_cache()

        stats = await cache.stats()

        assert (stats.hits, stats.misses, stats.hit_ratio, stats.key_count) == (0, 0, 0.0, 0)

    async def test_lookups_of_two_workers_same_totals_in_both(
        self, make_cache: CacheFactory
    ) -> None:
        worker_a, worker_b = make_cache(), make_cache()
        await worker_a.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await worker_a.get("summarize:a")
        await worker_a.get("summarize:missing")
        await worker_b.get("summarize:a")
        await worker_b.get("summarize:other")
        # A worker's latest lookups ride along with its next Redis command; stats() sends them.
        await worker_a.stats()
        await worker_b.stats()

        stats_a = await worker_a.stats()
        stats_b = await worker_b.stats()

        assert (stats_a.hits, stats_a.misses) == (2, 2)
        assert (stats_b.hits, stats_b.misses) == (2, 2)

    async def test_lru_only_hits_reach_shared_totals_after_flush_interval(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        serving, observer = make_cache(stats_flush_seconds=5), make_cache()
        await serving.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await serving.get("summarize:a")

        clock.advance(5)
        await serving.get("summarize:a")
        stats = await observer.stats()

        assert stats.hits == 2

    async def test_lru_hits_reach_shared_totals_only_at_the_default_flush_interval(
        self, make_cache: CacheFactory, clock: FakeClock
    ) -> None:
        serving, observer = make_cache(), make_cache()
        await serving.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await serving.get("summarize:a")
        clock.advance(4.9)
        await serving.get("summarize:a")
        # An LRU hit costs no Redis round trip: its count waits for the flush interval.
        before = (await observer.stats()).hits

        clock.advance(0.1)
        await serving.get("summarize:a")
        after = (await observer.stats()).hits

        assert (before, after) == (0, 3)

    async def test_lookups_with_metrics_counted_by_outcome(self, make_cache: CacheFactory) -> None:
        metrics = Metrics()
        cache = make_cache(metrics=metrics)
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)

        await cache.get("summarize:a")
        await cache.get("summarize:missing")
        await cache.get("summarize:missing")

        def sample(outcome: str) -> float | None:
            return metrics.registry.get_sample_value("cache_lookups_total", {"outcome": outcome})

        assert (sample("hit"), sample("miss")) == (1.0, 2.0)


class TestRedisOutage:
    async def test_redis_down_get_and_set_served_from_memory(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest
    ) -> None:
        cache = make_fake_cache()
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False

        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        entry = await cache.get("summarize:a")
        missing = await cache.get("summarize:missing")

        assert entry is not None
        assert entry.value == {"k": 1}
        assert missing is None
        assert cache.backend == "memory-fallback"
        assert cache.redis_available is False

    async def test_redis_down_one_warning_per_outage(
        self,
        make_fake_cache: CacheFactory,
        fake_redis: RedisUnderTest,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        cache = make_fake_cache(redis_retry_seconds=1)
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False

        for _ in range(3):
            await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
            await cache.get("summarize:b")
            clock.advance(2)

        assert len(_warnings(caplog, REDIS_LOGGER)) == 1

    async def test_redis_down_stale_entry_from_memory(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest, clock: FakeClock
    ) -> None:
        cache = make_fake_cache(max_stale_seconds=300)
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False

        clock.advance(100)
        entry = await cache.get("summarize:a", allow_stale_seconds=300)

        assert entry is not None
        assert entry.fresh is False

    async def test_redis_back_within_retry_window_not_used_yet(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest, clock: FakeClock
    ) -> None:
        cache = make_fake_cache(redis_retry_seconds=1)
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False
        await cache.get("summarize:a")

        fake_redis.fake_server.connected = True
        clock.advance(0.5)
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)

        assert cache.backend == "memory-fallback"
        assert await fake_redis.client.exists(PREFIX + "summarize:a") == 0

    async def test_redis_back_after_retry_window_writes_land_in_redis(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest, clock: FakeClock
    ) -> None:
        cache = make_fake_cache(redis_retry_seconds=1)
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False
        await cache.get("summarize:a")

        fake_redis.fake_server.connected = True
        clock.advance(1)
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)

        assert cache.backend == "redis"
        assert cache.redis_available is True
        assert await fake_redis.client.exists(PREFIX + "summarize:a") == 1

    async def test_redis_back_lookups_during_outage_reach_shared_totals(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest, clock: FakeClock
    ) -> None:
        cache = make_fake_cache(redis_retry_seconds=1)
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False
        await cache.get("summarize:a")
        await cache.get("summarize:b")
        outage_stats = await cache.stats()

        fake_redis.fake_server.connected = True
        clock.advance(1)
        recovered_stats = await cache.stats()

        assert (outage_stats.backend, outage_stats.misses) == ("memory-fallback", 2)
        assert (recovered_stats.backend, recovered_stats.misses) == ("redis", 2)

    async def test_ping_within_retry_window_tries_redis_and_recovers(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest
    ) -> None:
        cache = make_fake_cache(redis_retry_seconds=60)
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False
        down = await cache.ping()

        fake_redis.fake_server.connected = True
        up = await cache.ping()

        assert (down, up) == (False, True)
        assert cache.backend == "redis"

    async def test_invalidate_with_redis_down_raises_cache_unavailable_and_clears_lru(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest
    ) -> None:
        cache = make_fake_cache()
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False

        with pytest.raises(CacheUnavailableError):
            await cache.invalidate("summarize")

        assert await cache.get("summarize:a") is None

    async def test_invalidate_with_redis_down_error_names_the_namespace(
        self, make_fake_cache: CacheFactory, fake_redis: RedisUnderTest
    ) -> None:
        cache = make_fake_cache()
        assert fake_redis.fake_server is not None
        fake_redis.fake_server.connected = False

        with pytest.raises(CacheUnavailableError) as caught:
            await cache.invalidate("summarize")

        assert "Redis is unavailable" in caught.value.message
        assert caught.value.details == {
            "namespace": "summarize",
            "memory_removed": 0,
            "redis": "down",
        }

    async def test_unreachable_real_client_get_and_set_served_from_memory(
        self, clock: FakeClock
    ) -> None:
        client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.2)
        cache = ResponseCache(_available(client, clock), key_prefix=PREFIX, clock=clock)

        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        entry = await cache.get("summarize:a")
        await client.aclose()

        assert entry is not None
        assert cache.backend == "memory-fallback"


class TestMemoryOnly:
    async def test_no_redis_miss_then_hit(self, make_memory_cache: CacheFactory) -> None:
        cache = make_memory_cache()
        assert await cache.get("summarize:a") is None

        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        entry = await cache.get("summarize:a")

        assert entry is not None
        assert entry.value == {"k": 1}
        assert cache.backend == "memory"
        assert cache.redis_available is False

    async def test_no_redis_expiry_and_stale_grace_by_clock(
        self, make_memory_cache: CacheFactory, clock: FakeClock
    ) -> None:
        cache = make_memory_cache()
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)

        clock.advance(90)
        stale = await cache.get("summarize:a", allow_stale_seconds=60)
        gone = await cache.get("summarize:a")

        assert stale is not None
        assert stale.fresh is False
        assert gone is None

    async def test_no_redis_lru_size_bounds_entries(self, make_memory_cache: CacheFactory) -> None:
        cache = make_memory_cache(lru_size=2)

        for name in ("a", "b", "c"):
            await cache.set(f"summarize:{name}", {"name": name}, ttl_seconds=60)

        assert await cache.get("summarize:a") is None
        assert (await cache.stats()).key_count == 2

    async def test_no_redis_invalidate_counts_lru_keys(
        self, make_memory_cache: CacheFactory
    ) -> None:
        cache = make_memory_cache()
        for key in ("summarize:a", "summarize:b", "translate:c"):
            await cache.set(key, {"k": key}, ttl_seconds=60)

        removed_namespace = await cache.invalidate("summarize")
        removed_rest = await cache.invalidate()

        assert (removed_namespace, removed_rest) == (2, 1)

    async def test_no_redis_stats_in_process(self, make_memory_cache: CacheFactory) -> None:
        cache = make_memory_cache()
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await cache.get("summarize:a")
        await cache.get("summarize:b")

        stats = await cache.stats()

        assert (stats.hits, stats.misses, stats.hit_ratio) == (1, 1, 0.5)
        assert (stats.backend, stats.key_count) == ("memory", 1)

    async def test_no_redis_ping_true(self, make_memory_cache: CacheFactory) -> None:
        cache = make_memory_cache()

        assert await cache.ping() is True


class TestRedisClient:
    async def test_create_redis_fails_fast_without_retries(self) -> None:
        client = create_redis("redis://127.0.0.1:6379/14", timeout_seconds=0.25)

        options = client.connection_pool.connection_kwargs
        await client.aclose()

        assert options["socket_timeout"] == 0.25
        assert options["socket_connect_timeout"] == 0.25
        assert options["retry"].get_retries() == 0
        assert options["decode_responses"] is False
        assert options["health_check_interval"] == 0

    async def test_ping_unreachable_server_false_without_raising(self) -> None:
        client = create_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.2)

        result = await ping(client)
        await client.aclose()

        assert result is False

    async def test_ping_reachable_server_true(self, redis_under_test: RedisUnderTest) -> None:
        assert await ping(redis_under_test.client) is True

    async def test_client_decoding_responses_stats_and_invalidate_work(
        self, clock: FakeClock
    ) -> None:
        client = fakeredis.FakeAsyncRedis(decode_responses=True)  # keys come back as str
        cache = ResponseCache(_available(client, clock), key_prefix=PREFIX, clock=clock)
        await cache.set("summarize:a", {"k": 1}, ttl_seconds=60)
        await cache.get("summarize:a")

        stats = await cache.stats()
        removed = await cache.invalidate()
        await client.aclose()

        assert (stats.hits, stats.key_count, removed) == (1, 1, 1)
