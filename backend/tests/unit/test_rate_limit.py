"""RateLimiter: moving-window counts in Redis, a busy key charged ahead in batches, memory while
Redis is down, and the tier settings."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from app.core.config import load_settings
from app.core.exceptions import ConfigurationError
from app.infrastructure.rate_limit import RESERVE_MAX, RateLimiter, RateLimitResult
from app.infrastructure.redis_client import RedisAvailability
from fakes.clock import FakeClock
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def limiter(server: fakeredis.FakeServer, clock: FakeClock) -> AsyncIterator[RateLimiter]:
    redis = fakeredis.FakeAsyncRedis(server=server)
    yield RateLimiter(RedisAvailability(redis, clock=clock, retry_seconds=1.0))
    await redis.aclose()


class TestRateLimiter:
    async def test_hit_over_the_limit_is_refused_with_a_retry_delay(self, limiter: RateLimiter):
        results = [await limiter.hit("key:1", per_minute=2) for _ in range(3)]

        assert [r.allowed for r in results] == [True, True, False]
        assert [r.remaining for r in results] == [1, 0, 0]
        assert [r.retry_after_seconds is None for r in results] == [True, True, False]
        assert results[-1].retry_after_seconds is not None
        assert 0 < results[-1].retry_after_seconds <= 60

    async def test_cost_charges_several_requests_at_once(self, limiter: RateLimiter):
        first = await limiter.hit("key:1", per_minute=5, cost=3)
        second = await limiter.hit("key:1", per_minute=5, cost=3)

        assert (first.allowed, first.remaining) == (True, 2)
        assert (second.allowed, second.remaining) == (False, 2)  # refused: nothing charged

    async def test_identities_are_counted_apart(self, limiter: RateLimiter):
        await limiter.hit("key:1", per_minute=1)

        other = await limiter.hit("key:2", per_minute=1)

        assert other.allowed

    async def test_outage_counts_in_memory_then_returns_to_redis_after_the_delay(
        self, limiter: RateLimiter, server: fakeredis.FakeServer, clock: FakeClock
    ):
        server.connected = False
        during = await limiter.hit("key:1", per_minute=5)
        server.connected = True
        still_memory = limiter.backend
        clock.advance(1.0)
        after = await limiter.hit("key:1", per_minute=5)

        assert (during.allowed, during.remaining) == (True, 4)
        assert still_memory == "memory-fallback"
        assert limiter.backend == "redis"
        assert after.remaining == 4  # Redis never saw the request counted in memory

    async def test_without_redis_counts_in_memory(self):
        limiter = RateLimiter(None)

        before = time.time()
        results = [await limiter.hit("key:1", per_minute=1) for _ in range(2)]
        after = time.time()

        assert limiter.backend == "memory"
        assert [r.allowed for r in results] == [True, False]
        # The window resets a minute after its one request.
        assert before + 60 <= results[1].reset_at <= after + 60

    async def test_outage_retries_redis_after_the_default_one_second(
        self, server: fakeredis.FakeServer, clock: FakeClock
    ):
        redis = fakeredis.FakeAsyncRedis(server=server)
        limiter = RateLimiter(RedisAvailability(redis, clock=clock))
        before = limiter.backend
        server.connected = False
        await limiter.hit("key:1", per_minute=5)
        server.connected = True

        backends = []
        for _ in range(2):
            clock.advance(0.5)
            await limiter.hit("key:1", per_minute=5)
            backends.append(limiter.backend)
        await redis.aclose()

        assert before == "redis"
        assert backends == ["memory-fallback", "redis"]

    def test_headers_name_the_limit_what_remains_and_the_reset_second(self):
        result = RateLimitResult(
            allowed=True, limit=10, remaining=7, reset_at=1_700_000_000.2, retry_after_seconds=None
        )

        assert result.headers() == {
            "X-RateLimit-Limit": "10",
            "X-RateLimit-Remaining": "7",
            "X-RateLimit-Reset": "1700000001",
        }


class TestRateLimitSettings:
    @pytest.fixture(autouse=True)
    def _no_env_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path):
        monkeypatch.chdir(tmp_path)  # a developer's .env must not leak into these tests

    @pytest.mark.covers("CONF-01")
    def test_default_tier_missing_from_the_tiers_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setenv("RATE_LIMIT_TIERS", '{"basic": 10}')

        with pytest.raises(ConfigurationError, match="DEFAULT_TIER"):
            load_settings()

    @pytest.mark.covers("CONF-01")
    def test_tier_below_one_request_names_the_variable(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setenv("RATE_LIMIT_TIERS", '{"free": 0, "pro": 600}')

        with pytest.raises(ConfigurationError, match="RATE_LIMIT_TIERS"):
            load_settings()


@pytest.fixture
async def limits_itself(server: fakeredis.FakeServer) -> AsyncIterator[MovingWindowRateLimiter]:
    """`limits`' own moving window on the same Redis and key prefix as the app's limiter."""
    redis = fakeredis.FakeAsyncRedis(server=server)
    # `limits` annotates its options as scalars, but documents and supports `connection_pool`.
    options: dict[str, Any] = {"connection_pool": redis.connection_pool}
    storage = RedisStorage(
        "async+redis://", implementation="redispy", key_prefix="llm:ratelimit", **options
    )
    yield MovingWindowRateLimiter(storage)
    await redis.aclose()


class TestRateLimitWindowInRedis:
    """The one-round-trip script keeps `limits`' own moving window: its keys and its entries."""

    async def test_window_charged_by_the_script_reads_the_same_through_limits(
        self, limiter: RateLimiter, limits_itself: MovingWindowRateLimiter
    ):
        charged = [await limiter.hit("key:1", per_minute=5, cost=2) for _ in range(3)]

        stats = await limits_itself.get_window_stats(RateLimitItemPerMinute(5), "key:1")

        assert [r.allowed for r in charged] == [True, True, False]
        assert stats.remaining == charged[-1].remaining == 1
        assert stats.reset_time == pytest.approx(charged[-1].reset_at)

    async def test_window_charged_by_limits_is_counted_by_the_script(
        self, limiter: RateLimiter, limits_itself: MovingWindowRateLimiter
    ):
        for _ in range(4):
            await limits_itself.hit(RateLimitItemPerMinute(5), "key:1")

        results = [await limiter.hit("key:1", per_minute=5) for _ in range(2)]

        assert [(r.allowed, r.remaining) for r in results] == [(True, 0), (False, 0)]
        assert results[-1].retry_after_seconds is not None


