"""The figures of a run: the table, the targets (reported, never asserted) and the JSON file.

Every target is a ratio measured in the same run by the same load generator, so a busier or
faster machine moves both sides alike: to `bare_post` (FastAPI parsing our request body and
serializing our answer, nothing of ours behind it: the framework's floor for a cache hit) served
with as many workers, to the cache hit, to the provider's latency, to one worker, or to the bare
app's own start.
"""

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult

BARE = "bare"
BARE_POST = "bare_post"  # the framework's floor for a request like a cache hit: the yardstick
BARE_MISS = "bare_miss"  # the framework and one pydantic-ai model request: a miss's floor
HEALTH = "health"
CACHE_HIT = "cache_hit"
LIMITED_HIT = "limited_hit"  # a cache hit with a rate-limited key: the limiter's round trip too
CACHE_MISS = "cache_miss"
BREAKER_OPEN = "breaker_open"
SCENARIOS = (BARE, BARE_POST, BARE_MISS, HEALTH, CACHE_HIT, LIMITED_HIT, CACHE_MISS, BREAKER_OPEN)

YARDSTICKS = (BARE, BARE_POST, BARE_MISS)  # served by bench.bare and bench.bare_model
MISSES = (BARE_MISS, CACHE_MISS)  # the provider's latency, not the CPU, sets their latency

RSS_LIMIT_MB = 200.0
HIT_THROUGHPUT_OVER_BARE_POST = 0.5
HIT_P99_OVER_BARE_POST = 2.0
MISS_P50_OVER_PROVIDER_MS = 10.0
MISS_CPU_MS = 2.0
MISS_THROUGHPUT_OVER_LIMIT = 0.8  # of connections / provider latency, the closed loop's ceiling
STARTUP_OVER_BARE = 1.5
TWO_WORKERS_OVER_ONE = 1.6


@dataclass(frozen=True)
class Measurement:
    scenario: str
    workers: int
    load: LoadResult
    peak_process_mb: float  # the largest process of the tree: the worker
    peak_tree_mb: float  # every process of the tree together (supervisor and workers)
    # Server CPU time per request: unlike req/s, hardly moved by what else the cores run.
    cpu_ms_per_request: float
    # The whole machine's CPU time per request: the server's, wrk's, Redis's, the database's.
    machine_cpu_ms_per_request: float
    unexpected_responses: int  # statuses other than the scenario's own (200, or 503 when open)
    check: str  # "ok" when one request after the load took the intended path, else what it got


@dataclass(frozen=True)
class Startup:
    server: str
    workers: int
    seconds: float


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    comparison: str  # ">=" or "<="
    limit: float
    passed: bool


@dataclass(frozen=True)
class Ratios:
    throughput: float  # the scenario's req/s over bare_post's: higher is better
    p99: float  # the scenario's p99 over bare_post's: lower is better


def ratios(measurements: list[Measurement], found: Measurement) -> Ratios | None:
    """Against the best of the bare_post runs with as many workers (the bare app runs before and
    after ours). Whatever else the cores run only ever slows a run down, so the best run is the
    closest to bare_post undisturbed, and one disturbed run cannot flatter our ratios."""
    bare = [m.load for m in measurements if m.scenario == BARE_POST and m.workers == found.workers]
    if not bare:
        return None
    best_rps = max(load.requests_per_second for load in bare)
    best_p99 = min(load.p99_ms for load in bare)
    return Ratios(found.load.requests_per_second / best_rps, found.load.p99_ms / best_p99)


@dataclass(frozen=True)
class Load:
    """What the cache-miss targets are relative to: the provider's latency and the connections
    wrk keeps busy, whose quotient bounds a closed loop's throughput."""

    provider_latency_ms: float
    connections: int


