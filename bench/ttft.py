"""Time to first token: through the service (`/v1/text/stream`) next to the provider's own.

The provider streams a word every BENCH_TOKEN_INTERVAL_MS (20), the first one included, so its
own time to first token is that interval; it is measured by reading its stream directly, in this
process. Through the service, the time is from sending the request to reading the first `delta`
event, on loopback, with everything between: auth, cache lookup (a miss: every text is new),
breaker, pydantic-ai and the SSE encoding. Per worker count, BENCH_STREAMS streams (50) one at a
time, whose p50 has the target (within 10 ms of the provider's), then twice as many,
BENCH_STREAM_CONCURRENCY (10) at once, for information: there each stream's tokens compete for
the same cores, the load generator's included.
"""

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass

import httpx

from bench.apps import provider_tokens
from bench.scenarios import CALLER_KEY
from bench.server import Server

STREAM = "/v1/text/stream"
TARGET_OVERHEAD_MS = 10.0


@dataclass(frozen=True)
class Latencies:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    count: int

    @classmethod
    def of(cls, seconds: list[float]) -> "Latencies":
        cuts = statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")
        return cls(cuts[49], cuts[89], cuts[98], len(seconds))

    def line(self) -> str:
        return f"p50 {self.p50_ms:6.2f} ms  p90 {self.p90_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms"


def _document() -> dict[str, object]:
    return {"operation": "summarize", "options": {}, "question": None, "text": _text()}


def _text() -> str:
    return f"Run {uuid.uuid4().hex} started. The release is fast and reliable. Support helped."


async def _provider_once() -> float:
    started = time.perf_counter()
    async for _chunk in provider_tokens("final_result", _document()):
        return time.perf_counter() - started
    raise RuntimeError("the provider streamed nothing")


def provider_ttft(streams: int) -> Latencies:
    async def all_of_them() -> list[float]:
        return [await _provider_once() for _ in range(streams)]

    return Latencies.of(asyncio.run(all_of_them()))


async def _service_once(client: httpx.AsyncClient) -> float:
    body = {"operation": "summarize", "text": _text()}
    started = time.perf_counter()
    async with client.stream("POST", STREAM, json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {await response.aread()!r}")
        elapsed = None
        # Read to the end, as a client would: the stream completes and writes its history row.
        async for line in response.aiter_lines():
            if elapsed is None and line == "event: delta":
                elapsed = time.perf_counter() - started
    if elapsed is None:
        raise RuntimeError("the stream ended without a delta")
    return elapsed


def service_ttft(server: Server, streams: int, concurrency: int) -> Latencies:
    async def all_of_them() -> list[float]:
        slots = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        headers = {"X-API-Key": CALLER_KEY}
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=headers, limits=limits, timeout=30
        ) as client:
            for _ in range(concurrency):  # warm-up: first requests pay for imports
                await _service_once(client)

            async def one() -> float:
                async with slots:
                    return await _service_once(client)

            return list(await asyncio.gather(*(one() for _ in range(streams))))

    return Latencies.of(asyncio.run(all_of_them()))


def check(server: Server) -> str | None:
    """None if the server streams deltas, else what it answered."""
    status, raw = server.request(
        "POST",
        STREAM,
        json.dumps({"operation": "summarize", "text": _text()}),
        {"Content-Type": "application/json", "X-API-Key": CALLER_KEY},
    )
    return None if status == 200 and b"event: delta" in raw else f"{status} {raw[:200]!r}"
