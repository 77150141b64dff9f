"""Traces: one request through the route, the cache, the provider and the database is one trace.

Spans go to OpenTelemetry's InMemorySpanExporter, exported one by one (SimpleSpanProcessor), so
a test reads exactly the spans a request produced. The provider is an OpenAI-compatible server
on loopback, so the HTTP client's span and the provider's reported token counts are real.
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import fakeredis
import pytest
from app.main import create_app
from app.resources import Externals
from asgi_lifespan import LifespanManager
from conftest import PUBLIC_KEY, DatabaseBackend, make_settings
from fakes.openai_server import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    OpenAICompatibleServer,
    openai_compatible_server,
)
from httpx import ASGITransport, AsyncClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import models

TEXT = "Kestrel-9931 nests on the cathedral tower; the chicks fledge in late June."
BODY = {"operation": "summarize", "text": TEXT}


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatibleServer]:
    """The loopback provider; model requests are allowed for this test only, to it alone."""
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)
    with openai_compatible_server() as server:
        yield server


@pytest.fixture
async def traced(
    sqlite_backend: DatabaseBackend, openai_server: OpenAICompatibleServer
) -> AsyncIterator[tuple[AsyncClient, InMemorySpanExporter]]:
    """An app with a span exporter handed in, over fakeredis and the loopback provider; the
    exporter is emptied once the app has started, so it holds only what requests produce."""
    exporter = InMemorySpanExporter()
    settings = make_settings(
        sqlite_backend,
        ai_model="openai-chat:fake-llm",
        ai_base_url=openai_server.base_url,
        ai_check_interval_seconds=0,
    )
    async with AsyncExitStack() as stack:
        redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        stack.push_async_callback(redis.aclose)
        app = create_app(settings, Externals(redis=redis, span_exporter=exporter))
        manager = await stack.enter_async_context(LifespanManager(app))
        client = await stack.enter_async_context(
            AsyncClient(
                transport=ASGITransport(app=manager.app),
                base_url="http://testserver",
                headers={"X-API-Key": PUBLIC_KEY},
            )
        )
        exporter.clear()
        yield client, exporter


def names(spans: list[ReadableSpan]) -> list[str]:
    return [span.name for span in spans]


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (found,) = (span for span in spans if span.name == name)
    return found


class TestTracing:
    """Seam: FastAPI, pydantic-ai, httpx2, Redis and SQLAlchemy instrumentation → one tracer
    provider per app → a span exporter.

    Paths: OBS-06
    Real: the app from create_app in its lifespan with OpenTelemetry's instrumentation, over
    in-process HTTP; SQLite; the OpenAI client over real HTTP to an OpenAI-compatible server on
    loopback; OpenTelemetry's InMemorySpanExporter.
    Faked: Redis (fakeredis), the AI provider (the loopback server).
    """

    @pytest.mark.covers("OBS-06")
    async def test_cache_miss_is_one_trace_through_every_layer(
        self, traced: tuple[AsyncClient, InMemorySpanExporter]
    ):
        """A miss is one trace: route, cache lookup, provider call with model and tokens, the
        provider's HTTP request, Redis, the history write, and the request id on the root.

        Integration scope: /v1/text/process → RequestContextMiddleware (request id) →
        TextProcessor spans → ResponseCache over instrumented fakeredis → pydantic-ai's GenAI
        spans → the OpenAI SDK's instrumented HTTP client → history INSERT over SQLAlchemy.
        Business impact: a slow or failed request is found in one trace, by the request id a
        user quotes, instead of pieced together from four systems' logs.
        Test strategy: one request with a known X-Request-ID; read every span exported.
        Success criteria: all spans in one trace under the server span, which carries the id;
        the named spans present; model and token counts on the chat span; cache.hit false;
        no span attribute holds the text.
        """
        client, exporter = traced

        response = await client.post(
            "/v1/text/process", json=BODY, headers={"X-Request-ID": "trace-miss-1"}
        )
        spans = list(exporter.get_finished_spans())

        root = one(spans, "POST /v1/text/process")
        chat = one(spans, "chat fake-llm")
        chat_attributes = dict(chat.attributes or {})
        attribute_values = [str(v) for span in spans for v in (span.attributes or {}).values()]
        assert response.status_code == 200
        assert {span.context.trace_id for span in spans} == {root.context.trace_id}
        assert root.parent is None
        assert (root.attributes or {})["request.id"] == "trace-miss-1"
        assert {"cache lookup", "invoke_agent summarize", "chat fake-llm", "history write"} <= set(
            names(spans)
        )
        assert (one(spans, "cache lookup").attributes or {})["cache.hit"] is False
        assert chat_attributes["gen_ai.request.model"] == "fake-llm"
        assert chat_attributes["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
        assert chat_attributes["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
        assert any(span.name.startswith("POST") and span.parent == chat.context for span in spans)
        assert any(span.name.startswith("INSERT") for span in spans)
        assert any(span.name in {"GET", "SET", "EVALSHA", "HGETALL"} for span in spans)
        assert not [value for value in attribute_values if "Kestrel" in value]

    @pytest.mark.covers("OBS-06")
    async def test_cache_hit_has_no_provider_span(
        self, traced: tuple[AsyncClient, InMemorySpanExporter]
    ):
        """The second identical request is answered by the cache, and its trace shows it.

        Integration scope: the same chain; the second request stops at the cache.
        Business impact: a trace must tell why a request was fast (or did not cost tokens).
        Test strategy: the same text twice; read the second request's trace only.
        Success criteria: one trace with the route, the cache lookup (cache.hit true) and the
        history write, and no agent, chat or provider HTTP span.
        """
        client, exporter = traced
        await client.post("/v1/text/process", json=BODY)
        exporter.clear()

        response = await client.post("/v1/text/process", json=BODY)
        spans = list(exporter.get_finished_spans())

        assert response.json()["cached"] is True
        assert len({span.context.trace_id for span in spans}) == 1
        assert (one(spans, "cache lookup").attributes or {})["cache.hit"] is True
        assert "history write" in names(spans)
        assert not [
            name for name in names(spans) if name.startswith(("chat", "invoke_agent", "POST /v1/c"))
        ]
