"""API → circuit breaker: one short test per transition, seen from the HTTP side.

The fake provider stands at the pydantic-ai boundary and the fake clock moves recovery time by
hand, so no test sleeps. Each request carries its own text: identical concurrent requests share
one provider call (single-flight), which would hide what the breaker decides for each.
"""

import asyncio
from collections.abc import Awaitable
from datetime import datetime
from typing import Any, cast

import pytest
from conftest import OPERATOR_KEY, ClientFactory, RedisBackend
from fakes.clock import FakeClock
from fakes.providers import FakeProvider
from httpx import AsyncClient, Response
from prometheus_client.parser import text_string_to_metric_families
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, FunctionModel
from shared.health import ReadinessResponse

THRESHOLD = 2
RECOVERY = 30.0
BREAKER = "ai_provider"
OPERATOR = {"X-API-Key": OPERATOR_KEY}


async def breaker_client(
    make_client: ClientFactory, provider: FakeProvider, **overrides: Any
) -> AsyncClient:
    """An app whose requests each make one provider call (no retries), so one failing request
    is one failure counted by the breaker."""
    settings: dict[str, Any] = {
        "model": provider.model,
        "breaker_failure_threshold": THRESHOLD,
        "breaker_recovery_seconds": RECOVERY,
        "ai_max_attempts": 1,
    }
    return await make_client(**(settings | overrides))


async def process(client: AsyncClient, text: str) -> Response:
    return await client.post("/v1/text/process", json={"operation": "summarize", "text": text})


async def fail_requests(client: AsyncClient, count: int) -> None:
    for index in range(count):
        response = await process(client, f"Failing request number {index}.")
        assert response.status_code == 502


