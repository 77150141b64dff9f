"""API → degraded serving: what callers get while the provider fails or its circuit is open.

A stale cache entry within the grace window answers as `degraded` while the circuit is open;
without one the API refuses with 503. A failing provider (circuit still closed) gives 502 or
504 with a precise code, never a 500.
"""

from typing import Any

import pytest
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend, RedisBackend
from fakes.clock import FakeClock
from fakes.providers import FakeProvider, server_error
from httpx import AsyncClient, Response
from pydantic_ai.exceptions import ModelAPIError, ModelTimeoutError
from shared.text import BatchResponse, HistoryPage, TextProcessResponse

TTL = 60
GRACE = 3600
OPERATOR = {"X-API-Key": OPERATOR_KEY}
CACHED_TEXT = "The launch moved to Friday. The team is confident. Customers were told."


async def degrading_client(
    make_client: ClientFactory, provider: FakeProvider, **overrides: Any
) -> AsyncClient:
    """An app whose circuit opens at the first failed request, with a one-minute TTL."""
    settings: dict[str, Any] = {
        "breaker_failure_threshold": 1,
        "ai_max_attempts": 1,
        "cache_ttl_seconds": {"summarize": TTL},
        "cache_stale_grace_seconds": GRACE,
    }
    return await make_client(model=provider.model, **(settings | overrides))


async def process(client: AsyncClient, text: str) -> Response:
    return await client.post("/v1/text/process", json={"operation": "summarize", "text": text})


async def cache_then_open_circuit(
    client: AsyncClient, provider: FakeProvider, clock: FakeClock, *, age: float
) -> TextProcessResponse:
    """Cache an answer for CACHED_TEXT, let `age` seconds pass, then open the circuit with a
    failing request for another text. Returns the answer that was cached."""
    cached = await process(client, CACHED_TEXT)
    assert cached.status_code == 200
    clock.advance(age)
    provider.fail()
    opener = await process(client, "A different text whose request opens the circuit.")
    assert opener.status_code == 502
    return TextProcessResponse.model_validate(cached.json())


class TestDegradedServing:
    """Seam: TextProcessor → ResponseCache (every Redis tier) → breaker → provider.

    Paths: DEGR-01, DEGR-03, DEGR-04
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the cache and breaker on fakeredis, a redis-server and a container; SQLite and PostgreSQL
    for the history.
    Faked: the AI provider (FakeProvider, failing to open the breaker), time (FakeClock, to age
    entries past their TTL and grace).
    """

    @pytest.mark.covers("DEGR-01")
    async def test_stale_entry_served_degraded_while_circuit_open(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        clock: FakeClock,
        redis_backend: RedisBackend,
    ):
        """An expired answer within the grace window is better than an error during an outage.

        Integration scope: CircuitOpenError → stale lookup in Redis (past the TTL, within the
        grace) → response flags.
        Business impact: callers keep getting useful answers while the provider is down, and
        can tell from `degraded` that they may be out of date.
        Test strategy: cache an answer, let it expire, open the circuit, ask again.
        Success criteria: 200 with the cached result, cached and degraded both true, and no
        provider call for it.
        """
        client = await degrading_client(make_client, provider, redis=redis_backend)
        original = await cache_then_open_circuit(client, provider, clock, age=TTL * 2)
        calls_before = provider.calls

        response = await process(client, CACHED_TEXT)

        body = TextProcessResponse.model_validate(response.json())
        assert response.status_code == 200
        assert (body.cached, body.degraded) == (True, True)
        assert body.result == original.result
        assert provider.calls == calls_before

    @pytest.mark.covers("DEGR-01")
    async def test_degraded_answer_not_written_back_as_fresh(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        clock: FakeClock,
        redis_backend: RedisBackend,
    ):
        """Serving a stale answer does not make it fresh again.

        Integration scope: degraded path → cache (no write) → next request after recovery.
        Business impact: an outage must not extend the life of an old answer; once the
        provider is back, callers get a new one.
        Test strategy: serve a degraded answer, reset the circuit with the operator key, let
        the provider succeed, ask again.
        Success criteria: the request after the reset is a cache miss that reached the
        provider (cached false, degraded false).
        """
        client = await degrading_client(make_client, provider, redis=redis_backend)
        await cache_then_open_circuit(client, provider, clock, age=TTL * 2)
        degraded = await process(client, CACHED_TEXT)
        await client.post("/internal/resilience/breakers/ai_provider/reset", headers=OPERATOR)
        provider.succeed()
        calls_before = provider.calls

        response = await process(client, CACHED_TEXT)

        body = TextProcessResponse.model_validate(response.json())
        assert degraded.json()["degraded"] is True
        assert (body.cached, body.degraded) == (False, False)
        assert provider.calls == calls_before + 1

    @pytest.mark.covers("DEGR-01")
    async def test_entry_past_grace_window_refused_with_503(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        clock: FakeClock,
        redis_backend: RedisBackend,
    ):
        """An answer older than TTL plus grace is not served, even during an outage.

        Integration scope: CircuitOpenError → stale lookup rejects the entry → 503.
        Business impact: CACHE_STALE_GRACE_SECONDS bounds how out of date a degraded answer may
        be; beyond it an honest 503 beats a misleading answer.
        Test strategy: cache an answer, let TTL + grace + 1 s pass, open the circuit, ask again.
        Success criteria: 503 `circuit_open` with Retry-After.
        """
        client = await degrading_client(make_client, provider, redis=redis_backend)
        await cache_then_open_circuit(client, provider, clock, age=TTL + GRACE + 1)

        response = await process(client, CACHED_TEXT)

        assert response.status_code == 503
        assert response.json()["error"]["code"] == "circuit_open"
        assert "Retry-After" in response.headers

    @pytest.mark.covers("DEGR-01")
    async def test_fresh_entry_served_normally_while_circuit_open(
        self, make_client: ClientFactory, provider: FakeProvider, clock: FakeClock
    ):
        """A fresh answer is an ordinary cache hit, open circuit or not.

        Integration scope: fresh cache lookup before the breaker is consulted.
        Business impact: hot answers keep flowing at full quality during an outage.
        Test strategy: cache an answer, open the circuit within the TTL, ask again.
        Success criteria: 200, cached true, degraded false.
        """
        client = await degrading_client(make_client, provider)
        await cache_then_open_circuit(client, provider, clock, age=TTL / 2)

        response = await process(client, CACHED_TEXT)

        assert response.status_code == 200
        assert (response.json()["cached"], response.json()["degraded"]) == (True, False)

    @pytest.mark.covers("DEGR-03")
    async def test_batch_while_open_answers_each_item_degraded_or_refused(
        self, make_client: ClientFactory, provider: FakeProvider, clock: FakeClock
    ):
        """A batch during an outage is not all-or-nothing.

        Integration scope: /v1/text/batch → per-item processing → degraded or CircuitOpenError.
        Business impact: a client's batch still returns what can be answered, item by item.
        Test strategy: open the circuit with a stale entry for one text, batch that text and
        an uncached one.
        Success criteria: 200; the first item degraded, the second an error `circuit_open`.
        """
        client = await degrading_client(make_client, provider)
        await cache_then_open_circuit(client, provider, clock, age=TTL * 2)
        items = [
            {"operation": "summarize", "text": CACHED_TEXT},
            {"operation": "summarize", "text": "A text nobody asked about before."},
        ]

        response = await client.post("/v1/text/batch", json={"items": items})

        body = BatchResponse.model_validate(response.json())
        outcomes = [
            (item.response.degraded if item.response else None, item.error and item.error.code)
            for item in body.items
        ]
        assert response.status_code == 200
        assert outcomes == [(True, None), (None, "circuit_open")]

    @pytest.mark.covers("DEGR-04")
    async def test_outage_outcomes_recorded_in_history(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        clock: FakeClock,
        database_backend: DatabaseBackend,
    ):
        """History shows which answers were degraded and which requests the circuit refused.

        Integration scope: TextProcessor outcomes → HistoryService → database → /v1/history.
        Business impact: after an outage, support can tell a caller which answers were stale
        and which requests failed, and why.
        Test strategy: on each database, cache an answer, let it go stale, open the circuit,
        then ask for the stale text and for an uncached one.
        Success criteria: newest first: `circuit_open`; ok degraded; `provider_error`; ok.
        """
        client = await degrading_client(make_client, provider, database=database_backend)
        await cache_then_open_circuit(client, provider, clock, age=TTL * 2)
        await process(client, CACHED_TEXT)
        await process(client, "A text nobody asked about before.")

        response = await client.get("/v1/history")

        page = HistoryPage.model_validate(response.json())
        assert [(item.outcome, item.degraded) for item in page.items] == [
            ("circuit_open", False),
            ("ok", True),
            ("provider_error", False),
            ("ok", False),
        ]


