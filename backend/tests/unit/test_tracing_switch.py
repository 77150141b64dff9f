"""Tracing on or off from the standard OTEL_* variables, and nothing built when off."""

import pytest
from app.core.exceptions import ConfigurationError
from app.infrastructure.tracing import Tracing, exporter_names, span_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class TestTracingSwitch:
    @pytest.mark.parametrize(
        ("environ", "expected"),
        [
            ({}, []),
            ({"OTEL_SERVICE_NAME": "api"}, []),
            ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
            ({"OTEL_TRACES_EXPORTER": "console, otlp"}, ["console", "otlp"]),
            ({"OTEL_TRACES_EXPORTER": "none"}, []),
            ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
            ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
            ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
            ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
        ],
    )
    def test_exporters_named_by_the_environment(self, environ, expected):
        assert exporter_names(environ) == expected

    def test_off_builds_nothing(self):
        assert Tracing.configure({}) is None

    @pytest.mark.parametrize(
        ("name", "environ", "expected"),
        [
            ("console", {}, ConsoleSpanExporter),
            ("otlp", {}, HttpSpanExporter),
            ("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, HttpSpanExporter),
        ],
    )
    def test_exporters_loaded_by_their_registered_names(self, name, environ, expected):
        assert isinstance(span_exporter(name, environ), expected)

    def test_grpc_without_its_package_names_the_variable(self):
        with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER"):
            span_exporter("otlp", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})

    def test_handed_in_exporter_turns_tracing_on(self):
        tracing = Tracing.configure({}, InMemorySpanExporter())

        assert tracing is not None
        tracing.shutdown()

    def test_unknown_exporter_names_the_variable(self):
        with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER"):
            Tracing.configure({"OTEL_TRACES_EXPORTER": "zipkin"})