async def breaker_view(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/internal/resilience/breakers", headers=OPERATOR)
    assert response.status_code == 200
    (view,) = response.json()["breakers"]
    return dict(view)


def timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def announcing(provider: FakeProvider, entered: asyncio.Event) -> FunctionModel:
    """The fake provider's model, setting `entered` as each call reaches it, so a test can act
    while a call is held inside the provider (`FakeProvider.hang`)."""
    respond = provider.model.function
    assert respond is not None

    async def announce(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        entered.set()
        return await cast(Awaitable[ModelResponse], respond(messages, info))

    return FunctionModel(announce, model_name=provider.name)


def transitions(metrics_text: str) -> dict[str, float]:
    """breaker_transitions_total of the AI provider's breaker, by target state."""
    return {
        sample.labels["to_state"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == "breaker_transitions"
        for sample in family.samples
        if sample.name == "breaker_transitions_total" and sample.labels["breaker"] == BREAKER
    }


class TestBreakerTransitions:
    """Seam: /v1/text/process → TextProcessor → ResilientProvider → CircuitBreaker → provider.

    Paths: BRK-01, BRK-02, BRK-03, BRK-04, BRK-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the breaker's store in memory (no Redis) and in Redis (its Lua script) on fakeredis, a
    redis-server and a container; SQLite.
    Faked: the AI provider (FakeProvider: fails, succeeds or hangs on command), time
    (FakeClock).
    """

    @pytest.mark.covers("BRK-01")
    async def test_failures_reaching_threshold_open_breaker(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        optional_redis: RedisBackend | None,
        clock: FakeClock,
    ):
        """The failure that reaches the threshold opens the circuit, not one before it.

        Integration scope: provider errors → breaker accounting → operator breaker view.
        Business impact: a provider outage stops costing every caller a slow failure.
        Test strategy: a failing provider; one failure short of the threshold, then one more.
        Success criteria: closed with one failure counted, then open with its next trial time
        one recovery period after opening.
        """
        provider.fail()
        client = await breaker_client(make_client, provider, redis=optional_redis)

        await fail_requests(client, THRESHOLD - 1)
        before = await breaker_view(client)
        await fail_requests(client, 1)
        after = await breaker_view(client)

        assert (before["state"], before["failure_count"]) == ("closed", THRESHOLD - 1)
        assert after["state"] == "open"
        assert timestamp(after["next_trial_at"]) == clock.now + RECOVERY

    @pytest.mark.covers("BRK-02")
    async def test_open_breaker_refuses_with_503_without_calling_provider(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        optional_redis: RedisBackend | None,
        clock: FakeClock,
    ):
        """An open circuit answers at once and says when to come back, to the millisecond.

        Integration scope: CircuitOpenError → error handler → Retry-After headers and body.
        Business impact: callers back off for the right time instead of hammering a dead
        provider, and no provider call (no cost, no latency) is spent on a known outage.
        Test strategy: open the circuit, let 10 of its 30 recovery seconds pass, call again.
        Success criteria: 503 `circuit_open`, Retry-After 20, Retry-After-Ms 20000, body
        retry_after_ms 20000, and the provider's call count unchanged.
        """
        provider.fail()
        client = await breaker_client(make_client, provider, redis=optional_redis)
        await fail_requests(client, THRESHOLD)
        calls_before = provider.calls
        clock.advance(10)

        response = await process(client, "A request while the circuit is open.")

        error = response.json()["error"]
        assert response.status_code == 503
        assert error["code"] == "circuit_open"
        assert response.headers["Retry-After"] == "20"
        assert response.headers["Retry-After-Ms"] == "20000"
        assert error["details"]["retry_after_ms"] == 20000
        assert provider.calls == calls_before

    @pytest.mark.covers("BRK-03")
    async def test_recovery_elapsed_admits_exactly_one_trial(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        optional_redis: RedisBackend | None,
        clock: FakeClock,
    ):
        """After the recovery time one trial reaches the provider; others wait for its verdict.

        Integration scope: breaker half-open admission under concurrent API requests.
        Business impact: a recovering provider is probed by one request, not flooded by all
        the traffic that queued up during the outage.
        Test strategy: open, pass the recovery time, hold a trial inside the provider, send a
        second request meanwhile, then release the trial.
        Success criteria: the second gets 503 without a provider call while the view shows
        half_open; the released trial answers 200.
        """
        entered = asyncio.Event()
        provider.fail()
        # Should a second call be admitted, its attempt times out (504) instead of hanging.
        client = await breaker_client(
            make_client,
            provider,
            redis=optional_redis,
            model=announcing(provider, entered),
            ai_attempt_timeout_seconds=2,
        )
        await fail_requests(client, THRESHOLD)
        clock.advance(RECOVERY)
        provider.succeed()
        provider.hang()
        entered.clear()

        trial = asyncio.create_task(process(client, "The trial request."))
        try:
            await asyncio.wait_for(entered.wait(), timeout=5)
            concurrent = await process(client, "A request during the trial.")
            state_during_trial = (await breaker_view(client))["state"]
        finally:
            provider.release.set()
            trial_response = await trial

        assert concurrent.status_code == 503
        assert provider.calls == THRESHOLD + 1
        assert state_during_trial == "half_open"
        assert trial_response.status_code == 200

    @pytest.mark.covers("BRK-04")
    async def test_successful_trial_closes_breaker(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        optional_redis: RedisBackend | None,
        clock: FakeClock,
    ):
        """A trial that succeeds closes the circuit and traffic flows again.

        Integration scope: half-open trial → breaker settle → following requests.
        Business impact: service resumes on its own once the provider is back, no operator.
        Test strategy: open, pass the recovery time, let the provider succeed, send a trial and
        then an ordinary request.
        Success criteria: both 200, both reached the provider, the view shows closed with no
        failures counted.
        """
        provider.fail()
        client = await breaker_client(make_client, provider, redis=optional_redis)
        await fail_requests(client, THRESHOLD)
        clock.advance(RECOVERY)
        provider.succeed()

        trial = await process(client, "The trial request.")
        following = await process(client, "A request after recovery.")

        view = await breaker_view(client)
        assert (trial.status_code, following.status_code) == (200, 200)
        assert provider.calls == THRESHOLD + 2
        assert (view["state"], view["failure_count"]) == ("closed", 0)

    @pytest.mark.covers("BRK-05")
    async def test_failed_trial_reopens_breaker_for_full_recovery(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        optional_redis: RedisBackend | None,
        clock: FakeClock,
    ):
        """A trial that fails opens the circuit again, for a whole new recovery period.

        Integration scope: half-open trial failure → breaker re-open → Retry-After.
        Business impact: a provider still down is not probed again straight away.
        Test strategy: open, pass the recovery time, send a trial to the still failing
        provider, then another request.
        Success criteria: the trial gets the provider's 502; the next request 503 with
        Retry-After-Ms of the full 30 s, without a provider call.
        """
        provider.fail()
        client = await breaker_client(make_client, provider, redis=optional_redis)
        await fail_requests(client, THRESHOLD)
        clock.advance(RECOVERY)

        trial = await process(client, "The trial request.")
        refused = await process(client, "A request after the failed trial.")

        assert trial.status_code == 502
        assert refused.status_code == 503
        assert refused.headers["Retry-After-Ms"] == str(int(RECOVERY * 1000))
        assert provider.calls == THRESHOLD + 1


class TestOperatorView:
    """Seam: /internal/resilience, /internal/health, /internal/metrics → the breaker.

    Paths: BRK-06, BRK-08
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the breaker store in memory and on every Redis tier (readiness and metrics); Prometheus' own
    text format, parsed.
    Faked: the AI provider (FakeProvider), time (FakeClock).
    """

    @pytest.mark.covers("BRK-06")
    async def test_operator_reset_closes_open_breaker(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """An operator can close the circuit at once, without waiting for recovery.

        Integration scope: POST /internal/resilience/breakers/{name}/reset → breaker store.
        Business impact: after fixing the provider (a new key, say) service resumes now.
        Test strategy: open the circuit, reset it with the operator key, let the provider
        succeed and send a request.
        Success criteria: the reset answers the closed view; the request answers 200 and
        reached the provider.
        """
        provider.fail()
        client = await breaker_client(make_client, provider)
        await fail_requests(client, THRESHOLD)
        provider.succeed()

        reset = await client.post(
            f"/internal/resilience/breakers/{BREAKER}/reset", headers=OPERATOR
        )
        response = await process(client, "A request after the reset.")

        assert reset.status_code == 200
        assert (reset.json()["state"], reset.json()["failure_count"]) == ("closed", 0)
        assert response.status_code == 200
        assert provider.calls == THRESHOLD + 1

    @pytest.mark.covers("BRK-06")
    async def test_reset_of_unknown_breaker_returns_404(self, make_client: ClientFactory):
        """A typo in the breaker name is reported, not silently accepted.

        Integration scope: reset route → NotFoundError → error handler.
        Business impact: an operator who believes a breaker was reset when nothing happened
        would misread the outage.
        Test strategy: reset a breaker name that does not exist.
        Success criteria: 404 with code `not_found`.
        """
        client = await make_client(api_key=OPERATOR_KEY)

        response = await client.post("/internal/resilience/breakers/no_such_breaker/reset")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    @pytest.mark.covers("BRK-08")
    async def test_open_breaker_reports_provider_degraded_in_readiness(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        optional_redis: RedisBackend | None,
    ):
        """Readiness flags the provider as degraded while the circuit is open.

        Integration scope: readiness route → breaker snapshot.
        Business impact: operators and dashboards see the outage; the instance stays in
        rotation because it can still serve cached answers.
        Test strategy: open the circuit and ask for readiness.
        Success criteria: overall `degraded`, ai_provider `degraded`, database still `ok`.
        """
        provider.fail()
        client = await breaker_client(make_client, provider, redis=optional_redis)
        await fail_requests(client, THRESHOLD)

        response = await client.get("/internal/health", headers=OPERATOR)

        body = ReadinessResponse.model_validate(response.json())
        statuses = {dep.name: dep.status for dep in body.dependencies}
        assert body.status == "degraded"
        assert (statuses["ai_provider"], statuses["database"]) == ("degraded", "ok")

    @pytest.mark.covers("BRK-08")
    async def test_each_transition_counted_once_in_metrics(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        optional_redis: RedisBackend | None,
        clock: FakeClock,
    ):
        """Every state change of a full outage cycle shows up in the Prometheus metrics.

        Integration scope: breaker on_transition hook → Metrics → GET /internal/metrics.
        Business impact: alerts on `breaker_transitions_total{to_state="open"}` fire once per
        outage, and recovery is visible too.
        Test strategy: open the circuit, pass the recovery time, let a trial succeed.
        Success criteria: one transition each to open, half_open and closed.
        """
        provider.fail()
        client = await breaker_client(make_client, provider, redis=optional_redis)
        await fail_requests(client, THRESHOLD)
        clock.advance(RECOVERY)
        provider.succeed()
        await process(client, "The trial request.")

        response = await client.get("/internal/metrics", headers=OPERATOR)

        assert transitions(response.text) == {"open": 1.0, "half_open": 1.0, "closed": 1.0}


class TestSharedBreakerState:
    """Seam: two app instances → RedisBreakerStore (Lua) → one Redis, on every Redis tier.

    Paths: BRK-06, BRK-07
    Real: two apps, each with its own Redis client and in-process memory, over one Redis:
    fakeredis, a redis-server, a container.
    Faked: the AI providers (a FakeProvider per app), time (FakeClock shared by both apps).
    """

    @pytest.mark.covers("BRK-07")
    async def test_breaker_opened_by_one_instance_refuses_on_another(
        self, make_client: ClientFactory, provider: FakeProvider, redis_backend: RedisBackend
    ):
        """A circuit opened by one worker is open for every worker sharing Redis.

        Integration scope: instance A's failures → breaker hash in Redis → instance B's
        admission, through two separate apps and Redis clients.
        Business impact: with N uvicorn workers an outage costs THRESHOLD failures, not N times
        that, and no worker keeps sending traffic to a provider known to be down.
        Test strategy: open the circuit through A's failing provider, then call B, whose own
        provider would succeed.
        Success criteria: B answers 503 `circuit_open`, its provider was never called, and its
        operator view shows the circuit open.
        """
        provider.fail()
        other_provider = FakeProvider("other-worker-model")
        first = await breaker_client(make_client, provider, redis=redis_backend)
        second = await breaker_client(make_client, other_provider, redis=redis_backend)

        await fail_requests(first, THRESHOLD)
        response = await process(second, "A request to the other worker.")

        assert response.status_code == 503
        assert response.json()["error"]["code"] == "circuit_open"
        assert other_provider.calls == 0
        assert (await breaker_view(second))["state"] == "open"

    @pytest.mark.covers("BRK-06", "BRK-07")
    async def test_reset_on_one_instance_closes_breaker_for_another(
        self, make_client: ClientFactory, provider: FakeProvider, redis_backend: RedisBackend
    ):
        """An operator reset reaches every worker, whichever worker served it.

        Integration scope: reset route on instance B → Redis → admission on instance A.
        Business impact: behind a load balancer the operator cannot choose the worker; a reset
        that closed only one worker's view would leave the others refusing traffic.
        Test strategy: open the circuit through A, reset it through B, call A again.
        Success criteria: A's provider is called again and the request answers 200.
        """
        provider.fail()
        first = await breaker_client(make_client, provider, redis=redis_backend)
        second = await breaker_client(make_client, FakeProvider(), redis=redis_backend)
        await fail_requests(first, THRESHOLD)
        provider.succeed()

        await second.post(f"/internal/resilience/breakers/{BREAKER}/reset", headers=OPERATOR)
        response = await process(first, "A request after the reset.")

        assert response.status_code == 200
        assert provider.calls == THRESHOLD + 1

    @pytest.mark.covers("BRK-07")
    async def test_reset_elsewhere_reaches_a_refusing_instance_within_a_second(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        redis_backend: RedisBackend,
        clock: FakeClock,
    ):
        """A worker that has refused requests learns of a reset elsewhere within one second.

        Integration scope: instance A refuses (the open circuit read from Redis, then kept in
        process) → reset route on instance B → Redis → A's next admissions.
        Business impact: during an outage every refused request would otherwise cost a Redis
        script call; remembering the open circuit for a second spares Redis, and this test
        pins the price: a reset served by another worker takes effect here up to a second late.
        Test strategy: open the circuit through A and let A refuse once; reset through B; call
        A at the same instant, then one second later on the fake clock.
        Success criteria: 503 `circuit_open` at once with A's provider not called, then 200
        with exactly one more provider call.
        """
        provider.fail()
        first = await breaker_client(make_client, provider, redis=redis_backend)
        second = await breaker_client(make_client, FakeProvider(), redis=redis_backend)
        await fail_requests(first, THRESHOLD)
        assert (await process(first, "Refused, and remembered.")).status_code == 503
        provider.succeed()

        await second.post(f"/internal/resilience/breakers/{BREAKER}/reset", headers=OPERATOR)
        at_once = await process(first, "Right after the reset.")
        clock.advance(1.0)
        a_second_later = await process(first, "A second after the reset.")

        assert at_once.status_code == 503
        assert at_once.json()["error"]["code"] == "circuit_open"
        assert a_second_later.status_code == 200
        assert provider.calls == THRESHOLD + 1