class TestProviderFailureMapping:
    """Seam: pydantic-ai errors → AIProvider translation → error handler, circuit closed.

    Paths: DEGR-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    pydantic-ai's own exception types; the in-memory cache; SQLite.
    Faked: the AI provider (FakeProvider raising 5xx, 4xx, connection errors, hanging, or
    answering invalid output).
    """

    @pytest.mark.covers("DEGR-02")
    @pytest.mark.parametrize(
        ("failure", "status", "code"),
        [
            pytest.param(server_error(500), 502, "provider_error", id="http-500"),
            pytest.param(server_error(400), 502, "provider_error", id="http-400"),
            pytest.param(
                ModelAPIError("fake-model", "connection refused"),
                502,
                "provider_error",
                id="unreachable",
            ),
            pytest.param(
                ModelTimeoutError("fake-model", "read timed out"),
                504,
                "provider_timeout",
                id="sdk-timeout",
            ),
        ],
    )
    async def test_provider_failure_maps_to_gateway_error(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        failure: Exception,
        status: int,
        code: str,
    ):
        """Whatever way the provider fails, the caller gets a gateway error with a clear code.

        Integration scope: the SDK's exception → our ProviderError family → HTTP mapping.
        Business impact: clients can tell "the AI provider failed" (retry later) from "our
        service is broken" (a 500, which pages someone).
        Test strategy: a provider raising each kind of pydantic-ai error, no retries.
        Success criteria: the expected 502/504 status and code, never 500.
        """
        provider.fail(failure)
        client = await make_client(model=provider.model, ai_max_attempts=1)

        response = await process(client, "A text for a failing provider.")

        assert (response.status_code, response.json()["error"]["code"]) == (status, code)

    @pytest.mark.covers("DEGR-02")
    async def test_invalid_provider_output_maps_to_502(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """An answer that does not fit the result type is a provider failure, not a crash.

        Integration scope: pydantic-ai output validation (one retry) → InvalidProviderOutputError.
        Business impact: a model that drifts from the schema yields a clear 502 instead of a
        500 or a malformed body reaching clients.
        Test strategy: a provider whose output lacks every field of the summary result.
        Success criteria: 502 `invalid_provider_output` after the agent's one retry (2 calls).
        """
        provider.answer_with({"unexpected": "shape"})
        client = await make_client(model=provider.model, ai_max_attempts=1)

        response = await process(client, "A text for a provider that answers nonsense.")

        assert (response.status_code, response.json()["error"]["code"]) == (
            502,
            "invalid_provider_output",
        )
        assert provider.calls == 2
