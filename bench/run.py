"""`make bench`: each path of the backend under load, next to a bare FastAPI app.

For each worker count: the bare app (a GET, and a POST of our contracts with nothing of ours
behind it), the bare model app (the same POST asking the benchmark's provider through pydantic-ai,
the floor of a miss), our app (health, cache miss, cache hit, the hit with a rate-limited key),
our app with its breaker open, and the bare app again; each served by its own uvicorn and loaded
by wrk (2 threads, 20 connections) after a short warm-up. The hits and the open breaker, whose
ratios to one another are read, are measured in turns (ALTERNATED): on a shared VM the CPU a
request costs moves with the host, by 40 % between runs half an hour apart, and what moves during
the turns weighs on both sides of a ratio alike. Then the time to first token of streamed answers
(`bench.ttft`), through the service and from the provider alone. Prints a table and the targets,
writes reports/bench/bench.json and bench.png. Exits non-zero on a crash only: a missed target
is reported (FAIL), not raised. The targets (`bench.report`) are ratios measured in this run;
the two-worker one is meant for PostgreSQL and Redis (BENCH_DATABASE_URL, BENCH_REDIS_URL).

Knobs (environment): BENCH_DURATION seconds per scenario (5), BENCH_WARMUP seconds (1),
BENCH_WORKERS (1,2), BENCH_PROVIDER_LATENCY_MS (50), BENCH_TOKEN_INTERVAL_MS (20),
BENCH_STREAMS (50), BENCH_STREAM_CONCURRENCY (10), BENCH_REDIS_URL (default
redis://127.0.0.1:6379/13 if it answers; empty for in-memory), BENCH_DATABASE_URL (default a
fresh SQLite file; any other database keeps the history rows the run writes).
"""

import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import chart, procfs, report, ttft
from bench.loadgen import CONNECTIONS, THREADS, LoadResult, WrkMissingError, run_wrk, wrk_path
from bench.report import Measurement, Startup
from bench.scenarios import (
    BARE_MODEL_SERVER,
    BARE_SERVER,
    HEALTH,
    HIT_BODY,
    LIMITED_TIERS,
    OPERATOR_KEY,
    OUR_SERVERS,
    PUBLIC_KEY,
    Scenario,
    ServerSpec,
)
from bench.server import REPO, Server, serve
from bench.services import choose_redis, clear_redis, history_rows, migrate

OUTPUT = REPO / "reports" / "bench"
# Measured in turns, SLICES slices of each, rather than one after the other.
ALTERNATED = (report.CACHE_HIT, report.LIMITED_HIT, report.BREAKER_OPEN)
SLICES = 5


@dataclass(frozen=True)
class Config:
    duration: int  # whole seconds: wrk takes no fractions
    warmup: int
    workers: tuple[int, ...]
    provider_latency_ms: float

    @classmethod
    def from_env(cls) -> "Config":
        return cls(
            duration=int(os.environ.get("BENCH_DURATION", "5")),
            warmup=int(os.environ.get("BENCH_WARMUP", "1")),
            workers=tuple(int(w) for w in os.environ.get("BENCH_WORKERS", "1,2").split(",")),
            provider_latency_ms=float(os.environ.get("BENCH_PROVIDER_LATENCY_MS", "50")),
        )