def targets(
    measurements: list[Measurement], startups: list[Startup], load: Load, *, database: str
) -> list[Target]:
    result: list[Target] = []
    for workers in sorted({m.workers for m in measurements}):
        where = f"{workers} worker{'s' if workers > 1 else ''}, {database}"
        hit = _find(measurements, CACHE_HIT, workers)
        if workers == 1 and hit is not None and (hit_ratios := ratios(measurements, hit)):
            result.append(
                _at_least(
                    f"cache-hit req/s / bare_post ({where})",
                    hit_ratios.throughput,
                    HIT_THROUGHPUT_OVER_BARE_POST,
                )
            )
            result.append(
                _at_most(
                    f"cache-hit p99 / bare_post p99 ({where})",
                    hit_ratios.p99,
                    HIT_P99_OVER_BARE_POST,
                )
            )
        refused = _find(measurements, BREAKER_OPEN, workers)
        if hit is not None and refused is not None:
            result.append(
                _at_least(
                    f"breaker-open req/s / cache-hit req/s ({where})",
                    refused.load.requests_per_second / hit.load.requests_per_second,
                    1.0,
                )
            )
        if (miss := _find(measurements, CACHE_MISS, workers)) is not None:
            result.extend(_miss_targets(miss, load, where))
        ours = [m for m in measurements if m.workers == workers and m.scenario not in YARDSTICKS]
        if ours:
            peak = max(m.peak_process_mb for m in ours)
            result.append(_at_most(f"peak RSS per worker, MB ({where})", peak, RSS_LIMIT_MB))
    for startup in startups:
        bare = [s.seconds for s in startups if s.server == "bare" and s.workers == startup.workers]
        if startup.server == "app" and bare:
            name = f"start to first answer / bare app's ({startup.workers} worker(s))"
            result.append(_at_most(name, startup.seconds / min(bare), STARTUP_OVER_BARE))
    if (scaling := worker_scaling(measurements)) is not None:
        result.append(
            _at_least(f"cache-hit req/s, 2 workers / 1 ({database})", scaling, TWO_WORKERS_OVER_ONE)
        )
    return result


def _miss_targets(miss: Measurement, load: Load, where: str) -> list[Target]:
    ceiling = load.connections / (load.provider_latency_ms / 1000)
    return [
        _at_most(
            f"cache-miss p50 - provider latency, ms ({where})",
            miss.load.p50_ms - load.provider_latency_ms,
            MISS_P50_OVER_PROVIDER_MS,
        ),
        _at_most(f"cache-miss CPU ms per request ({where})", miss.cpu_ms_per_request, MISS_CPU_MS),
        _at_least(
            f"cache-miss req/s / {load.connections} connections / latency ({where})",
            miss.load.requests_per_second / ceiling,
            MISS_THROUGHPUT_OVER_LIMIT,
        ),
    ]


def worker_scaling(measurements: list[Measurement]) -> float | None:
    """Cache-hit req/s at two workers over one."""
    one, two = _find(measurements, CACHE_HIT, 1), _find(measurements, CACHE_HIT, 2)
    if one is None or two is None:
        return None
    return two.load.requests_per_second / one.load.requests_per_second


def ceilings(measurements: list[Measurement], cores: int) -> list[str]:
    """What the CPU measured in this run allows, for the targets that CPU bounds.

    One worker is one event loop on one core: once it is busy all the time (req/s x CPU per
    request near 1 core), its req/s is 1 / CPU per request, for bare_post and the cache hit
    alike, and their ratio is the ratio of their CPU. Workers share the machine's cores with
    wrk, Redis and the database: however the work is spread, req/s cannot pass the cores over
    the machine's CPU per request (every process's, from /proc/stat) at that load.
    """
    lines: list[str] = []
    hit, post = _find(measurements, CACHE_HIT, 1), _best(measurements, BARE_POST, 1)
    if hit is not None and post is not None:
        busy = hit.load.requests_per_second * hit.cpu_ms_per_request / 1000
        lines.append(
            f"INFO  cache hit / bare_post as their CPU allows (1 worker, busy {busy:.2f} of a "
            f"core): {post.cpu_ms_per_request:.3f} / {hit.cpu_ms_per_request:.3f} ms = "
            f"{post.cpu_ms_per_request / hit.cpu_ms_per_request:.2f}; "
            f"{HIT_THROUGHPUT_OVER_BARE_POST:g}x needs a hit within "
            f"{post.cpu_ms_per_request / HIT_THROUGHPUT_OVER_BARE_POST:.3f} ms of server CPU"
        )
    lines.extend(_hit_tail_lines(measurements))
    lines.extend(_rate_limit_lines(measurements))
    for workers in sorted({m.workers for m in measurements}):
        lines.extend(_miss_floor_lines(measurements, workers))
    for workers in sorted({m.workers for m in measurements}):
        found = _find(measurements, CACHE_HIT, workers)
        if hit is None or found is None or found.machine_cpu_ms_per_request <= 0:
            continue
        most = cores * 1000 / found.machine_cpu_ms_per_request
        busy = found.load.requests_per_second * found.machine_cpu_ms_per_request / 1000
        lines.append(
            f"INFO  cache hit, {workers} worker(s): the machine spends "
            f"{found.machine_cpu_ms_per_request:.3f} ms of CPU per hit (the server "
            f"{found.cpu_ms_per_request:.3f}; wrk, Redis, the database the rest), {busy:.2f} of "
            f"{cores} cores busy; at that cost at most {most:.0f} req/s, "
            f"{most / hit.load.requests_per_second:.2f}x one worker's"
        )
    return lines