class CountingRedis(fakeredis.FakeAsyncRedis):
    """fakeredis that counts the scripts it is asked to run (the round trips a limiter takes),
    and can hold them until released, as a slow Redis would."""

    scripts = 0
    held: asyncio.Event | None = None  # set: each answer waits for it, once `arrived` is set
    arrived: asyncio.Event | None = None

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.scripts += 1
        answer = await super().evalsha(*args, **kwargs)
        if self.held is not None and self.arrived is not None:  # run, its answer not yet back
            self.arrived.set()
            await self.held.wait()
        return answer


RESERVE_SECONDS = 0.05  # RATE_LIMIT_RESERVE_SECONDS' default


def window_key(per_minute: int, identity: str) -> str:
    return f"llm:ratelimit:{RateLimitItemPerMinute(per_minute).key_for(identity)}"


async def window_length(redis: fakeredis.FakeAsyncRedis, key: str, expected: int) -> int:
    """The window's entries, polled until there are `expected` of them (a second at most)."""
    length = -1
    for _ in range(100):
        if (length := int(await redis.llen(key))) == expected:
            break
        await asyncio.sleep(0.01)
    return length


@pytest.fixture
async def counting(server: fakeredis.FakeServer) -> AsyncIterator[CountingRedis]:
    redis = CountingRedis(server=server)
    yield redis
    await redis.aclose()


async def limiter_on(redis: fakeredis.FakeAsyncRedis, clock: FakeClock) -> RateLimiter:
    """A limiter whose script Redis already holds: its first call loads it, a round trip more."""
    availability = RedisAvailability(redis, clock=clock, retry_seconds=1.0)
    limiter = RateLimiter(availability, reserve_seconds=RESERVE_SECONDS)
    await limiter.hit("warm-up", per_minute=1)
    if isinstance(redis, CountingRedis):
        redis.scripts = 0
    return limiter


