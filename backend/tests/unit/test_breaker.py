"""The circuit breaker, one short test per transition, on every store.

The `store` fixture runs each scenario on the memory store, on fakeredis and on a real Redis
(this test process's own, from worker_services): the Lua script and the Python rules
must behave alike. A fake clock moves time by hand; no test sleeps.
"""

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import fakeredis
import pytest
from app.core.exceptions import CircuitOpenError, ProviderError, ValidationError
from app.infrastructure.redis_client import RedisAvailability, create_redis
from app.infrastructure.resilience.breaker import (
    BreakerSnapshot,
    BreakerState,
    BreakerStore,
    CircuitBreaker,
)
from app.infrastructure.resilience.breaker_store import MemoryBreakerStore, RedisBreakerStore
from fakes.clock import FakeClock
from fakes.services import unavailable
from redis.asyncio import Redis
from redis.exceptions import RedisError
from worker_services import Services

THRESHOLD = 3
RECOVERY = 30.0
WINDOW = 60.0
REDIS_RETRY = 1.0  # RedisAvailability's default retry window
REMEMBER_OPEN = 1.0  # CircuitBreaker's default remember_open_seconds

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Dependency:
    """The wrapped provider: a succeeding and a failing call, both counted."""

    def __init__(self) -> None:
        self.calls = 0

    async def succeed(self) -> str:
        self.calls += 1
        return "answer"

    async def fail(self) -> str:
        self.calls += 1
        raise ProviderError("provider down")


def new_breaker(store: BreakerStore, clock: FakeClock, **options: Any) -> CircuitBreaker:
    settings: dict[str, Any] = {
        "failure_threshold": THRESHOLD,
        "recovery_seconds": RECOVERY,
        "window_seconds": WINDOW,
        "clock": clock,
    }
    return CircuitBreaker("provider", store, **(settings | options))


def redis_store(client: Redis, clock: FakeClock) -> RedisBreakerStore:
    """A store on `client`, with the Redis availability of a process of its own."""
    return RedisBreakerStore(RedisAvailability(client, clock=clock))


def workers_sharing_redis(
    connect: Callable[[], Redis], clock: FakeClock, count: int
) -> list[CircuitBreaker]:
    """One breaker per worker, each with its own Redis client, all on one Redis."""
    return [new_breaker(redis_store(connect(), clock), clock) for _ in range(count)]


async def open_circuit(breaker: CircuitBreaker, dependency: Dependency) -> None:
    for _ in range(THRESHOLD):
        with pytest.raises(ProviderError):
            await breaker.call(dependency.fail)