def _hit_tail_lines(measurements: list[Measurement]) -> list[str]:
    """The hit's p99 over bare_post's, taken apart: the ratio of their medians times the ratio
    of their tails (p99 over p50). Under a saturated closed loop the medians follow the
    throughputs (Little's law), so at the hit's throughput what the p99 target leaves is a
    tail: how tight it would have to be, beside the tightest any CPU-bound path had in the run.
    """
    hit = _find(measurements, CACHE_HIT, 1)
    posts = [m.load for m in measurements if m.scenario == BARE_POST and m.workers == 1]
    if hit is None or not posts:
        return []
    post = min(posts, key=lambda load: load.p99_ms)  # the run the p99 target compares with

    def tail(load: LoadResult) -> float:
        return load.p99_ms / load.p50_ms

    bound = [m for m in measurements if m.workers == 1 and m.scenario not in MISSES]
    tightest = min(bound, key=lambda m: tail(m.load))
    needed = HIT_P99_OVER_BARE_POST * post.p99_ms / hit.load.p50_ms
    return [
        f"INFO  cache-hit p99 / bare_post p99 (1 worker) = medians x tails = "
        f"{hit.load.p50_ms / post.p50_ms:.2f} x ({tail(hit.load):.2f} / {tail(post):.2f}) = "
        f"{hit.load.p99_ms / post.p99_ms:.2f}; at this median, {HIT_P99_OVER_BARE_POST:g}x "
        f"needs the hit's p99 within {needed:.2f}x its p50; the tightest tail in this run: "
        f"{tightest.scenario} {tail(tightest.load):.2f}x"
    ]


def _rate_limit_lines(measurements: list[Measurement]) -> list[str]:
    """What a caller with a rate limit pays for it: the same hit, with a public key."""
    lines = []
    for workers in sorted({m.workers for m in measurements}):
        hit, limited = (
            _find(measurements, CACHE_HIT, workers),
            _find(measurements, LIMITED_HIT, workers),
        )
        if hit is None or limited is None:
            continue
        added = limited.cpu_ms_per_request - hit.cpu_ms_per_request
        lines.append(
            f"INFO  rate-limited hit, {workers} worker(s): {limited.cpu_ms_per_request:.3f} ms of "
            f"server CPU against the operator's {hit.cpu_ms_per_request:.3f}: the limit adds "
            f"{added:.3f} ms ({added / hit.cpu_ms_per_request:.0%}), at "
            f"{limited.load.requests_per_second / hit.load.requests_per_second:.2f}x its req/s"
        )
    return lines


