"""Traces with OpenTelemetry (the backend's `otel` extra), set by the standard OTEL_* variables.

On when an exporter is named: OTEL_TRACES_EXPORTER (`console`, `otlp`, several with commas), or
an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), which means
`otlp`. Off otherwise, or with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none: then the SDK
is not even imported and nothing is wrapped. The SDK reads the rest of its variables itself
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_*, OTEL_BSP_*, sampling).

Each app gets its own tracer provider rather than the global one, and each client is
instrumented on its own (the FastAPI app, the SQLAlchemy engine, the Redis client, the OpenAI
client's HTTP client, the pydantic-ai agents): global instrumentation binds the first provider of
the process for good, which would tie every later app (every test's) to the first one's exporter.
pydantic-ai writes the provider-call spans (GenAI semantic conventions: model, token counts)
with message content left out, so no user text reaches a span.
"""

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from app.core.exceptions import ConfigurationError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

SERVICE_NAME = "llm-starter-backend"
# Probes and scrapes come every few seconds and say nothing a trace would add.
UNTRACED_URLS = "/healthz,/readyz,/internal/metrics"


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for; empty means tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [name for name in named if name]
    if named:
        return [name for name in named if name != "none"]
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return ["otlp"] if any(environ.get(variable) for variable in endpoints) else []


def span_exporter(name: str, environ: Mapping[str, str]) -> "SpanExporter":
    """An exporter by its registered name (the SDK's own `opentelemetry_traces_exporter` entry
    points); `otlp` is OTLP over HTTP unless the protocol variable says grpc."""
    if name == "otlp":
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        )
        name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER: no span exporter {name!r} is installed (console and "
            "otlp over HTTP come with the backend's `otel` extra)."
        )
    exporter: SpanExporter = next(iter(found)).load()()
    return exporter


class Tracing:
    """One app's tracer provider and the instrumentation of its clients."""

    def __init__(self, provider: "TracerProvider") -> None:
        self.provider = provider

    @classmethod
    def configure(
        cls, environ: Mapping[str, str], exporter: "SpanExporter | None" = None
    ) -> "Tracing | None":
        """Tracing as the environment asks, or to `exporter` (handed in by tests, exported span
        by span); None when off."""
        names = exporter_names(environ)
        if exporter is None and not names:
            return None
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        default = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": SERVICE_NAME}
        provider = TracerProvider(resource=Resource.create(default))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        for name in names:
            provider.add_span_processor(BatchSpanProcessor(span_exporter(name, environ)))
        return cls(provider)

    def tracer(self) -> "Tracer":
        return self.provider.get_tracer("app")

    def instrument_app(self, app: "FastAPI") -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=UNTRACED_URLS,
            exclude_spans=["receive", "send"],  # one span per ASGI message: noise, not timing
        )

    def instrument_engine(self, engine: "AsyncEngine") -> None:
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.metrics import get_meter

        # EngineTracer for this engine alone: SQLAlchemyInstrumentor.instrument() works once
        # per process. The connection gauge goes to the global meter (a no-op unless set).
        connections = get_meter(__name__).create_up_down_counter("db.client.connections.usage")
        EngineTracer(self.tracer(), engine.sync_engine, connections)  # type: ignore[no-untyped-call]

    def instrument_redis(self, client: "Redis") -> None:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        # Spans show commands with their arguments masked ("SET ? ?"): no cached values.
        RedisInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def instrument_http_client(self, client: Any) -> None:
        """The OpenAI SDK's HTTP client (an httpx2 client): the provider's requests as spans."""
        from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor

        HTTPX2ClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def ai_instrumentation(self) -> "InstrumentationSettings":
        from pydantic_ai.models.instrumented import InstrumentationSettings

        return InstrumentationSettings(
            tracer_provider=self.provider, include_content=False, include_binary_content=False
        )

    def shutdown(self) -> None:
        """Export what is pending (a batch processor holds spans for a few seconds)."""
        self.provider.shutdown()
