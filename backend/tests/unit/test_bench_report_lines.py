"""bench/report.py's lines beside the targets: the cache hit's p99 over bare_post's taken apart
into the ratio of their medians (which the throughputs set) and the ratio of their tails, with the
tail the target would need beside the tightest tail of the run; what a rate-limited key's hit
costs over the operator's; and a miss's CPU beside its floor (bare_miss) and the bound a miss
cannot go under (that floor plus what a hit adds to bare_post)."""

from bench.loadgen import LoadResult
from bench.report import (
    BARE_MISS,
    BARE_POST,
    BREAKER_OPEN,
    CACHE_HIT,
    CACHE_MISS,
    LIMITED_HIT,
    Measurement,
    ceilings,
)


def measured(
    scenario: str,
    p50_ms: float = 5.0,
    p99_ms: float = 9.0,
    workers: int = 1,
    cpu_ms: float = 0.3,
    requests_per_second: float = 1000.0,
) -> Measurement:
    load = LoadResult(
        requests_per_second=requests_per_second,
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        requests=5000,
        non_2xx=0,
        socket_errors=0,
    )
    return Measurement(
        scenario=scenario,
        workers=workers,
        load=load,
        peak_process_mb=100.0,
        peak_tree_mb=100.0,
        cpu_ms_per_request=cpu_ms,
        machine_cpu_ms_per_request=cpu_ms * 1.2,
        unexpected_responses=0,
        check="ok",
    )


def tail_lines(measurements: list[Measurement]) -> list[str]:
    return [line for line in ceilings(measurements, cores=2) if "cache-hit p99" in line]


class TestHitTail:
    def test_p99_ratio_is_the_medians_ratio_times_the_tails_ratio(self):
        measurements = [
            measured(BARE_POST, p50_ms=2.0, p99_ms=4.4),
            measured(CACHE_HIT, p50_ms=7.0, p99_ms=13.0),
            measured(BREAKER_OPEN, p50_ms=6.5, p99_ms=11.7),
        ]

        [line] = tail_lines(measurements)

        assert "= 3.50 x (1.86 / 2.20) = 2.95;" in line
        # 2 x 4.4 ms leaves a hit with a 7.0 ms median a p99 of 1.26 times it.
        assert "2x needs the hit's p99 within 1.26x its p50" in line
        assert "the tightest tail in this run: breaker_open 1.80x" in line

    def test_compares_with_the_bare_post_run_the_target_uses_the_lowest_p99(self):
        measurements = [
            measured(BARE_POST, p50_ms=2.0, p99_ms=6.0),
            measured(BARE_POST, p50_ms=2.5, p99_ms=5.0),
            measured(CACHE_HIT, p50_ms=5.0, p99_ms=10.0),
        ]

        [line] = tail_lines(measurements)

        assert "= 2.00 x (2.00 / 2.00) = 2.00;" in line

    def test_misses_whose_latency_is_the_providers_are_not_the_tightest_tail(self):
        measurements = [
            measured(BARE_POST, p50_ms=2.0, p99_ms=4.4),
            measured(CACHE_HIT, p50_ms=7.0, p99_ms=13.0),
            measured(CACHE_MISS, p50_ms=55.0, p99_ms=60.0),
        ]

        [line] = tail_lines(measurements)

        assert line.endswith("the tightest tail in this run: cache_hit 1.86x")

    def test_without_a_hit_nothing_is_claimed(self):
        assert tail_lines([measured(BARE_POST, p50_ms=2.0, p99_ms=4.4)]) == []


def limit_lines(measurements: list[Measurement]) -> list[str]:
    return [line for line in ceilings(measurements, cores=2) if "rate-limited hit" in line]


class TestRateLimitLine:
    def test_limited_hit_is_compared_with_the_operators_hit_per_worker_count(self):
        measurements = [
            measured(CACHE_HIT, cpu_ms=0.30, requests_per_second=3200.0),
            measured(LIMITED_HIT, cpu_ms=0.42, requests_per_second=2400.0),
            measured(CACHE_HIT, workers=2, cpu_ms=0.40, requests_per_second=4000.0),
            measured(LIMITED_HIT, workers=2, cpu_ms=0.50, requests_per_second=3600.0),
        ]

        lines = limit_lines(measurements)

        assert lines == [
            "INFO  rate-limited hit, 1 worker(s): 0.420 ms of server CPU against the operator's "
            "0.300: the limit adds 0.120 ms (40%), at 0.75x its req/s",
            "INFO  rate-limited hit, 2 worker(s): 0.500 ms of server CPU against the operator's "
            "0.400: the limit adds 0.100 ms (25%), at 0.90x its req/s",
        ]

    def test_without_the_limited_hit_nothing_is_claimed(self):
        assert limit_lines([measured(CACHE_HIT), measured(BARE_POST)]) == []


def miss_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("INFO  cache miss")]


class TestMissFloor:
    def test_floor_and_the_hits_addition_bound_a_miss_over_the_target(self):
        measurements = [
            measured(BARE_POST, cpu_ms=0.4),
            measured(CACHE_HIT, cpu_ms=1.6),
            measured(BARE_MISS, cpu_ms=1.75),
            measured(CACHE_MISS, cpu_ms=4.5),
        ]

        lines = miss_lines(ceilings(measurements, cores=2))

        assert "bare_miss) 1.750 ms, so ours adds 2.750, and 2 ms leaves ours 0.250" in lines[0]
        assert "a miss costs at least 1.750 + 1.200 = 2.950 ms here, over the 2 ms" in lines[1]

    def test_bound_within_the_target_says_so(self):
        measurements = [
            measured(BARE_POST, cpu_ms=0.15),
            measured(CACHE_HIT, cpu_ms=0.45),
            measured(BARE_MISS, cpu_ms=0.8),
            measured(CACHE_MISS, cpu_ms=2.1),
        ]

        lines = miss_lines(ceilings(measurements, cores=2))

        assert "at least 0.800 + 0.300 = 1.100 ms here, within the 2 ms target" in lines[1]

    def test_without_the_yardstick_nothing_is_claimed(self):
        measurements = [measured(BARE_POST, cpu_ms=0.4), measured(CACHE_MISS, cpu_ms=4.5)]

        assert miss_lines(ceilings(measurements, cores=2)) == []
