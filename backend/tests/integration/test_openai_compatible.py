"""API → OpenAI-compatible provider over real HTTP on loopback.

Here nothing of the provider path is faked in-process: AI_MODEL=openai-chat:… and AI_BASE_URL
make the app build its own OpenAI client, which talks HTTP to a server the test starts on
127.0.0.1 (fakes.openai_server). The server's request counter is the provider's side of the
story: it proves which calls really left the app.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import OPERATOR_KEY, ClientFactory
from fakes.clock import FakeClock
from fakes.openai_server import OpenAICompatibleServer, openai_compatible_server
from fakes.providers import RecordingSleep
from fakes.services import free_port
from httpx import AsyncClient, Response
from pydantic_ai import models
from shared.text import RESULT_TYPE_BY_OPERATION, Operation, TextProcessResponse

MODEL = "openai-chat:fake-llm"
THRESHOLD = 2
ATTEMPTS = 2
RECOVERY = 30.0
OPERATOR = {"X-API-Key": OPERATOR_KEY}
TEXT = "The release slipped a week. Testing found two bugs. Both are fixed now."


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatibleServer]:
    """The loopback server; model requests are allowed for this test only, to it alone."""
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)
    with openai_compatible_server() as server:
        yield server


async def client_for(
    make_client: ClientFactory, server: OpenAICompatibleServer, **overrides: Any
) -> AsyncClient:
    settings: dict[str, Any] = {
        "ai_model": MODEL,
        "ai_base_url": server.base_url,
        "ai_max_attempts": ATTEMPTS,
        "breaker_failure_threshold": THRESHOLD,
        "breaker_recovery_seconds": RECOVERY,
    }
    return await make_client(**(settings | overrides))


async def process(client: AsyncClient, text: str = TEXT, operation: str = "summarize") -> Response:
    body: dict[str, Any] = {"operation": operation, "text": text}
    if operation == Operation.QA:
        body["question"] = "How many bugs were found?"
    return await client.post("/v1/text/process", json=body)


async def open_circuit(client: AsyncClient, server: OpenAICompatibleServer) -> None:
    server.fail()
    for index in range(THRESHOLD):
        response = await process(client, f"Request number {index} to a failing server.")
        assert response.status_code == 502


async def breaker_state(client: AsyncClient) -> str:
    response = await client.get("/internal/resilience/breakers", headers=OPERATOR)
    (view,) = response.json()["breakers"]
    state: str = view["state"]
    return state


class TestOpenAICompatibleProvider:
    """Seam: API → ResilientProvider → OpenAIChatModel → AsyncOpenAI → HTTP → loopback server.

    Paths: BRK-01, BRK-02, BRK-04, DEGR-02, PROV-01, PROV-02, PROV-03, PROV-04, RETRY-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    pydantic-ai's OpenAI model and the OpenAI SDK speaking real HTTP to a server on loopback.
    Faked: the LLM service (an OpenAI-compatible server in a thread, answering, failing or
    throttling on command), time (FakeClock), the backoff (the recording sleep).
    """

    @pytest.mark.covers("PROV-02")
    @pytest.mark.parametrize("operation", list(Operation))
    async def test_healthy_server_answers_every_operation(
        self,
        make_client: ClientFactory,
        openai_server: OpenAICompatibleServer,
        operation: Operation,
    ):
        """A real chat-completions round trip yields a typed result for each operation.

        Integration scope: our agents and output tools → OpenAI wire format → tool-call
        parsing → shared result contracts.
        Business impact: pointing AI_BASE_URL at Ollama, vLLM or LM Studio works as shipped.
        Test strategy: a server that answers with a call of the requested output tool.
        Success criteria: 200 with the operation's result kind, one request at the server.
        """
        client = await client_for(make_client, openai_server)

        response = await process(client, operation=operation)

        body = TextProcessResponse.model_validate(response.json())
        assert response.status_code == 200
        assert isinstance(body.result, RESULT_TYPE_BY_OPERATION[operation])
        assert openai_server.requests == 1

    @pytest.mark.covers("PROV-01", "BRK-01", "BRK-02")
    async def test_server_answering_500_opens_breaker_and_stops_calls(
        self,
        make_client: ClientFactory,
        openai_server: OpenAICompatibleServer,
        clock: FakeClock,
    ):
        """A server that always fails is left alone once the circuit opens, until recovery.

        Integration scope: HTTP 500 → SDK error → ProviderError → retries → breaker → 503
        with Retry-After-Ms, and the operator view.
        Business impact: an outage at the provider stops costing calls and latency after
        THRESHOLD requests, and callers are told exactly when to come back.
        Test strategy: a server answering 500, THRESHOLD requests of ATTEMPTS attempts each,
        then requests just before the recovery time ends.
        Success criteria: 503 `circuit_open` with Retry-After-Ms 30000 and retry_after_ms in
        the body; the view shows open; the server sees no request after the circuit opened.
        """
        client = await client_for(make_client, openai_server)
        await open_circuit(client, openai_server)
        requests_when_opened = openai_server.requests

        refused = await process(client)
        clock.advance(RECOVERY - 1)
        still_refused = await process(client)

        assert requests_when_opened == THRESHOLD * ATTEMPTS
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "circuit_open"
        assert refused.headers["Retry-After-Ms"] == "30000"
        assert refused.json()["error"]["details"]["retry_after_ms"] == 30000
        assert still_refused.status_code == 503
        assert await breaker_state(client) == "open"
        assert openai_server.requests == requests_when_opened

    @pytest.mark.covers("PROV-01", "BRK-04")
    async def test_recovered_server_closes_breaker_after_recovery_time(
        self,
        make_client: ClientFactory,
        openai_server: OpenAICompatibleServer,
        clock: FakeClock,
    ):
        """Once the server is healthy again, the first request after recovery closes the circuit.

        Integration scope: half-open trial over real HTTP → breaker closes → normal traffic.
        Business impact: service comes back by itself when the provider does.
        Test strategy: open the circuit against a failing server, make the server healthy,
        pass the recovery time, send a request.
        Success criteria: 200 from the server's answer, exactly one new request at the
        server, and the view shows closed.
        """
        client = await client_for(make_client, openai_server)
        await open_circuit(client, openai_server)
        requests_when_opened = openai_server.requests
        openai_server.answer()
        clock.advance(RECOVERY)

        response = await process(client)

        assert response.status_code == 200
        assert response.json()["cached"] is False
        assert openai_server.requests == requests_when_opened + 1
        assert await breaker_state(client) == "closed"

    @pytest.mark.covers("PROV-03", "RETRY-03")
    async def test_rate_limited_server_retry_after_honoured(
        self,
        make_client: ClientFactory,
        openai_server: OpenAICompatibleServer,
        sleep: RecordingSleep,
    ):
        """A real 429 with Retry-After sets the wait before the next attempt.

        Integration scope: HTTP 429 headers → SDK → pydantic-ai ModelHTTPError.headers → our
        retry wait.
        Business impact: a throttled deployment backs off as the provider asks instead of
        deepening the throttling.
        Test strategy: a server answering 429 with Retry-After: 3, two attempts allowed.
        Success criteria: one wait of 3 s, two requests at the server, then 502 naming 429.
        """
        openai_server.rate_limit(retry_after_seconds=3)
        client = await client_for(make_client, openai_server)

        response = await process(client)

        assert sleep.waits == [3.0]
        assert openai_server.requests == ATTEMPTS
        assert response.status_code == 502
        assert response.json()["error"]["details"]["provider_status"] == 429

    @pytest.mark.covers("PROV-04", "DEGR-02")
    async def test_unreachable_server_is_retried_then_reported_as_502(
        self, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, sleep: RecordingSleep
    ):
        """A provider nobody answers for is a transient failure: retried, then a clear 502.

        Integration scope: refused TCP connection → SDK connection error → pydantic-ai
        ModelConnectionError → ProviderError(transient) → retries → error handler.
        Business impact: a wrong AI_BASE_URL or a provider that is down shows up as
        `provider_error`, never as a 500, and a restart of a local model server is ridden out.
        Test strategy: AI_BASE_URL on a loopback port where nothing listens.
        Success criteria: 502 `provider_error` after ATTEMPTS attempts (one wait between them).
        """
        monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)
        client = await make_client(
            ai_model=MODEL,
            ai_base_url=f"http://127.0.0.1:{free_port()}/v1",
            ai_max_attempts=ATTEMPTS,
        )

        response = await process(client)

        assert (response.status_code, response.json()["error"]["code"]) == (502, "provider_error")
        assert len(sleep.waits) == ATTEMPTS - 1