@dataclass
class Bench:
    config: Config
    env: dict[str, str]  # the servers' environment
    scratch: Path
    redis_url: str | None
    measurements: list[Measurement] = field(default_factory=list)
    startups: list[Startup] = field(default_factory=list)
    # Time to first token by worker count: streams one at a time (the target), and at once.
    ttft_service: dict[int, ttft.Latencies] = field(default_factory=dict)
    ttft_loaded: dict[int, ttft.Latencies] = field(default_factory=dict)

    def run(self, spec: ServerSpec, workers: int) -> None:
        """One server alone (the bare app), its scenarios one after the other."""
        clear_redis(self.redis_url)  # a cold cache and a closed breaker for every server
        with self._served(spec, workers) as server:
            if spec.prepare is not None:
                spec.prepare(server)
            for scenario in spec.scenarios:
                self._keep(_measure(server, scenario, workers, self.config))

    @contextmanager
    def _served(self, spec: ServerSpec, workers: int) -> Iterator[Server]:
        """`spec` served, its start-up recorded and printed."""
        with serve(
            spec.factory,
            workers=workers,
            probe_path=spec.probe_path,
            env=self.env,
            scratch=self.scratch,
        ) as server:
            self.startups.append(Startup(spec.name, workers, server.startup_seconds))
            print(
                f"\n{spec.name} x{workers}: first answer {server.startup_seconds:.2f}s after spawn"
            )
            yield server

    def run_ours(self, workers: int) -> None:
        """Our servers at once, each started alone (its start-up timed undisturbed). Each one's
        scenarios that are not ALTERNATED first, in order, while the circuit is closed (the
        servers share the breaker in Redis); then, server by server, its `prepare` and the
        warm-up of its ALTERNATED scenarios (the hit's answer is cached before the other server
        opens the shared circuit); then those in turns."""
        clear_redis(self.redis_url)  # a cold cache and a closed breaker
        with ExitStack() as stack:
            in_turns: list[tuple[Server, Scenario]] = []
            servers: list[tuple[ServerSpec, Server]] = []
            for spec in OUR_SERVERS:
                servers.append((spec, stack.enter_context(self._served(spec, workers))))
            for spec, server in servers:
                for scenario in spec.scenarios:
                    if scenario.name in ALTERNATED:
                        in_turns.append((server, scenario))
                    else:
                        self._keep(_measure(server, scenario, workers, self.config))
            for spec, server in servers:
                if spec.prepare is not None:
                    spec.prepare(server)
                for scenario in (mine for theirs, mine in in_turns if theirs is server):
                    _loader(server, scenario)(self.config.warmup)
            print(f"  in turns, {SLICES} slices each:")
            for measurement in _measure_in_turns(in_turns, workers, self.config):
                self._keep(measurement)

    def _keep(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)
        load = measurement.load
        print(
            f"  {measurement.scenario:<13}{load.requests_per_second:>9.0f} req/s  "
            f"p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:6.2f} ms  "
            f"RSS {measurement.peak_process_mb:4.0f} MB  {measurement.check}"
        )

    def time_to_first_token(self, workers: int) -> None:
        clear_redis(self.redis_url)
        with serve(
            "bench.apps:create_stream_app",
            workers=workers,
            probe_path=HEALTH,
            env=self.env,
            scratch=self.scratch,
        ) as server:
            streams = int(os.environ.get("BENCH_STREAMS", "50"))
            concurrency = int(os.environ.get("BENCH_STREAM_CONCURRENCY", "10"))
            alone = ttft.service_ttft(server, streams, 1)
            loaded = ttft.service_ttft(server, 2 * streams, concurrency)
            self.ttft_service[workers] = alone
            self.ttft_loaded[workers] = loaded
            print(
                f"\nstream x{workers}: time to first token through the service, one stream at a"
                f" time  {alone.line()}  {_verdict(ttft.check(server))}\n"
                f"stream x{workers}: the same, {concurrency} streams at once"
                f"            {loaded.line()}"
            )


def main() -> int:
    try:
        wrk_path()
    except WrkMissingError as exc:
        print(exc, file=sys.stderr)
        return 1
    config = Config.from_env()
    redis = choose_redis()
    machine = report.machine()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch_name:
        scratch = Path(scratch_name)
        database_url = (
            os.environ.get("BENCH_DATABASE_URL") or f"sqlite+aiosqlite:///{scratch / 'bench.db'}"
        )
        env = _server_env(config, redis.url, database_url)
        migrate(env)
        _print_setting(machine, config, redis.description, database_url)
        bench = Bench(config, env, scratch, redis.url)
        try:
            for workers in config.workers:
                bench.run(BARE_SERVER, workers)
                bench.run(BARE_MODEL_SERVER, workers)
                bench.run_ours(workers)
                bench.run(BARE_SERVER, workers)
                bench.time_to_first_token(workers)
        finally:
            clear_redis(redis.url)
        rows = history_rows(database_url)
    _report(machine, redis.description, bench, rows)
    return 0


