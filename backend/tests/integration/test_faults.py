"""Faults under load: a Redis server killed and restarted or frozen, a provider failing for
everyone.

The Redis here is a private `redis-server` process the test starts, kills (SIGKILL, as an OOM
killer or a crashed host would) and starts again on the same port, so the app's own client and
connection pool live through a real crash; or stops with SIGSTOP, a server that accepts
connections and never answers, behind a proxy that counts the connections the app writes to.
The provider fails at the pydantic-ai boundary.
"""

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import RequestHistory
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend, RedisBackend
from fakes.clock import FakeClock
from fakes.providers import FakeProvider, server_error
from fakes.services import RedisServerProcess, frozen
from fakes.tcp_proxy import TcpProxy
from httpx import AsyncClient, Response
from redis.asyncio import Redis
from sqlalchemy import func, select

OPERATOR = {"X-API-Key": OPERATOR_KEY}
# Public keys get the `pro` tier: high enough that no request of a load is rate limited.
UNLIMITED = {"rate_limit_tiers": {"free": 60, "pro": 100_000}}
# Each request charged in a round trip of its own, so that a window counts the requests served
# through Redis, the observable of the restart tests: a batch charged ahead before a restart is
# handed out without Redis for RATE_LIMIT_RESERVE_SECONDS after it (RATE-05 covers batches).
EXACT_WINDOWS = {**UNLIMITED, "rate_limit_reserve_seconds": 0}
CONCURRENCY = 20
# Redis killed mid-load: as the 50th of 150 responses lands, 20 requests are in flight, 50 ran
# on Redis and 80 more run after the kill (each phase several rounds of CONCURRENCY).
KILL_LOAD = 150
# The process tries Redis again 1 s after a failure (RedisAvailability); the issue promises 2 s.
BACK_ON_REDIS_WITHIN = 2.0
CACHE_PREFIX = "llm:cache:"
LIMIT_PREFIX = "llm:ratelimit:"
# The provider error storm: breaker settings, and requests in the storm.
THRESHOLD = 5
MAX_ATTEMPTS = 3
RECOVERY = 30.0
STORM_SIZE = 100

OnResponse = Callable[[int, Response], None]
T = TypeVar("T")


def mixed_body(index: int) -> dict[str, Any]:
    """Half a load repeats ten texts (cache hits, shared flights); the other half is all new."""
    if index % 2:
        text = f"Dispatch {index}: the ferry left on time and the harbour stayed calm."
    else:
        text = f"Bulletin {index // 2 % 10}: rain is expected over the hills."
    return {"operation": "summarize", "text": text}


def distinct_body(index: int) -> dict[str, Any]:
    """A new text each time: identical concurrent requests would share one provider call."""
    return {"operation": "summarize", "text": f"Notice {index}: the bridge reopened at noon."}


async def bounded_load(
    client: AsyncClient,
    bodies: list[dict[str, Any]],
    on_response: OnResponse = lambda _landed, _response: None,
) -> list[Response]:
    """Every body posted, CONCURRENCY at a time; `on_response(n, r)` runs as the n-th lands."""
    slots = asyncio.Semaphore(CONCURRENCY)
    landed = 0

    async def post(body: dict[str, Any]) -> Response:
        nonlocal landed
        async with slots:
            response = await client.post("/v1/text/process", json=body)
        landed += 1
        on_response(landed, response)
        return response

    return await asyncio.gather(*(post(body) for body in bodies))


async def process(client: AsyncClient, body: dict[str, Any]) -> Response:
    return await client.post("/v1/text/process", json=body)


def kill_at(redis_process: RedisServerProcess, landed_count: int) -> OnResponse:
    def kill(landed: int, _response: Response) -> None:
        if landed == landed_count:
            redis_process.stop()

    return kill


async def restart(redis_process: RedisServerProcess) -> None:
    """Start Redis again on its port while the app's event loop keeps running, as it does in
    production: the loop must see the old connections closed by the server."""
    await asyncio.to_thread(redis_process.start)


async def history_rows(database_url: str) -> int:
    database = Database(database_url)
    try:
        async with database.session() as session:
            return await session.scalar(select(func.count()).select_from(RequestHistory)) or 0
    finally:
        await database.dispose()


