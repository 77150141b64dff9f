"""Prometheus metrics, in one registry per app so that every test's app starts from zero."""

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "http_requests",
            "HTTP requests served.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency.",
            ["route"],
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "cache_lookups",
            "Cache lookups by outcome (hit, miss, stale).",
            ["outcome"],
            registry=self.registry,
        )
        self.provider_calls = Counter(
            "provider_calls",
            "Calls that reached the AI provider, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.breaker_transitions = Counter(
            "breaker_transitions",
            "Circuit-breaker state changes.",
            ["breaker", "to_state"],
            registry=self.registry,
        )
