"""RedisAvailability: one opinion per process of whether Redis may be asked, a single probe per
retry window, and at most one failed command per request. Time is a FakeClock."""

import asyncio
import logging
from collections.abc import AsyncIterator

import fakeredis
import pytest
from app.infrastructure.cache import ResponseCache
from app.infrastructure.rate_limit import RateLimiter
from app.infrastructure.redis_client import RedisAvailability, request_scope
from app.infrastructure.resilience.breaker import BreakerPolicy
from app.infrastructure.resilience.breaker_store import RedisBreakerStore
from fakes.clock import FakeClock
from redis.asyncio import Redis

RETRY = 1.0
LOGGER = "app.infrastructure.redis_client"


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    redis = fakeredis.FakeAsyncRedis()  # never reached: the availability only hands it out
    yield redis
    await redis.aclose()


@pytest.fixture
def availability(client: Redis, clock: FakeClock) -> RedisAvailability:
    return RedisAvailability(client, clock=clock, retry_seconds=RETRY)


class TestRetryWindow:
    def test_up_hands_out_the_client(self, availability: RedisAvailability, client: Redis):
        assert availability.client_now() is client

    def test_after_a_failure_no_client_until_the_window_ends(
        self, availability: RedisAvailability, clock: FakeClock
    ):
        availability.failed(TimeoutError())
        clock.advance(RETRY - 0.01)

        assert availability.client_now() is None
        assert availability.up is False

    def test_window_ended_first_caller_probes_the_others_wait(
        self, availability: RedisAvailability, client: Redis, clock: FakeClock
    ):
        availability.failed(TimeoutError())
        clock.advance(RETRY)

        callers = [availability.client_now() for _ in range(3)]

        assert callers == [client, None, None]

    def test_probe_that_never_reports_lets_another_probe_a_window_later(
        self, availability: RedisAvailability, client: Redis, clock: FakeClock
    ):
        availability.failed(TimeoutError())
        clock.advance(RETRY)
        availability.client_now()  # a probe whose caller was cancelled before it reported

        clock.advance(RETRY)

        assert availability.client_now() is client

    def test_answer_ends_the_outage_for_every_caller(
        self, availability: RedisAvailability, client: Redis, clock: FakeClock
    ):
        availability.failed(TimeoutError())
        clock.advance(RETRY)
        availability.client_now()

        availability.answered()

        assert [availability.client_now() for _ in range(2)] == [client, client]
        assert availability.up is True

    def test_explicit_calls_skip_the_window(self, availability: RedisAvailability, client: Redis):
        availability.failed(ConnectionError())

        assert availability.client_now(explicit=True) is client

    def test_work_that_can_wait_never_probes(
        self, availability: RedisAvailability, clock: FakeClock
    ):
        availability.failed(TimeoutError())
        clock.advance(10 * RETRY)

        assert availability.client_if_up() is None

    def test_one_warning_per_outage_and_one_line_at_recovery(
        self, availability: RedisAvailability, caplog: pytest.LogCaptureFixture
    ):
        caplog.set_level(logging.INFO, logger=LOGGER)
        for _ in range(3):
            availability.failed(TimeoutError())
        availability.answered()
        availability.answered()

        levels = [record.levelno for record in caplog.records if record.name == LOGGER]
        assert levels == [logging.WARNING, logging.INFO]


class TestRequestScope:
    def test_request_that_met_a_failure_sends_nothing_more_even_after_recovery(
        self, availability: RedisAvailability, client: Redis
    ):
        with request_scope():
            availability.failed(TimeoutError())
            availability.answered()  # another request's probe found Redis back
            in_failed_request = availability.client_now(explicit=True)
        with request_scope():
            in_next_request = availability.client_now()

        assert (in_failed_request, in_next_request) == (None, client)

    async def test_tasks_of_a_request_share_its_record(self, availability: RedisAvailability):
        async def batch_item() -> None:
            availability.failed(TimeoutError())

        with request_scope():
            await asyncio.create_task(batch_item())
            availability.answered()
            after_item = availability.client_now()

        assert after_item is None

    def test_without_a_scope_only_the_window_applies(
        self, availability: RedisAvailability, client: Redis
    ):
        availability.failed(TimeoutError())
        availability.answered()

        assert availability.client_now() is client


class TestSharedByComponents:
    async def test_cache_failure_keeps_rate_limiter_and_breaker_store_off_redis(
        self, clock: FakeClock
    ):
        server = fakeredis.FakeServer()
        client = fakeredis.FakeAsyncRedis(server=server)
        availability = RedisAvailability(client, clock=clock, retry_seconds=RETRY)
        cache, limiter = ResponseCache(availability, clock=clock), RateLimiter(availability)
        store = RedisBreakerStore(availability)
        server.connected = False
        await cache.get("summarize:a")  # the one failed command
        server.connected = True  # Redis is back, but the window has not ended

        await limiter.hit("key:1", per_minute=5)
        await store.admit("provider", clock(), BreakerPolicy(3, 30.0, 60.0, 1))
        in_redis = await client.keys("*")
        await client.aclose()

        assert (limiter.backend, cache.backend) == ("memory-fallback", "memory-fallback")
        assert in_redis == []