def _server_env(config: Config, redis_url: str | None, database_url: str) -> dict[str, str]:
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "API_KEYS": PUBLIC_KEY,
        "INTERNAL_API_KEYS": OPERATOR_KEY,
        "RATE_LIMIT_TIERS": LIMITED_TIERS,
        "API_KEYS_TIER": "pro",
        "DATABASE_URL": database_url,
        "DATABASE_AUTO_MIGRATE": "false",  # migrated once, before any server starts
        "BENCH_PROVIDER_LATENCY_MS": f"{config.provider_latency_ms:g}",
    }
    env.pop("REDIS_URL", None)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def _loader(server: Server, scenario: Scenario) -> Callable[[int], LoadResult]:
    """wrk on the scenario's path for a number of seconds."""
    url = server.base_url + scenario.path

    def load(seconds: int) -> LoadResult:
        wrk_env = {
            **os.environ,
            "BENCH_BODY": HIT_BODY,
            "BENCH_API_KEY": scenario.key,
            "BENCH_RUN_ID": uuid.uuid4().hex[:8],  # fresh texts for every cache-miss run
        }
        return run_wrk(url, seconds, script=scenario.script, env=wrk_env)

    return load


def _measure(server: Server, scenario: Scenario, workers: int, config: Config) -> Measurement:
    load = _loader(server, scenario)
    load(config.warmup)
    with procfs.sample(server.process.pid) as usage:
        result = load(config.duration)
    return _measurement(server, scenario, workers, result, usage)


