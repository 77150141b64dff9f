"""The floor of a cache miss in `make bench`: the yardstick app (bench/bare_model.py) answering
like our route, and bench/report.py's lines on it: what FastAPI and pydantic-ai cost alone
(bare_miss), and the bound a miss cannot go under (that floor plus what a hit adds to bare_post)."""

import pytest
from httpx import ASGITransport, AsyncClient

from bench.bare_model import create_bare_model_app
from bench.loadgen import LoadResult
from bench.report import BARE_MISS, BARE_POST, CACHE_HIT, CACHE_MISS, Measurement, ceilings


def measured(scenario: str, cpu_ms: float, workers: int = 1) -> Measurement:
    load = LoadResult(
        requests_per_second=100.0, p50_ms=5.0, p99_ms=9.0, requests=500, non_2xx=0, socket_errors=0
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


def miss_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("INFO  cache miss")]


class TestMissFloor:
    def test_floor_and_the_hits_addition_bound_a_miss_over_the_target(self):
        measurements = [
            measured(BARE_POST, 0.4),
            measured(CACHE_HIT, 1.6),
            measured(BARE_MISS, 1.75),
            measured(CACHE_MISS, 4.5),
        ]

        lines = miss_lines(ceilings(measurements, cores=2))

        assert "bare_miss) 1.750 ms, so ours adds 2.750, and 2 ms leaves ours 0.250" in lines[0]
        assert "a miss costs at least 1.750 + 1.200 = 2.950 ms here, over the 2 ms" in lines[1]

    def test_bound_within_the_target_says_so(self):
        measurements = [
            measured(BARE_POST, 0.15),
            measured(CACHE_HIT, 0.45),
            measured(BARE_MISS, 0.8),
            measured(CACHE_MISS, 2.1),
        ]

        lines = miss_lines(ceilings(measurements, cores=2))

        assert "at least 0.800 + 0.300 = 1.100 ms here, within the 2 ms target" in lines[1]

    def test_without_the_yardstick_nothing_is_claimed(self):
        measurements = [measured(BARE_POST, 0.4), measured(CACHE_MISS, 4.5)]

        assert miss_lines(ceilings(measurements, cores=2)) == []


class TestBareMissApp:
    async def test_answers_the_operations_result_computed_by_the_provider(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setenv("BENCH_PROVIDER_LATENCY_MS", "0")
        transport = ASGITransport(app=create_bare_model_app())
        body = {"operation": "sentiment", "text": "The release is fast and the team was helpful."}

        async with AsyncClient(transport=transport, base_url="http://bench") as client:
            response = await client.post("/bare/process", json=body)

        assert response.status_code == 200
        answer = response.json()
        assert (answer["operation"], answer["cached"], answer["model"]) == (
            "sentiment",
            False,
            "bench-model",
        )
        assert answer["result"]["kind"] == "sentiment"
        assert answer["result"]["sentiment"] == "positive"