def _miss_floor_lines(measurements: list[Measurement], workers: int) -> list[str]:
    """A miss's CPU beside its floor, and what is left under the target for ours.

    A miss does what a hit adds to bare_post (authentication, the cache lookup, the history row,
    the middleware) and more (the breaker, the cache write): the floor plus the hit's addition is
    a lower bound of a miss with nothing wasted.
    """
    miss, floor = _find(measurements, CACHE_MISS, workers), _find(measurements, BARE_MISS, workers)
    if miss is None or floor is None:
        return []
    miss_ms, floor_ms = miss.cpu_ms_per_request, floor.cpu_ms_per_request
    lines = [
        f"INFO  cache miss, {workers} worker(s): {miss_ms:.3f} ms of server CPU per miss; "
        f"FastAPI and one pydantic-ai model request alone (bare_miss) {floor_ms:.3f} ms, so "
        f"ours adds {miss_ms - floor_ms:.3f}, and {MISS_CPU_MS:g} ms leaves ours "
        f"{MISS_CPU_MS - floor_ms:.3f}"
    ]
    hit, post = _find(measurements, CACHE_HIT, workers), _best(measurements, BARE_POST, workers)
    if hit is not None and post is not None:
        added = hit.cpu_ms_per_request - post.cpu_ms_per_request
        bound = floor_ms + added
        verdict = "within" if bound <= MISS_CPU_MS else "over"
        lines.append(
            f"INFO  cache miss, {workers} worker(s): a hit adds {added:.3f} ms to bare_post, "
            f"all of which a miss pays too: a miss costs at least {floor_ms:.3f} + {added:.3f} = "
            f"{bound:.3f} ms here, {verdict} the {MISS_CPU_MS:g} ms target"
        )
    return lines


def _best(measurements: list[Measurement], scenario: str, workers: int) -> Measurement | None:
    """The fastest run of a scenario served twice (the bare app runs before and after ours)."""
    runs = [m for m in measurements if m.scenario == scenario and m.workers == workers]
    return max(runs, key=lambda m: m.load.requests_per_second, default=None)


def table(measurements: list[Measurement]) -> str:
    header = (
        f"{'scenario':<13}{'workers':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'x post req/s':>14}{'x post p99':>12}{'CPU ms/req':>12}{'machine':>9}{'RSS MB':>8}"
        f"{'tree MB':>9}"
        f"{'bad':>6}  check"
    )
    lines = [header, "-" * len(header)]
    for m in sorted(measurements, key=lambda m: (m.workers, SCENARIOS.index(m.scenario))):
        found = ratios(measurements, m)
        throughput = f"{found.throughput:.2f}" if found else "-"
        p99 = f"{found.p99:.2f}" if found else "-"
        lines.append(
            f"{m.scenario:<13}{m.workers:>8}{m.load.requests_per_second:>10.0f}"
            f"{m.load.p50_ms:>9.2f}{m.load.p99_ms:>9.2f}{throughput:>14}{p99:>12}"
            f"{m.cpu_ms_per_request:>12.3f}{m.machine_cpu_ms_per_request:>9.3f}"
            f"{m.peak_process_mb:>8.0f}{m.peak_tree_mb:>9.0f}"
            f"{m.unexpected_responses:>6}  {m.check}"
        )
    return "\n".join(lines)


def target_lines(found: list[Target]) -> str:
    return "\n".join(
        f"{'PASS' if t.passed else 'FAIL'}  {t.name}: {t.measured:.2f} "
        f"(target {t.comparison} {t.limit:.2f})"
        for t in found
    )


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    memory_gb: float
    kernel: str
    python: str
    wrk: str
    load_average_at_start: tuple[float, float, float]


def machine() -> Machine:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)  # noqa: S607
    return Machine(
        cpu=cpu,
        cores=os.cpu_count() or 1,
        memory_gb=round(memory_kb / 1024 / 1024, 1),
        kernel=platform.release(),
        python=platform.python_version(),
        wrk=(wrk.stdout or wrk.stderr).splitlines()[0].strip(),
        load_average_at_start=os.getloadavg(),
    )


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=_plain) + "\n")


def _plain(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    raise TypeError(f"not JSON: {value!r}")


def results(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """The measurements as JSON objects, each with its ratios to bare_post."""
    return [{**asdict(m), "ratios_to_bare_post": ratios(measurements, m)} for m in measurements]


def _ratios_of(measurements: list[Measurement], scenario: str, workers: int) -> Ratios | None:
    found = _find(measurements, scenario, workers)
    return None if found is None else ratios(measurements, found)


def _find(measurements: list[Measurement], scenario: str, workers: int) -> Measurement | None:
    return next((m for m in measurements if m.scenario == scenario and m.workers == workers), None)


def _at_least(name: str, measured: float, limit: float) -> Target:
    return Target(name, measured, ">=", limit, measured >= limit)


def _at_most(name: str, measured: float, limit: float) -> Target:
    return Target(name, measured, "<=", limit, measured <= limit)
