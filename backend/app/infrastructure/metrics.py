"""Prometheus metrics, right in one process and across worker processes.

One process (PROMETHEUS_MULTIPROC_DIR unset): one registry per app, so that every test's app
starts from zero, with the client's process, GC and platform collectors.

Several workers (`uvicorn --workers N`, gunicorn): PROMETHEUS_MULTIPROC_DIR names a directory,
emptied before the deployment starts, where each worker writes its values to files
(prometheus_client's multiprocess mode, chosen at import, hence an environment variable). A
scrape, whichever worker answers it, sums every worker's files. Collectors do not work there, so
process metrics are read from /proc for each live worker (label `pid`), and each worker copies
its GC counts into counters every few seconds. Why prometheus_client alone rather than an
instrumentator: the middleware already labels by route template, and what multiprocess mode needs
(a directory, gauge modes, `mark_process_dead`) is the client's own.
"""

import asyncio
import functools
import gc
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

GC_SYNC_SECONDS = 5.0
BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
_WORKER_FILE = re.compile(r"^gauge_livesum_(\d+)\.db$")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        registry = self.registry
        self.requests = Counter(
            "http_requests",
            "HTTP requests served.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency.", ["route"], registry=registry
        )
        self.cache_lookups = Counter(
            "cache_lookups",
            "Cache lookups by outcome (hit, miss, stale).",
            ["outcome"],
            registry=registry,
        )
        self.provider_calls = Counter(
            "provider_calls",
            "Calls that reached the AI provider, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.provider_latency = Histogram(
            "provider_call_duration_seconds",
            "Time of one call to the AI provider (one attempt), by outcome.",
            ["outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 45),
            registry=registry,
        )
        self.tokens = Counter(
            "ai_tokens",
            "Tokens the AI provider reported (estimated for the local model), by model and type.",
            ["model", "type"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "breaker_transitions",
            "Circuit-breaker state changes.",
            ["breaker", "to_state"],
            registry=registry,
        )
        # The state is shared through Redis and the worker that changed it reports it: across
        # workers, the most recent report is the state.
        self.breaker_state = Gauge(
            "breaker_state",
            "Circuit-breaker state: 0 closed, 1 half open, 2 open.",
            ["breaker"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.rate_limit_refusals = Counter(
            "rate_limit_refusals",
            "Requests refused with 429, by limit (a tier, or registration).",
            ["limit"],
            registry=registry,
        )
        if multiprocess_dir() is None:
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)
            PlatformCollector(registry=registry)

    def breaker_changed(self, breaker: str, to_state: str) -> None:
        self.breaker_transitions.labels(breaker, to_state).inc()
        self.breaker_state.labels(breaker).set(BREAKER_STATE_VALUES[to_state])

    def exposition(self) -> bytes:
        """The text a scrape gets: this app's registry, or every worker's files."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
        registry.register(_WorkerProcesses(Path(path)))
        return generate_latest(registry)


@asynccontextmanager
async def worker_metrics() -> AsyncIterator[None]:
    """While a worker serves, in multiprocess mode: count it as live, keep its GC counts in
    the shared files, and at exit hand its live gauges back (`mark_process_dead`)."""
    if multiprocess_dir() is None:
        yield
        return
    # No registry: in multiprocess mode the files are what a scrape reads.
    live = Gauge(
        "app_workers", "Worker processes serving.", multiprocess_mode="livesum", registry=None
    )
    live.set(1)
    sync = asyncio.create_task(_sync_gc_counts())
    try:
        yield
    finally:
        sync.cancel()
        await asyncio.gather(sync, return_exceptions=True)
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


async def _sync_gc_counts() -> None:
    """Copies gc.get_stats() into counters, as increments since the last copy.

    Not from a gc callback: those run inside whatever allocated, possibly while the metric
    files' lock is held, and taking that lock again there would deadlock the worker.
    """
    kinds = ("collections", "collected", "uncollectable")
    counters = {
        kind: Counter(f"python_gc_{name}", text, ["generation"], registry=None)
        for kind, name, text in (
            ("collections", "collections", "Garbage collections, by generation."),
            ("collected", "objects_collected", "Objects collected by the GC."),
            ("uncollectable", "objects_uncollectable", "Uncollectable objects found."),
        )
    }
    copied = [dict.fromkeys(kinds, 0) for _ in gc.get_stats()]
    while True:
        for generation, stats in enumerate(gc.get_stats()):
            for kind in kinds:
                counters[kind].labels(str(generation)).inc(stats[kind] - copied[generation][kind])
                copied[generation][kind] = stats[kind]
        await asyncio.sleep(GC_SYNC_SECONDS)


class _WorkerProcesses(Collector):
    """process_* metrics of every live worker, from /proc, labelled by pid."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in self._live_workers():
            reader = ProcessCollector(pid=functools.partial(str, pid), registry=None)
            for family in reader.collect():
                target = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    target.add_sample(sample.name, {**sample.labels, "pid": pid}, sample.value)
        yield from merged.values()

    def _live_workers(self) -> list[str]:
        pids = []
        for path in self._folder.iterdir():
            if (match := _WORKER_FILE.match(path.name)) and Path(f"/proc/{match[1]}").exists():
                pids.append(match[1])
        return sorted(pids)
