"""bench/run.py's measurement in turns: slices of one scenario added up into one measurement.

`make bench` loads the cache hit and the open breaker in turns, a slice of each at a time; what a
slice measured must add up as one run of the whole duration would have.
"""

from bench.loadgen import LoadResult
from bench.procfs import Usage
from bench.run import _added_up


def load(requests: int, seconds: float, p50: float, p99: float, non_2xx: int = 0) -> LoadResult:
    return LoadResult(
        requests_per_second=requests / seconds,
        p50_ms=p50,
        p99_ms=p99,
        requests=requests,
        non_2xx=non_2xx,
        socket_errors=0,
    )


class TestSlicesAddedUp:
    def test_requests_and_cpu_summed_rate_over_the_whole_time(self):
        slices = [
            (load(2000, 1.0, 9.0, 15.0), Usage(cpu_seconds=1.0, machine_cpu_seconds=1.1)),
            (
                load(1000, 2.0, 12.0, 30.0, non_2xx=3),
                Usage(cpu_seconds=0.6, machine_cpu_seconds=0.7),
            ),
            (load(1500, 1.0, 10.0, 18.0), Usage(cpu_seconds=0.8, machine_cpu_seconds=0.9)),
        ]

        result, usage = _added_up(slices)

        assert (result.requests, result.non_2xx) == (4500, 3)
        assert result.requests_per_second == 1125.0  # 4,500 in 4 s; the rates' mean is 1,333
        assert (result.p50_ms, result.p99_ms) == (10.0, 18.0)  # the median slice's, each
        assert (round(usage.cpu_seconds, 6), round(usage.machine_cpu_seconds, 6)) == (2.4, 2.7)

    def test_peak_memory_is_the_largest_of_the_slices(self):
        slices = [
            (load(100, 1.0, 1.0, 2.0), Usage(peak_tree_mb=300.0, peak_process_mb=150.0)),
            (load(100, 1.0, 1.0, 2.0), Usage(peak_tree_mb=280.0, peak_process_mb=160.0)),
        ]

        _, usage = _added_up(slices)

        assert (usage.peak_tree_mb, usage.peak_process_mb) == (300.0, 160.0)
