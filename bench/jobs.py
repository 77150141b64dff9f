"""`make bench-jobs`: items per second of one job, at one and at two worker processes.

The provider answers after BENCH_JOB_LATENCY_MS (250); each worker runs JOB_CONCURRENCY (4)
items at once, so one worker can do at most concurrency ÷ latency items a second (16), and N
workers N times that. Each run starts its workers (`python -m bench.jobs worker`: app.worker
with that model), submits a job of distinct texts (no cache hit) through the API with an operator
key (no rate limit), and measures the job from its first item's start to its last item's end.

Targets: each run at least 80 % of its limit; two workers at least 1.8 times one.
Knobs: BENCH_JOB_LATENCY_MS, BENCH_JOB_CONCURRENCY, BENCH_JOB_SECONDS (12: items per run are
this many seconds' worth at the limit), BENCH_REDIS_URL (default redis://127.0.0.1:6379/13; a
Redis is required), BENCH_DATABASE_URL (default a fresh SQLite file).
Exits non-zero on a crash only: a missed target is reported, not raised.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.core.config import load_settings
from app.infrastructure.ai.local_model import run_operation, user_document
from app.main import create_app
from app.resources import Externals
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bench.scenarios import OPERATOR_KEY, PUBLIC_KEY
from bench.server import REPO
from bench.services import choose_redis, clear_redis, migrate

TWO_OVER_ONE = 1.8
OF_LIMIT = 0.8
STARTUP_SECONDS = 90.0


@dataclass(frozen=True)
class Run:
    workers: int
    items: int
    seconds: float
    limit: float

    @property
    def rate(self) -> float:
        return self.items / self.seconds


def slow_model(latency_seconds: float) -> FunctionModel:
    async def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(latency_seconds)
        result = run_operation(user_document(messages))
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, result.model_dump(mode="json"))]
        )

    return FunctionModel(respond, model_name="bench-jobs-model")


def worker() -> None:
    """One worker process: app.worker with the benchmark's slow model."""
    from app import worker as app_worker

    latency = float(os.environ["BENCH_JOB_LATENCY_MS"]) / 1000
    asyncio.run(app_worker.run(load_settings(), Externals(ai_model=slow_model(latency))))


def texts(count: int, run: int) -> list[dict[str, str]]:
    return [
        {"id": str(n), "text": f"Run {run}, ticket {n}: the tram to the harbour was late again."}
        for n in range(count)
    ]


def measure(workers: int, env: dict[str, str], folder: Path, seconds: float) -> Run:
    concurrency = int(env["JOB_CONCURRENCY"])
    limit = workers * concurrency / (float(env["BENCH_JOB_LATENCY_MS"]) / 1000)
    items = round(limit * seconds)
    clear_redis(env["REDIS_URL"])
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.jobs", "worker"],
            env=env,
            cwd=REPO,
            stdout=(folder / f"worker-{workers}-{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for n in range(workers)
    ]
    try:
        info = asyncio.run(_drive(env, workers, items, seconds * 10))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
    if info["done"] != items:
        raise RuntimeError(f"the job did not answer every item: {info}")
    started = datetime.fromisoformat(info["started_at"])
    finished = datetime.fromisoformat(info["finished_at"])
    return Run(workers, items, (finished - started).total_seconds(), limit)


async def _drive(env: dict[str, str], workers: int, items: int, limit_seconds: float) -> Any:
    """Through the API: wait for the workers, submit the job, follow it to its end."""
    app = create_app(load_settings(**_settings(env)), Externals())
    async with (
        LifespanManager(app) as manager,
        AsyncClient(
            transport=ASGITransport(app=manager.app),
            base_url="http://bench",
            headers={"X-API-Key": OPERATOR_KEY},
            timeout=60,
        ) as client,
    ):
        await _workers_up(client, workers)
        accepted = await client.post(
            "/v1/jobs", json={"operation": "summarize", "items": texts(items, workers)}
        )
        accepted.raise_for_status()
        return await _finished(client, accepted.json()["job_id"], limit_seconds)


def _settings(env: dict[str, str]) -> dict[str, Any]:
    return {
        "environment": "test",
        "database_url": env["DATABASE_URL"],
        "database_auto_migrate": False,
        "redis_url": env["REDIS_URL"],
        "api_keys": [PUBLIC_KEY],
        "internal_api_keys": [OPERATOR_KEY],
        "log_level": "WARNING",
        "job_max_items": 100_000,
        "job_concurrency": int(env["JOB_CONCURRENCY"]),
    }


async def _workers_up(client: AsyncClient, count: int) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while len((await client.get("/internal/jobs")).json()["workers"]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} worker(s) did not start within {STARTUP_SECONDS:g} s")
        await asyncio.sleep(0.1)


async def _finished(client: AsyncClient, job_id: str, limit_seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit_seconds
    while True:
        info: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        if info["pending"] == 0:
            return info
        if time.monotonic() > deadline:
            raise RuntimeError(f"the job did not finish within {limit_seconds:g} s: {info}")
        await asyncio.sleep(0.1)


def main() -> None:
    redis = choose_redis()
    if redis.url is None:
        sys.exit(f"bench-jobs needs a Redis for its workers: {redis.description}")
    latency_ms = os.environ.get("BENCH_JOB_LATENCY_MS", "250")
    concurrency = os.environ.get("BENCH_JOB_CONCURRENCY", "4")
    seconds = float(os.environ.get("BENCH_JOB_SECONDS", "12"))
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as folder:
        database_url = os.environ.get(
            "BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        )
        env = {
            **os.environ,
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "DATABASE_AUTO_MIGRATE": "false",
            "REDIS_URL": redis.url,
            "API_KEYS": PUBLIC_KEY,
            "INTERNAL_API_KEYS": OPERATOR_KEY,
            "LOG_LEVEL": "WARNING",
            "JOB_CONCURRENCY": concurrency,
            "BENCH_JOB_LATENCY_MS": latency_ms,
        }
        migrate(env)
        print(
            f"bench-jobs: provider {latency_ms} ms, JOB_CONCURRENCY={concurrency}, "
            f"{redis.description}, database {database_url.split('://')[0]}"
        )
        runs = [measure(n, env, Path(folder), seconds) for n in (1, 2)]
    one, two = runs
    for run in runs:
        print(
            f"  {run.workers} worker(s): {run.items} items in {run.seconds:.2f} s = "
            f"{run.rate:.2f} items/s; limit {run.limit:.0f}/s ({run.rate / run.limit:.0%})"
        )
    targets = [
        (f"1 worker ≥ {OF_LIMIT:.0%} of its limit", one.rate >= OF_LIMIT * one.limit),
        (f"2 workers ≥ {OF_LIMIT:.0%} of their limit", two.rate >= OF_LIMIT * two.limit),
        (
            f"2 workers ≥ {TWO_OVER_ONE}x 1 worker (x{two.rate / one.rate:.2f})",
            two.rate >= TWO_OVER_ONE * one.rate,
        ),
    ]
    for text, met in targets:
        print(f"  {'PASS' if met else 'FAIL'}  {text}")


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        worker()
    else:
        main()