class TestChargedAhead:
    """A busy key is charged a batch at a time, handed out in-process; unused entries go back."""

    async def test_busy_key_takes_a_round_trip_per_batch_and_every_request_is_in_the_window(
        self, counting: CountingRedis, clock: FakeClock
    ):
        limiter = await limiter_on(counting, clock)

        results = [await limiter.hit("key:1", per_minute=6000) for _ in range(300)]
        entries = await counting.llen(window_key(6000, "key:1"))
        round_trips = counting.scripts
        await limiter.aclose()

        assert all(r.allowed for r in results)
        assert [r.remaining for r in results[:3]] == [5999, 5998, 5997]
        assert results[-1].remaining == 6000 - 300
        # Batches of 1, 2, 4, ... 64 (a second's worth of 6,000 a minute is 100): 300 requests
        # in 10 round trips where they took 300. A pause longer than RESERVE_SECONDS between two
        # hits (a loaded machine) starts the batches again from 1: a few round trips more.
        assert 10 <= round_trips <= 20
        # At most one batch is charged and not yet used.
        assert 300 <= entries <= 300 + RESERVE_MAX

    async def test_request_costing_more_than_is_left_is_charged_alone_and_the_rest_goes_back(
        self, counting: CountingRedis, clock: FakeClock
    ):
        limiter = await limiter_on(counting, clock)
        for _ in range(2):  # charged 1, then 2 of which 1 is left
            await limiter.hit("key:1", per_minute=6000)

        batch = await limiter.hit("key:1", per_minute=6000, cost=3)  # a batch of 3 items
        entries = await counting.llen(window_key(6000, "key:1"))
        await limiter.aclose()

        assert batch.allowed
        assert batch.remaining == 6000 - 5
        assert entries == 5  # 2 served, the 1 left given back, 3 charged for the batch alone

    async def test_entries_not_handed_out_go_back_to_the_window(
        self, counting: CountingRedis, clock: FakeClock
    ):
        limiter = await limiter_on(counting, clock)
        key = window_key(6000, "key:1")
        charged = served = 0
        while charged <= served < 100:  # until a batch is charged ahead of what was handed out
            await limiter.hit("key:1", per_minute=6000)
            served, charged = served + 1, await counting.llen(key)

        left = await window_length(counting, key, expected=served)
        await limiter.aclose()

        assert charged > served  # a batch was charged ahead and only partly handed out
        assert left == served  # what was not went back once RESERVE_SECONDS had passed

    async def test_closing_gives_back_what_was_charged_ahead(
        self, counting: CountingRedis, clock: FakeClock
    ):
        limiter = await limiter_on(counting, clock)
        for _ in range(100):
            await limiter.hit("key:1", per_minute=6000)

        await limiter.aclose()

        assert await counting.llen(window_key(6000, "key:1")) == 100

    async def test_caller_gone_while_a_batch_is_charged_its_unused_entries_still_go_back(
        self, counting: CountingRedis, clock: FakeClock
    ):
        limiter = await limiter_on(counting, clock)
        for _ in range(3):  # batches of 1 and 2: the next charge takes 4
            await limiter.hit("key:1", per_minute=6000)
        counting.held, counting.arrived = asyncio.Event(), asyncio.Event()
        caller = asyncio.create_task(limiter.hit("key:1", per_minute=6000))
        await counting.arrived.wait()

        caller.cancel()  # a client disconnecting before Redis's answer to the charge is back
        counting.held.set()
        left = await window_length(counting, window_key(6000, "key:1"), expected=4)
        await limiter.aclose()

        assert caller.cancelled()
        assert left == 4  # the three served, and the gone caller's own; the other 3 went back

    async def test_tier_of_a_request_a_second_or_less_is_charged_request_by_request(
        self, counting: CountingRedis, clock: FakeClock
    ):
        limiter = await limiter_on(counting, clock)

        lengths = []
        for _ in range(5):
            await limiter.hit("key:1", per_minute=60)
            lengths.append(await counting.llen(window_key(60, "key:1")))
        round_trips = counting.scripts
        await limiter.aclose()

        assert lengths == [1, 2, 3, 4, 5]
        assert round_trips == 5

    async def test_two_workers_never_let_a_key_past_its_limit_and_then_use_all_of_it(
        self, server: fakeredis.FakeServer, clock: FakeClock
    ):
        clients = [fakeredis.FakeAsyncRedis(server=server) for _ in range(2)]
        workers = [await limiter_on(client, clock) for client in clients]

        burst = await asyncio.gather(
            *(workers[i % 2].hit("key:1", per_minute=240) for i in range(400))
        )
        allowed_in_burst = sum(r.allowed for r in burst)
        settled = await window_length(clients[0], window_key(240, "key:1"), allowed_in_burst)
        later = 0
        while any([(await worker.hit("key:1", per_minute=240)).allowed for worker in workers]):
            later += 1
        for worker in workers:
            await worker.aclose()
        final = await clients[0].llen(window_key(240, "key:1"))
        for client in clients:
            await client.aclose()

        assert allowed_in_burst <= 240
        assert settled == allowed_in_burst  # charged ahead and unused: given back
        assert final == 240  # the whole limit was used, and no more