class BlockedCalls:
    """Calls held inside the provider until released. The fixture cancels any left at teardown,
    so a failing test does not leave a task waiting for ever."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[str]] = []

    async def start(self, breaker: CircuitBreaker) -> tuple[asyncio.Task[str], asyncio.Event]:
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow() -> str:
            entered.set()
            await release.wait()
            return "slow answer"

        task = asyncio.create_task(breaker.call(slow))
        self.tasks.append(task)
        while not entered.is_set():
            if task.done():
                task.result()  # raises the reason the call never reached the provider
            await asyncio.sleep(0)  # yields to the task; no time passes
        return task, release


Connect = Callable[[], Redis]


@asynccontextmanager
async def redis_clients(kind: str, services: Services) -> AsyncIterator[Connect]:
    """Opens clients on one empty Redis server, each one standing for another worker process."""
    clients: list[Redis] = []
    server = fakeredis.FakeServer()
    url = services.redis_server_url() if kind == "redis" else None

    def connect() -> Redis:
        client = (
            fakeredis.FakeAsyncRedis(server=server)
            if url is None
            else create_redis(url, timeout_seconds=1.0)
        )
        clients.append(client)
        return client

    try:
        try:
            await connect().flushdb()
        except (RedisError, OSError) as exc:
            unavailable(f"Redis at {url} does not answer: {exc!r}")
        yield connect
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture(params=["memory", "fakeredis", "redis"])
async def store(
    request: pytest.FixtureRequest, services: Services, clock: FakeClock
) -> AsyncIterator[BreakerStore]:
    if request.param == "memory":
        yield MemoryBreakerStore()
        return
    async with redis_clients(request.param, services) as connect:
        yield redis_store(connect(), clock)


@pytest.fixture(params=["fakeredis", "redis"])
async def connect(request: pytest.FixtureRequest, services: Services) -> AsyncIterator[Connect]:
    async with redis_clients(request.param, services) as connect:
        yield connect


@pytest.fixture
def dependency() -> Dependency:
    return Dependency()


@pytest.fixture
async def blocked() -> AsyncIterator[BlockedCalls]:
    calls = BlockedCalls()
    yield calls
    for task in calls.tasks:
        task.cancel()
    await asyncio.gather(*calls.tasks, return_exceptions=True)


@pytest.fixture
def make_breaker(store: BreakerStore, clock: FakeClock) -> Callable[..., CircuitBreaker]:
    return lambda **options: new_breaker(store, clock, **options)


class TestClosedCircuit:
    async def test_success_returns_result_and_stays_closed(self, make_breaker, dependency):
        breaker = make_breaker()

        result = await breaker.call(dependency.succeed)

        assert result == "answer"
        assert (await breaker.snapshot()).state is CLOSED

    async def test_failure_reraises_the_same_exception(self, make_breaker):
        breaker = make_breaker()
        error = ProviderError("provider down")

        async def fail() -> str:
            raise error

        with pytest.raises(ProviderError) as caught:
            await breaker.call(fail)

        assert caught.value is error

    async def test_failures_below_threshold_keep_circuit_closed(self, make_breaker, dependency):
        breaker = make_breaker()

        for _ in range(THRESHOLD - 1):
            with pytest.raises(ProviderError):
                await breaker.call(dependency.fail)

        snapshot = await breaker.snapshot()
        assert (snapshot.state, snapshot.failure_count) == (CLOSED, THRESHOLD - 1)

    async def test_failure_at_threshold_opens_circuit(self, make_breaker, dependency):
        breaker = make_breaker()

        await open_circuit(breaker, dependency)

        assert (await breaker.snapshot()).state is OPEN

    async def test_success_resets_failure_count(self, make_breaker, dependency):
        breaker = make_breaker()
        for _ in range(THRESHOLD - 1):
            with pytest.raises(ProviderError):
                await breaker.call(dependency.fail)

        await breaker.call(dependency.succeed)

        assert (await breaker.snapshot()).failure_count == 0

    async def test_failures_older_than_window_do_not_open(self, make_breaker, clock, dependency):
        breaker = make_breaker()
        for _ in range(THRESHOLD - 1):
            with pytest.raises(ProviderError):
                await breaker.call(dependency.fail)
        clock.advance(WINDOW)

        with pytest.raises(ProviderError):
            await breaker.call(dependency.fail)

        snapshot = await breaker.snapshot()
        assert (snapshot.state, snapshot.failure_count) == (CLOSED, 1)

    async def test_exception_that_is_not_a_failure_is_not_counted(self, make_breaker):
        breaker = make_breaker(is_failure=lambda exc: not isinstance(exc, ValidationError))

        async def invalid() -> str:
            raise ValidationError("bad prompt")

        for _ in range(THRESHOLD):
            with pytest.raises(ValidationError):
                await breaker.call(invalid)

        snapshot = await breaker.snapshot()
        assert (snapshot.state, snapshot.failure_count) == (CLOSED, 0)


class TestOpenCircuit:
    async def test_call_raises_circuit_open_without_calling_function(
        self, make_breaker, clock, dependency
    ):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(10)

        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(dependency.succeed)

        assert dependency.calls == THRESHOLD
        assert caught.value.retry_after_seconds == RECOVERY - 10
        assert caught.value.details == {"breaker": "provider"}

    async def test_call_just_before_recovery_is_still_rejected(
        self, make_breaker, clock, dependency
    ):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY - 0.5)

        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(dependency.succeed)

        assert dependency.calls == THRESHOLD
        assert caught.value.retry_after_seconds == 0.5

    async def test_remembered_refusal_still_says_when_to_retry(
        self, make_breaker, clock, dependency
    ):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(10)
        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)  # read from the store, then remembered
        clock.advance(0.5)

        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(dependency.succeed)

        assert caught.value.retry_after_seconds == RECOVERY - 10.5

    async def test_remembered_refusal_ends_at_recovery(self, make_breaker, clock, dependency):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY - 0.5)
        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)  # remembered, but only until recovery

        clock.advance(0.5)

        assert await breaker.call(dependency.succeed) == "answer"


class TestHalfOpenCircuit:
    async def test_first_call_after_recovery_goes_through(self, make_breaker, clock, dependency):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)

        result = await breaker.call(dependency.succeed)

        assert result == "answer"
        assert dependency.calls == THRESHOLD + 1

    async def test_concurrent_call_during_trial_is_rejected(
        self, make_breaker, clock, dependency, blocked
    ):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)
        trial, release = await blocked.start(breaker)

        with pytest.raises(CircuitOpenError) as caught:
            await breaker.call(dependency.succeed)

        assert caught.value.retry_after_seconds == RECOVERY  # when the trial's lease would end
        release.set()
        assert await trial == "slow answer"
        assert dependency.calls == THRESHOLD

    async def test_half_open_max_calls_trials_go_through_together(
        self, make_breaker, clock, dependency, blocked
    ):
        breaker = make_breaker(half_open_max_calls=2)
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)
        first, release = await blocked.start(breaker)
        second, release_second = await blocked.start(breaker)

        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)

        release.set()
        release_second.set()
        assert [await first, await second] == ["slow answer", "slow answer"]

    async def test_free_trial_slot_next_trial_is_due_now(
        self, make_breaker, clock, dependency, blocked
    ):
        breaker = make_breaker(half_open_max_calls=2)
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY + 5)
        await blocked.start(breaker)  # one of the two trial slots taken

        snapshot = await breaker.snapshot()

        assert snapshot.state is HALF_OPEN
        assert snapshot.next_trial_at is not None
        assert snapshot.next_trial_at <= clock.now

    async def test_trial_success_closes_circuit(self, make_breaker, clock, dependency):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)

        await breaker.call(dependency.succeed)

        snapshot = await breaker.snapshot()
        assert (snapshot.state, snapshot.failure_count) == (CLOSED, 0)

    async def test_trial_failure_reopens_circuit_from_now(self, make_breaker, clock, dependency):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)

        with pytest.raises(ProviderError):
            await breaker.call(dependency.fail)

        snapshot = await breaker.snapshot()
        assert (snapshot.state, snapshot.opened_at) == (OPEN, clock.now)

    async def test_cancelled_trial_frees_its_slot(self, make_breaker, clock, dependency, blocked):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)
        trial, _ = await blocked.start(breaker)

        trial.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trial

        assert await breaker.call(dependency.succeed) == "answer"

    async def test_trial_stream_closed_early_frees_its_slot(self, make_breaker, clock, dependency):
        """A streamed answer is one guarded call; its consumer closing it mid-way (GeneratorExit
        at a yield, not a cancellation) is no verdict, and frees the trial slot."""
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)

        async def streamed() -> AsyncGenerator[str, None]:
            async with breaker.guard():
                yield "first token"
                yield "never read"

        tokens = streamed()
        assert await anext(tokens) == "first token"
        await tokens.aclose()

        assert (await breaker.snapshot()).state is HALF_OPEN
        assert await breaker.call(dependency.succeed) == "answer"

    async def test_cancelled_trial_frees_only_its_own_slot(
        self, make_breaker, clock, dependency, blocked
    ):
        breaker = make_breaker(half_open_max_calls=2)
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)
        cancelled, _ = await blocked.start(breaker)
        await blocked.start(breaker)

        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await blocked.start(breaker)  # takes the freed slot

        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)

    async def test_late_result_of_a_call_admitted_while_closed_does_not_decide(
        self, make_breaker, clock, dependency, blocked
    ):
        breaker = make_breaker()
        early, release_early = await blocked.start(breaker)
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)
        await blocked.start(breaker)  # the trial, still in flight

        release_early.set()
        answer = await early

        assert answer == "slow answer"
        assert (await breaker.snapshot()).state is HALF_OPEN  # only the trial decides

    async def test_trial_of_a_dead_worker_expires_after_recovery(
        self, make_breaker, store, clock, dependency
    ):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)
        # A worker that took the trial slot and died: admitted, never settled.
        await store.admit(breaker.name, clock.now, breaker.policy)
        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)
        clock.advance(RECOVERY)

        result = await breaker.call(dependency.succeed)

        assert result == "answer"


class TestReset:
    async def test_reset_closes_open_circuit_and_clears_failures(self, make_breaker, dependency):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)

        await breaker.reset()

        assert await breaker.snapshot() == BreakerSnapshot("provider", CLOSED, 0, None, None)
        assert await breaker.call(dependency.succeed) == "answer"

    async def test_reset_of_a_breaker_that_never_ran_leaves_it_closed(self, make_breaker):
        breaker = make_breaker()

        await breaker.reset()

        assert await breaker.snapshot() == BreakerSnapshot("provider", CLOSED, 0, None, None)

    async def test_reset_admits_at_once_after_a_remembered_refusal(self, make_breaker, dependency):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)  # the open circuit is now remembered

        await breaker.reset()

        assert await breaker.call(dependency.succeed) == "answer"


class TestSnapshot:
    async def test_new_breaker_is_closed_without_failures(self, make_breaker):
        breaker = make_breaker()

        snapshot = await breaker.snapshot()

        assert snapshot == BreakerSnapshot("provider", CLOSED, 0, None, None)

    async def test_open_breaker_reports_opened_at_and_next_trial_at(
        self, make_breaker, clock, dependency
    ):
        breaker = make_breaker()
        await open_circuit(breaker, dependency)
        opened_at = clock.now
        clock.advance(5)

        snapshot = await breaker.snapshot()

        assert snapshot == BreakerSnapshot(
            "provider", OPEN, THRESHOLD, opened_at, opened_at + RECOVERY
        )

    async def test_failures_older_than_window_are_not_reported(
        self, make_breaker, clock, dependency
    ):
        breaker = make_breaker()
        with pytest.raises(ProviderError):
            await breaker.call(dependency.fail)
        clock.advance(WINDOW)

        snapshot = await breaker.snapshot()

        assert snapshot.failure_count == 0


class TestTransitions:
    async def test_on_transition_reports_each_change_in_order(
        self, make_breaker, clock, dependency
    ):
        seen: list[tuple[str, BreakerState, BreakerState]] = []
        breaker = make_breaker(on_transition=lambda *change: seen.append(change))

        await open_circuit(breaker, dependency)
        clock.advance(RECOVERY)
        with pytest.raises(ProviderError):
            await breaker.call(dependency.fail)
        clock.advance(RECOVERY)
        await breaker.call(dependency.succeed)
        await open_circuit(breaker, dependency)
        await breaker.reset()

        changes = [(before, after) for _, before, after in seen]
        assert changes == [
            (CLOSED, OPEN),
            (OPEN, HALF_OPEN),
            (HALF_OPEN, OPEN),
            (OPEN, HALF_OPEN),
            (HALF_OPEN, CLOSED),
            (CLOSED, OPEN),
            (OPEN, CLOSED),
        ]
        assert {name for name, _, _ in seen} == {"provider"}

    async def test_transition_is_logged_once_at_info(self, make_breaker, dependency, caplog):
        breaker = make_breaker()
        caplog.set_level(logging.INFO, logger="app.infrastructure.resilience.breaker")

        await open_circuit(breaker, dependency)

        lines = [r.getMessage() for r in caplog.records if r.name.endswith("resilience.breaker")]
        assert lines == ["Circuit breaker provider: closed -> open"]

    async def test_failing_hook_does_not_hide_the_provider_error(self, make_breaker, dependency):
        def broken_hook(*_: object) -> None:
            raise RuntimeError("metrics down")

        breaker = make_breaker(on_transition=broken_hook)

        await open_circuit(breaker, dependency)  # each call still raises ProviderError

        assert (await breaker.snapshot()).state is OPEN


class TestSharedState:
    """Two breakers with one name over one Redis: two uvicorn workers."""

    async def test_circuit_opened_by_one_worker_is_open_for_another(
        self, connect, clock, dependency
    ):
        worker_a, worker_b = workers_sharing_redis(connect, clock, 2)
        await open_circuit(worker_a, dependency)

        with pytest.raises(CircuitOpenError):
            await worker_b.call(dependency.succeed)

        assert dependency.calls == THRESHOLD

    async def test_trial_taken_by_one_worker_is_taken_for_another(
        self, connect, clock, dependency, blocked
    ):
        worker_a, worker_b = workers_sharing_redis(connect, clock, 2)
        await open_circuit(worker_a, dependency)
        clock.advance(RECOVERY)
        trial, release = await blocked.start(worker_a)

        with pytest.raises(CircuitOpenError):
            await worker_b.call(dependency.succeed)

        release.set()
        await trial
        assert await worker_b.call(dependency.succeed) == "answer"

    async def test_concurrent_workers_get_one_trial_between_them(self, connect, clock, dependency):
        workers = workers_sharing_redis(connect, clock, 5)
        await open_circuit(workers[0], dependency)
        clock.advance(RECOVERY)

        results = await asyncio.gather(
            *(worker.call(dependency.fail) for worker in workers), return_exceptions=True
        )

        assert dependency.calls == THRESHOLD + 1
        assert sorted(type(result).__name__ for result in results) == [
            *["CircuitOpenError"] * 4,
            "ProviderError",
        ]

    async def test_reset_by_another_worker_arrives_within_the_remembered_second(
        self, connect, clock, dependency
    ):
        # The cost of refusing without a round trip: a worker that has seen the circuit open
        # learns of another worker's reset when its memory of the refusal ends.
        worker_a, worker_b = workers_sharing_redis(connect, clock, 2)
        await open_circuit(worker_a, dependency)
        with pytest.raises(CircuitOpenError):
            await worker_b.call(dependency.succeed)

        await worker_a.reset()
        with pytest.raises(CircuitOpenError):
            await worker_b.call(dependency.succeed)  # not asked: still remembered as open
        clock.advance(REMEMBER_OPEN)

        assert await worker_b.call(dependency.succeed) == "answer"
        assert dependency.calls == THRESHOLD + 1

    async def test_state_is_a_redis_hash_named_after_the_breaker(self, connect, clock, dependency):
        breaker = new_breaker(redis_store(connect(), clock), clock)

        await open_circuit(breaker, dependency)

        assert await connect().hget("llm:breaker:provider", "state") == b"open"


class TestRedisOutage:
    async def test_unreachable_redis_falls_back_to_per_process_state(
        self, clock, dependency, caplog
    ):
        server = fakeredis.FakeServer()
        server.connected = False
        breaker = new_breaker(redis_store(fakeredis.FakeAsyncRedis(server=server), clock), clock)

        await open_circuit(breaker, dependency)
        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)

        assert dependency.calls == THRESHOLD
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # one per outage, not one per call

    async def test_redis_back_brings_shared_state_back(self, clock, dependency):
        server = fakeredis.FakeServer()
        server.connected = False
        breaker = new_breaker(redis_store(fakeredis.FakeAsyncRedis(server=server), clock), clock)
        await open_circuit(breaker, dependency)

        server.connected = True
        clock.advance(REDIS_RETRY)

        assert await breaker.call(dependency.succeed) == "answer"  # Redis never saw the failures

    async def test_within_retry_window_redis_is_not_asked(self, clock, dependency):
        # A silent partition costs a Redis timeout per command: after one failure the store
        # stays on its per-process state until the retry window ends, even if Redis is back.
        server = fakeredis.FakeServer()
        server.connected = False
        breaker = new_breaker(redis_store(fakeredis.FakeAsyncRedis(server=server), clock), clock)
        await open_circuit(breaker, dependency)
        server.connected = True

        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)  # still the local, open circuit
        clock.advance(REDIS_RETRY)
        assert await breaker.call(dependency.succeed) == "answer"  # now the shared, closed one

    async def test_outage_trial_success_closes_the_per_process_circuit(self, clock, dependency):
        server = fakeredis.FakeServer()
        server.connected = False
        breaker = new_breaker(redis_store(fakeredis.FakeAsyncRedis(server=server), clock), clock)
        await open_circuit(breaker, dependency)
        opened = (await breaker.snapshot()).state
        clock.advance(RECOVERY)

        await breaker.call(dependency.succeed)

        assert (opened, (await breaker.snapshot()).state) == (OPEN, CLOSED)

    async def test_operator_reset_during_outage_closes_the_per_process_circuit(
        self, clock, dependency
    ):
        server = fakeredis.FakeServer()
        server.connected = False
        breaker = new_breaker(redis_store(fakeredis.FakeAsyncRedis(server=server), clock), clock)
        await open_circuit(breaker, dependency)

        await breaker.reset()

        assert await breaker.call(dependency.succeed) == "answer"

    async def test_second_outage_warns_again_and_protects_again(self, clock, dependency, caplog):
        server = fakeredis.FakeServer()
        breaker = new_breaker(redis_store(fakeredis.FakeAsyncRedis(server=server), clock), clock)
        server.connected = False
        await open_circuit(breaker, dependency)
        server.connected = True
        clock.advance(REDIS_RETRY)
        await breaker.call(dependency.succeed)  # back on the shared state

        server.connected = False
        await open_circuit(breaker, dependency)

        with pytest.raises(CircuitOpenError):
            await breaker.call(dependency.succeed)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2  # one per outage

    async def test_redis_lost_during_a_call_the_call_still_returns(
        self, clock, dependency, blocked
    ):
        server = fakeredis.FakeServer()
        breaker = new_breaker(redis_store(fakeredis.FakeAsyncRedis(server=server), clock), clock)
        call, release = await blocked.start(breaker)

        server.connected = False
        release.set()

        assert await call == "slow answer"


class TestSettings:
    @pytest.mark.parametrize(
        "option",
        [
            {"failure_threshold": 0},
            {"recovery_seconds": 0},
            {"window_seconds": 0},
            {"half_open_max_calls": 0},
        ],
    )
    def test_nonsensical_setting_raises_value_error(self, clock, option):
        with pytest.raises(ValueError, match="must be"):
            new_breaker(MemoryBreakerStore(), clock, **option)

    def test_sub_second_recovery_and_window_accepted(self, clock):
        breaker = new_breaker(MemoryBreakerStore(), clock, recovery_seconds=0.5, window_seconds=0.5)

        assert (breaker.policy.recovery_seconds, breaker.policy.window_seconds) == (0.5, 0.5)