async def cache_backend(client: AsyncClient) -> str:
    stats = await client.get("/internal/cache/stats", headers=OPERATOR)
    backend: str = stats.json()["backend"]
    return backend


async def breaker_state(client: AsyncClient) -> str:
    response = await client.get("/internal/resilience/breakers", headers=OPERATOR)
    (breaker,) = response.json()["breakers"]
    state: str = breaker["state"]
    return state


async def in_redis(redis: RedisBackend) -> tuple[int, list[int]]:
    """Seen by a client of the test's own: the cache entries (the stats hash left out) and the
    requests counted in each rate-limit window."""
    inspector: Redis = redis.client()
    try:
        entries = {key async for key in inspector.scan_iter(match=f"{CACHE_PREFIX}*")}
        entries.discard(f"{CACHE_PREFIX}__stats__".encode())
        windows = [key async for key in inspector.scan_iter(match=f"{LIMIT_PREFIX}*")]
        return len(entries), [await inspector.llen(window) for window in windows]
    finally:
        await inspector.aclose()


@pytest.mark.tiers("redis-server")
class TestRedisKilledUnderLoad:
    """Seam: API under concurrent load → rate limiter, cache, breaker store → a Redis process
    killed mid-load → history rows in the database.

    Paths: FAULT-01
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP; a
    private redis-server the test SIGKILLs mid-load; SQLite and PostgreSQL.
    Faked: the AI provider (FakeProvider).
    """

    @pytest.mark.covers("FAULT-01")
    async def test_redis_killed_mid_load_no_5xx_and_history_row_per_request(
        self,
        make_client: ClientFactory,
        redis_process: RedisServerProcess,
        database_backend: DatabaseBackend,
        provider: FakeProvider,
    ):
        """A Redis crash in the middle of traffic costs no request and no history row.

        Integration scope: 150 requests at concurrency 20 → rate limiter, response cache and
        breaker store on one Redis client (each with its memory fallback) → history rows in
        SQLite and PostgreSQL.
        Business impact: Redis is an optimisation; its crash under load must not turn into
        errors for callers or holes in the audit trail.
        Test strategy: kill the Redis process as the 50th response lands, let the rest of the
        load run against the dead server, then count history rows with the test's own
        connection.
        Success criteria: 150 responses, every one 200; 150 history rows; the cache reports
        its memory fallback, so the kill did reach the app mid-load.
        """
        client = await make_client(
            database=database_backend,
            redis=RedisBackend("redis-process", url=redis_process.url),
            model=provider.model,
            **UNLIMITED,
        )
        bodies = [mixed_body(index) for index in range(KILL_LOAD)]

        responses = await bounded_load(client, bodies, kill_at(redis_process, KILL_LOAD // 3))

        assert Counter(response.status_code for response in responses) == {200: KILL_LOAD}
        assert await history_rows(database_backend.url) == KILL_LOAD
        assert await cache_backend(client) == "memory-fallback"


@pytest.mark.tiers("redis-server")
class TestRedisRestarted:
    """Seam: redis-py's connection pool → a Redis restarted on the same port → the cache's and the
    rate limiter's way back from their memory fallback.

    Paths: FAULT-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP; a
    private redis-server killed and started again on its port; redis-py's pool.
    Faked: the AI provider (FakeProvider), time (FakeClock, past the retry window).
    """

    @pytest.mark.covers("FAULT-02")
    async def test_redis_restarted_after_outage_cache_used_again_within_two_seconds(
        self,
        make_client: ClientFactory,
        redis_process: RedisServerProcess,
        provider: FakeProvider,
        clock: FakeClock,
    ):
        """Two seconds after Redis comes back, answers are shared through it again, with no
        app restart.

        Integration scope: a load that saw the outage → the process's Redis retry window on
        the fake clock → one request probing the restarted, empty Redis for cache, rate
        limiter and breaker store at once → a second worker.
        Business impact: workers go back to sharing answers (one provider call per question)
        and rate limits on their own, instead of each paying until someone restarts them.
        Test strategy: a load of 60 that kills Redis at the 20th response; restart it; move
        the clock by 2 s; send one new question (the probe), then 19 more at once; look into
        Redis with a client of the test's own; ask one of them of a second worker.
        Success criteria: all 20 answers are in Redis and the shared rate-limit window counts
        20; stats say `redis`; the second worker, its memory empty, answers from the cache
        with no provider call.
        """
        redis = RedisBackend("redis-process", url=redis_process.url)
        client = await make_client(redis=redis, model=provider.model, **EXACT_WINDOWS)
        await bounded_load(
            client, [mixed_body(index) for index in range(60)], kill_at(redis_process, 20)
        )

        await restart(redis_process)
        clock.advance(BACK_ON_REDIS_WITHIN)
        questions = [distinct_body(index) for index in range(CONCURRENCY)]
        # The first request after the window probes Redis; concurrent ones stay on memory.
        await client.post("/v1/text/process", json=questions[0])
        await bounded_load(client, questions[1:])
        stored = await in_redis(redis)
        calls_before = provider.calls
        second_worker = await make_client(redis=redis, model=provider.model, **EXACT_WINDOWS)
        from_second = await second_worker.post("/v1/text/process", json=questions[0])

        assert stored == (CONCURRENCY, [CONCURRENCY])
        assert await cache_backend(client) == "redis"
        assert from_second.json()["cached"] is True
        assert provider.calls == calls_before

    @pytest.mark.covers("FAULT-02")
    async def test_redis_restarted_while_idle_pooled_connections_reconnect(
        self, make_client: ClientFactory, redis_process: RedisServerProcess
    ):
        """A restart the app never noticed leaves its pooled connections closed by the server;
        each reconnects on its next use instead of failing a command.

        Integration scope: redis-py's pool (a load's worth of idle connections) → a Redis
        killed and restarted on the same port with no request in between → the next burst's
        rate limiter, cache and breaker store.
        Business impact: a routine restart (deploy, failover, OOM kill) must not put the
        workers on memory-only caching and per-worker rate limits at their next burst.
        Test strategy: fill the pool with a load of 40; kill and restart Redis; send 20 new
        questions at once; look into Redis with a client of the test's own.
        Success criteria: every answer of the burst is in Redis, the shared rate-limit window
        counts all 20 requests, stats say `redis`.
        """
        redis = RedisBackend("redis-process", url=redis_process.url)
        client = await make_client(redis=redis, **EXACT_WINDOWS)
        await bounded_load(client, [mixed_body(index) for index in range(2 * CONCURRENCY)])

        redis_process.stop()
        await restart(redis_process)
        burst = await bounded_load(client, [distinct_body(index) for index in range(CONCURRENCY)])

        assert [response.status_code for response in burst] == [200] * CONCURRENCY
        assert await in_redis(redis) == (CONCURRENCY, [CONCURRENCY])
        assert await cache_backend(client) == "redis"


# Short, so that the tests waiting out Redis timeouts stay quick; long enough that a healthy
# Redis on a busy machine never misses it (which would spoil the counts).
FROZEN_TIMEOUT = 0.25
REDIS_RETRY = 1.0  # RedisAvailability's retry window
SETTLE_DEADLINE = 10.0  # the longest a poll below waits for what it expects
STATS_FLUSH = 5.0  # the cache's stats_flush_seconds


@pytest.fixture
async def redis_proxy(redis_process: RedisServerProcess) -> AsyncIterator[TcpProxy]:
    """The private Redis behind a proxy that counts the connections clients write to."""
    async with TcpProxy("127.0.0.1", redis_process.port) as proxy:
        yield proxy


async def connections_used(proxy: TcpProxy, work: Awaitable[T]) -> tuple[T, int]:
    """What `work` returns, and how many Redis connections the app wrote to meanwhile: against
    a frozen Redis, each one is a command that waited out its timeout."""
    before = proxy.heard.copy()
    result = await work  # a coroutine starts here, after the count was taken
    return result, proxy.connections_heard_since(before)


@pytest.mark.tiers("redis-server")
class TestRedisFrozen:
    """Seam: API → rate limiter, cache (its stats included), breaker store on one process-wide
    Redis availability → a redis-server frozen with SIGSTOP, behind a counting proxy.

    Paths: FAULT-06
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP; a
    private redis-server on a port no other worker gets, frozen with SIGSTOP and resumed, behind
    a loopback proxy that counts the connections written to.
    Faked: the AI provider (the local model, or FakeProvider), time (FakeClock, past the retry
    window).
    """

    @pytest.mark.covers("FAULT-06")
    async def test_frozen_redis_each_request_pays_one_timeout_at_most_then_redis_used_again(
        self,
        make_client: ClientFactory,
        redis_proxy: TcpProxy,
        redis_process: RedisServerProcess,
        clock: FakeClock,
    ):
        """A Redis that stops answering costs the process one timeout per retry window, not
        one per component per request; when it resumes, it is used again.

        Integration scope: new texts through rate limiter, cache and breaker store on a real
        Redis client → a proxy → a redis-server stopped with SIGSTOP, then resumed.
        Business impact: a hung Redis (a frozen VM, a network dropping packets) must not add
        up to three socket timeouts to every request, nor take the service down.
        Test strategy: one request on a healthy Redis; freeze it; five new texts in turn; move
        the fake clock past the retry window and send three at once; resume Redis, pass the
        window again and send one more. Count the Redis connections the app wrote to in each
        step at the proxy: against a frozen server each is one command timed out.
        Success criteria: every answer 200; the first frozen request used one connection and
        the next four none; the three concurrent requests one between them (a single probe);
        after the resume the answer is in Redis and stats say `redis`.
        """
        redis = RedisBackend("redis-process", url=f"redis://127.0.0.1:{redis_proxy.port}/0")
        client = await make_client(redis=redis, redis_timeout_seconds=FROZEN_TIMEOUT, **UNLIMITED)
        healthy = await client.post("/v1/text/process", json=distinct_body(0))

        assert redis_process.process is not None
        with frozen(redis_process.process):
            in_turn = [
                await connections_used(redis_proxy, process(client, distinct_body(i)))
                for i in range(1, 6)
            ]
            clock.advance(REDIS_RETRY)
            together, probes = await connections_used(
                redis_proxy,
                asyncio.gather(*(process(client, distinct_body(i)) for i in range(6, 9))),
            )
        clock.advance(REDIS_RETRY)
        resumed = await client.post("/v1/text/process", json=distinct_body(9))
        stored, _ = await in_redis(redis)

        assert healthy.status_code == 200
        assert [response.status_code for response, _ in in_turn] == [200] * 5
        assert [used for _, used in in_turn] == [1, 0, 0, 0, 0]
        assert [response.status_code for response in together] == [200] * 3
        assert probes == 1
        assert resumed.status_code == 200
        assert stored == 2  # the healthy answer and the one after the resume
        assert await cache_backend(client) == "redis"

    @pytest.mark.covers("FAULT-06")
    async def test_request_outliving_the_retry_window_does_not_probe_a_second_time(
        self,
        make_client: ClientFactory,
        redis_proxy: TcpProxy,
        redis_process: RedisServerProcess,
        provider: FakeProvider,
        clock: FakeClock,
    ):
        """A slow request that met one Redis timeout never meets a second, even when the
        retry window ends while it waits for the provider.

        Integration scope: one request → rate limiter (times out on the frozen Redis) → a
        provider call that outlasts the retry window → breaker store and cache write.
        Business impact: with a real model taking seconds, the slow request would otherwise
        be the one that probes the still-frozen Redis, paying the timeout twice.
        Test strategy: freeze Redis; send a new text to a provider that hangs; once the call
        reached the provider, move the fake clock past the retry window and release it.
        Count the Redis connections written to during the request at the proxy.
        Success criteria: 200, and one connection written to during the whole request.
        """
        redis = RedisBackend("redis-process", url=f"redis://127.0.0.1:{redis_proxy.port}/0")
        client = await make_client(
            redis=redis, model=provider.model, redis_timeout_seconds=FROZEN_TIMEOUT, **UNLIMITED
        )
        await client.post("/v1/text/process", json=distinct_body(0))
        provider.hang()

        async def slow_request() -> Response:
            request = asyncio.create_task(client.post("/v1/text/process", json=distinct_body(1)))
            await asyncio.wait_for(provider.hanging.wait(), SETTLE_DEADLINE)
            clock.advance(2 * REDIS_RETRY)
            provider.release.set()
            return await request

        assert redis_process.process is not None
        with frozen(redis_process.process):
            response, used = await connections_used(redis_proxy, slow_request())

        assert provider.calls == 2
        assert response.status_code == 200
        assert used == 1

    @pytest.mark.covers("FAULT-06")
    async def test_cache_hit_while_frozen_sends_nothing_to_redis(
        self,
        make_client: ClientFactory,
        redis_proxy: TcpProxy,
        redis_process: RedisServerProcess,
        clock: FakeClock,
    ):
        """Lookup counts riding on cache hits wait for Redis to answer again: they never make
        a hit from memory the request that probes a sick Redis.

        Integration scope: an operator's repeated question (no rate limit) → the cache's
        in-process LRU → its counts, due to be sent to Redis → a frozen redis-server.
        Business impact: the cheapest request, an answer from memory, must stay cheap in an
        outage instead of paying a socket timeout to send statistics.
        Test strategy: answer a question on a healthy Redis; freeze it; let one new text
        meet the timeout; move the clock past the retry window and the counts' flush
        interval; ask the first question again; count connections written to at the proxy.
        Success criteria: the repeated question is a cached 200 and wrote to no connection.
        """
        redis = RedisBackend("redis-process", url=f"redis://127.0.0.1:{redis_proxy.port}/0")
        client = await make_client(
            redis=redis, api_key=OPERATOR_KEY, redis_timeout_seconds=FROZEN_TIMEOUT
        )
        await client.post("/v1/text/process", json=distinct_body(0))

        assert redis_process.process is not None
        with frozen(redis_process.process):
            await client.post("/v1/text/process", json=distinct_body(1))
            clock.advance(STATS_FLUSH)
            hit, used = await connections_used(redis_proxy, process(client, distinct_body(0)))

        assert (hit.status_code, hit.json()["cached"]) == (200, True)
        assert used == 0


class TestProviderErrorStorm:
    """Seam: concurrent API requests → retries inside the circuit breaker (state in each Redis
    tier) → a provider answering 500 to everything.

    Paths: FAULT-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the breaker store on fakeredis, a redis-server and a container.
    Faked: the AI provider (FakeProvider failing on command), time (FakeClock), the backoff (the
    recording sleep).
    """

    @pytest.mark.covers("FAULT-03")
    async def test_error_storm_opens_breaker_and_provider_calls_stop(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        provider: FakeProvider,
        clock: FakeClock,
    ):
        """A provider failing for everyone is shielded from the traffic, then probed back.

        Integration scope: 100 requests at concurrency 20 → retry policy (3 attempts, fake
        sleep) → breaker (threshold 5) in fakeredis, a real server and a container → 502/503
        mapping; then recovery on the fake clock.
        Business impact: an outage must not multiply into a retry storm that costs money and
        delays the provider's recovery, and the service must heal without an operator.
        Test strategy: the provider raises HTTP 500 on every call; count its calls when the
        first `circuit_open` lands and after the storm; then let it succeed, pass the
        recovery time and send one request.
        Success criteria: no 500, only 502 (admitted, retried 3 times) and 503 (refused, no
        call); the breaker is open; at most 5 + 19 requests were admitted (the threshold and
        those already in flight), so once it is open the count grows by at most 19 requests'
        3 attempts; the recovery request answers 200 and closes the breaker.
        """
        provider.fail(server_error(500))
        client = await make_client(
            redis=redis_backend,
            model=provider.model,
            breaker_failure_threshold=THRESHOLD,
            breaker_recovery_seconds=RECOVERY,
            ai_max_attempts=MAX_ATTEMPTS,
            **UNLIMITED,
        )
        calls_when_open: list[int] = []

        def note_first_refusal(_landed: int, response: Response) -> None:
            if response.status_code == 503 and not calls_when_open:
                calls_when_open.append(provider.calls)

        storm = [distinct_body(index) for index in range(STORM_SIZE)]
        responses = await bounded_load(client, storm, note_first_refusal)
        calls_after_storm = provider.calls
        state_after_storm = await breaker_state(client)
        provider.succeed()
        clock.advance(RECOVERY)
        recovered = await client.post("/v1/text/process", json=distinct_body(STORM_SIZE))

        statuses = Counter(response.status_code for response in responses)
        assert set(statuses) == {502, 503}
        assert state_after_storm == "open"
        assert calls_after_storm == statuses[502] * MAX_ATTEMPTS
        assert statuses[502] <= THRESHOLD + CONCURRENCY - 1
        assert calls_after_storm - calls_when_open[0] <= (CONCURRENCY - 1) * MAX_ATTEMPTS
        assert recovered.status_code == 200
        assert await breaker_state(client) == "closed"
