"""API → retry policy: which provider failures are retried, how often, how long apart.

RecordingSleep stands in for the backoff, so the waits are read instead of waited. Only the
timeout tests spend real time: 50 ms, because what they prove is that a real wait is cut. They
assert what that cut decides (the error names the timeout that ended the request, the backoff
waits and attempts counted), never how long it took, nor whether a hanging provider was reached
before its 50 ms ran out: on a loaded machine it may not be.
"""

import pytest
from conftest import OPERATOR_KEY, ClientFactory
from fakes.providers import FakeProvider, RecordingSleep, server_error
from httpx import AsyncClient, Response
from prometheus_client.parser import text_string_to_metric_families

OPERATOR = {"X-API-Key": OPERATOR_KEY}


async def process(
    client: AsyncClient, text: str = "Retries are tested through the API."
) -> Response:
    return await client.post("/v1/text/process", json={"operation": "summarize", "text": text})


async def failures_counted(client: AsyncClient) -> int:
    response = await client.get("/internal/resilience/breakers", headers=OPERATOR)
    (view,) = response.json()["breakers"]
    count: int = view["failure_count"]
    return count


async def provider_calls(client: AsyncClient) -> dict[str, float]:
    """provider_calls_total from /internal/metrics, by outcome."""
    response = await client.get("/internal/metrics", headers=OPERATOR)
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "provider_calls"
        for sample in family.samples
        if sample.name == "provider_calls_total"
    }


class RecoveringSleep(RecordingSleep):
    """The backoff during which the provider comes back, as after a brief blip."""

    def __init__(self, provider: FakeProvider) -> None:
        super().__init__()
        self._provider = provider

    async def __call__(self, seconds: float) -> None:
        await super().__call__(seconds)
        self._provider.succeed()