def _measure_in_turns(
    pairs: list[tuple[Server, Scenario]], workers: int, config: Config
) -> list[Measurement]:
    """Each (server, scenario), warmed up already, loaded for SLICES slices of the duration
    (whole seconds, one at least), one slice of each in turn; a scenario's slices are added up
    (requests, CPU) into one measurement, its p50 and p99 the median of its slices'."""
    loads = [_loader(server, scenario) for server, scenario in pairs]
    seconds = max(1, config.duration // SLICES)
    slices: list[list[tuple[LoadResult, procfs.Usage]]] = [[] for _ in pairs]
    for _ in range(SLICES):
        for (server, _scenario), load, taken in zip(pairs, loads, slices, strict=True):
            with procfs.sample(server.process.pid) as usage:
                taken.append((load(seconds), usage))
    return [
        _measurement(server, scenario, workers, *_added_up(taken))
        for (server, scenario), taken in zip(pairs, slices, strict=True)
    ]


def _added_up(
    slices: list[tuple[LoadResult, procfs.Usage]],
) -> tuple[LoadResult, procfs.Usage]:
    loads = [load for load, _ in slices]
    requests = sum(load.requests for load in loads)
    seconds = sum(load.requests / load.requests_per_second for load in loads if load.requests)
    result = LoadResult(
        requests_per_second=requests / seconds if seconds else 0.0,
        p50_ms=statistics.median(load.p50_ms for load in loads),
        p99_ms=statistics.median(load.p99_ms for load in loads),
        requests=requests,
        non_2xx=sum(load.non_2xx for load in loads),
        socket_errors=sum(load.socket_errors for load in loads),
    )
    usage = procfs.Usage(
        peak_tree_mb=max(usage.peak_tree_mb for _, usage in slices),
        peak_process_mb=max(usage.peak_process_mb for _, usage in slices),
        cpu_seconds=sum(usage.cpu_seconds for _, usage in slices),
        machine_cpu_seconds=sum(usage.machine_cpu_seconds for _, usage in slices),
    )
    return result, usage


def _measurement(
    server: Server, scenario: Scenario, workers: int, result: LoadResult, usage: procfs.Usage
) -> Measurement:
    if scenario.status == 200:
        unexpected = result.non_2xx + result.socket_errors
    else:
        unexpected = result.requests - result.non_2xx + result.socket_errors
    return Measurement(
        scenario=scenario.name,
        workers=workers,
        load=result,
        peak_process_mb=usage.peak_process_mb,
        peak_tree_mb=usage.peak_tree_mb,
        cpu_ms_per_request=usage.cpu_seconds * 1000 / max(1, result.requests),
        machine_cpu_ms_per_request=usage.machine_cpu_seconds * 1000 / max(1, result.requests),
        unexpected_responses=unexpected,
        check=_verdict(scenario.check(server)),
    )


def _verdict(problem: str | None) -> str:
    return "ok" if problem is None else f"UNEXPECTED: {problem}"


def _print_setting(machine: report.Machine, config: Config, redis: str, database_url: str) -> None:
    print(f"machine: {machine.cpu}, {machine.cores} cores, {machine.memory_gb} GB")
    print(f"load generator: {machine.wrk}, -t{THREADS} -c{CONNECTIONS}, same cores as server")
    print(f"cache and breaker: {redis}")
    print(f"database: {database_url} (every /v1/text/process request writes a history row)")
    print(
        f"provider latency {config.provider_latency_ms:g} ms; {config.duration}s per scenario "
        f"after {config.warmup}s of warm-up; workers {config.workers}"
    )


def _report(machine: report.Machine, redis: str, bench: Bench, rows: int | None) -> None:
    measurements, startups = bench.measurements, bench.startups
    database = bench.env["DATABASE_URL"].split("://", 1)[0].split("+", 1)[0]
    load = report.Load(bench.config.provider_latency_ms, CONNECTIONS)
    found = report.targets(measurements, startups, load, database=database)
    scaling = report.worker_scaling(measurements)
    print()
    print(report.table(measurements))
    print()
    print(report.target_lines(found))
    for line in report.ceilings(measurements, os.cpu_count() or 1):
        print(line)
    print(f"INFO  cache and breaker: {redis}")
    if rows is not None:
        print(f"INFO  history rows written: {rows}")
    load_at_end = os.getloadavg()
    print(f"INFO  load average at start {machine.load_average_at_start}, at end {load_at_end}")
    # At the start only: by the end the one-minute average holds the benchmark's own load.
    if machine.load_average_at_start[0] > 1:
        print("NOTE  something else was using these cores: the figures are noisy; run again")
    provider = ttft.provider_ttft(int(os.environ.get("BENCH_STREAMS", "50")))
    print(f"INFO  time to first token of the provider alone   {provider.line()}")
    for workers, service in sorted(bench.ttft_service.items()):
        overhead = service.p50_ms - provider.p50_ms
        met = overhead <= ttft.TARGET_OVERHEAD_MS
        print(
            f"{'PASS' if met else 'FAIL'}  time to first token x{workers}: p50 {service.p50_ms:.2f}"
            f" ms through the service, {overhead:+.2f} ms over the provider's"
            f" (target ≤ +{ttft.TARGET_OVERHEAD_MS:g} ms)"
        )
    passed = sum(t.passed for t in found)
    print(f"\n{passed} of {len(found)} targets met")
    document = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine,
        "load_average_at_end": load_at_end,
        "config": bench.config,
        "cache_and_breaker": redis,
        "database": database,
        "startups": startups,
        "results": report.results(measurements),
        "targets": found,
        "cache_hit_two_workers_over_one": scaling,
        "history_rows": rows,
        "time_to_first_token": {
            "provider": provider,
            "service_by_workers": bench.ttft_service,
            "service_by_workers_concurrent": bench.ttft_loaded,
            "target_overhead_ms": ttft.TARGET_OVERHEAD_MS,
        },
    }
    report.write_json(OUTPUT / "bench.json", document)
    chart.draw(
        measurements,
        OUTPUT / "bench.png",
        subtitle=f"{machine.cpu}, {machine.cores} cores; {redis}",
    )
    print(f"written: {OUTPUT / 'bench.json'}, {OUTPUT / 'bench.png'}")


if __name__ == "__main__":
    sys.exit(main())