class TestRetryPolicy:
    """Seam: ResilientProvider → call_with_retries (tenacity) → provider; breaker outside.

    Paths: RETRY-01, RETRY-02, RETRY-03, RETRY-04, RETRY-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    tenacity; asyncio's timeouts, on real time (50 ms) where a cut is the point.
    Faked: the AI provider (FakeProvider failing or hanging), the backoff (a recording sleep
    that returns at once).
    """

    @pytest.mark.covers("RETRY-01")
    async def test_transient_failures_retried_up_to_cap_and_counted_once(
        self, make_client: ClientFactory, provider: FakeProvider, sleep: RecordingSleep
    ):
        """A provider that keeps answering 503 is tried AI_MAX_ATTEMPTS times, then given up on.

        Integration scope: provider 5xx → ProviderError(transient) → tenacity → breaker.
        Business impact: a blip is absorbed by retries, a real outage costs a bounded number
        of calls, and the breaker counts requests that failed, not attempts.
        Test strategy: 3 attempts allowed, a provider that always answers 503.
        Success criteria: 502 `provider_error` naming status 503, 3 provider calls, 2 backoff
        waits, and one failure counted by the breaker.
        """
        provider.fail(server_error(503))
        client = await make_client(model=provider.model, ai_max_attempts=3)

        response = await process(client)

        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (502, "provider_error")
        assert error["details"]["provider_status"] == 503
        assert provider.calls == 3
        assert len(sleep.waits) == 2
        assert await failures_counted(client) == 1

    @pytest.mark.covers("RETRY-02")
    @pytest.mark.parametrize("status", [400, 401])
    async def test_non_transient_failure_not_retried(
        self, make_client: ClientFactory, provider: FakeProvider, sleep: RecordingSleep, status: int
    ):
        """A provider that rejects the request is not asked again.

        Integration scope: provider 4xx → ProviderError(transient=False) → tenacity's filter.
        Business impact: a bad key or a refused request would fail identically on every retry;
        retrying only adds latency and cost.
        Test strategy: 3 attempts allowed, a provider that answers the given 4xx.
        Success criteria: 502 naming the provider's status after exactly one call, no wait.
        """
        provider.fail(server_error(status))
        client = await make_client(model=provider.model, ai_max_attempts=3)

        response = await process(client)

        assert response.status_code == 502
        assert response.json()["error"]["details"]["provider_status"] == status
        assert provider.calls == 1
        assert sleep.waits == []

    @pytest.mark.covers("RETRY-03")
    async def test_provider_retry_after_sets_the_wait(
        self, make_client: ClientFactory, provider: FakeProvider, sleep: RecordingSleep
    ):
        """A 429's Retry-After is waited out, even when it is longer than our own backoff.

        Integration scope: 429 headers → ProviderError.retry_after_seconds → wait strategy,
        and on to the API's own Retry-After.
        Business impact: retrying a throttling provider too early only extends the throttling;
        the caller learns how long the provider asked for.
        Test strategy: 2 attempts, a provider answering 429 with Retry-After: 7 (the backoff
        alone would wait under a second).
        Success criteria: one wait of exactly 7 s; the 502 carries Retry-After 7.
        """
        provider.fail(server_error(429, retry_after="7"))
        client = await make_client(model=provider.model, ai_max_attempts=2)

        response = await process(client)

        assert sleep.waits == [7.0]
        assert response.status_code == 502
        assert response.headers["Retry-After"] == "7"

    @pytest.mark.covers("RETRY-04")
    async def test_hanging_attempt_cut_at_timeout_returns_504(
        self, make_client: ClientFactory, provider: FakeProvider, sleep: RecordingSleep
    ):
        """An attempt that never answers is abandoned at AI_ATTEMPT_TIMEOUT_SECONDS and retried.

        Integration scope: asyncio timeout per attempt → ProviderTimeoutError(transient) →
        tenacity → error handler.
        Business impact: a stuck connection costs the caller a bounded wait and a clear 504,
        never a request that hangs until the client gives up.
        Test strategy: a provider that hangs, 2 attempts of 50 ms each, a 30 s deadline.
        Success criteria: 504 `provider_timeout` naming the 50 ms attempt timeout, after one
        backoff wait between the two attempts.
        """
        provider.hang()
        client = await make_client(
            model=provider.model,
            ai_max_attempts=2,
            ai_attempt_timeout_seconds=0.05,
            ai_request_deadline_seconds=30,
        )

        response = await process(client)

        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (504, "provider_timeout")
        assert error["message"] == "The AI provider did not answer within 0.05 s."
        assert len(sleep.waits) == 1

    @pytest.mark.covers("RETRY-04")
    async def test_timed_out_attempts_counted_in_metrics(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """Attempts cut by the timeout still count as provider calls.

        Integration scope: attempt timeout (cancellation) → ResilientProvider's counter →
        GET /internal/metrics.
        Business impact: a provider that hangs instead of failing is visible on dashboards,
        not only as silence.
        Test strategy: a provider that hangs, 2 attempts of 50 ms each.
        Success criteria: provider_calls_total shows 2 calls with outcome `cancelled`.
        """
        provider.hang()
        client = await make_client(
            model=provider.model, ai_max_attempts=2, ai_attempt_timeout_seconds=0.05
        )
        await process(client)

        counted = await provider_calls(client)

        assert counted == {"cancelled": 2.0}

    @pytest.mark.covers("RETRY-05")
    async def test_request_deadline_stops_retries(
        self, make_client: ClientFactory, provider: FakeProvider, sleep: RecordingSleep
    ):
        """The request deadline bounds the total time, however many attempts remain.

        Integration scope: asyncio deadline around the retry loop → ProviderTimeoutError.
        Business impact: all attempts at their full timeout can outlast what a caller (or a
        proxy in front of us) will wait; the deadline keeps the answer inside that budget.
        Test strategy: 3 attempts of 5 s each allowed, but a 50 ms deadline, and a provider
        that hangs.
        Success criteria: 504 `provider_timeout` naming the 50 ms deadline, not the 5 s attempt
        timeout, with no backoff started: the deadline ended the first attempt and the loop.
        """
        provider.hang()
        client = await make_client(
            model=provider.model,
            ai_max_attempts=3,
            ai_attempt_timeout_seconds=5,
            ai_request_deadline_seconds=0.05,
        )

        response = await process(client)

        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (504, "provider_timeout")
        assert error["message"] == "The AI provider did not answer within 0.05 s."
        assert sleep.waits == []

    @pytest.mark.covers("RETRY-05")
    async def test_backoff_past_the_deadline_is_not_started(
        self, make_client: ClientFactory, provider: FakeProvider, sleep: RecordingSleep
    ):
        """A wait that would end after the deadline is not begun: the caller gets the error now.

        Integration scope: provider 429 with Retry-After → tenacity's stop_before_delay with the
        request deadline → error handler.
        Business impact: a provider asking for an hour's pause must not hold a request open
        until its deadline only to fail then; the caller learns at once and when to come back.
        Test strategy: 3 attempts allowed, a 10 s deadline, a provider answering 429 with
        Retry-After: 3600.
        Success criteria: 502 with Retry-After 3600 after exactly one provider call and no wait.
        """
        provider.fail(server_error(429, retry_after="3600"))
        client = await make_client(
            model=provider.model, ai_max_attempts=3, ai_request_deadline_seconds=10
        )

        response = await process(client)

        assert (response.status_code, response.headers["Retry-After"]) == (502, "3600")
        assert provider.calls == 1
        assert sleep.waits == []


class TestRecoveryDuringBackoff:
    """Seam: retry loop → provider that recovers between two attempts.

    Paths: RETRY-01
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    tenacity; the breaker in memory.
    Faked: the AI provider (FakeProvider), the backoff (a sleep that records the wait and heals
    the provider, passed to make_client).
    """

    @pytest.mark.covers("RETRY-01")
    async def test_transient_failure_then_recovery_answers_200(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """A blip that is over by the next attempt never reaches the caller or the breaker.

        Integration scope: failed attempt → backoff → successful attempt → cache and response.
        Business impact: the caller gets an answer, not an error, for a momentary failure.
        Test strategy: a provider that answers 503 until the first backoff, then succeeds.
        Success criteria: 200 after two provider calls and one wait; no failure counted.
        """
        provider.fail(server_error(503))
        sleep = RecoveringSleep(provider)
        client = await make_client(model=provider.model, ai_max_attempts=3, sleep=sleep)

        response = await process(client)

        assert response.status_code == 200
        assert provider.calls == 2
        assert len(sleep.waits) == 1
        assert await failures_counted(client) == 0
