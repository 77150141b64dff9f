"""What is measured: the servers uvicorn runs, the paths wrk loads on each, and the one request
after each load that proves the path measured was the one intended (a cache hit really came from
the cache, the open breaker really answered circuit_open)."""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bench import report
from bench.server import Server

BARE_PATH = "/bare"  # bench.bare serves both
BARE_POST_PATH = "/bare/process"
HEALTH = "/v1/health"
PROCESS = "/v1/text/process"
PUBLIC_KEY = "bench-public-key"
OPERATOR_KEY = "bench-operator-key"
# The load is sent with the operator key: operators are never rate limited, so the limiter cannot
# cap the figures. Its own cost is measured apart (LIMITED_HIT), with the public key, whose tier
# the benchmark sets far above any rate it can reach (LIMITED_TIERS).
CALLER_KEY = OPERATOR_KEY
LIMITED_TIERS = '{"free": 60, "pro": 1000000000}'
HIT_BODY = json.dumps(
    {
        "operation": "sentiment",
        "text": "The new release is fast and reliable, and the support team was helpful.",
    }
)

Check = Callable[[Server], str | None]  # None when as expected, else what came instead


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    check: Check
    script: str | None = None  # wrk Lua script building the request; None for a plain GET
    status: int = 200  # what every response should be
    key: str = CALLER_KEY  # the X-API-Key the load sends


@dataclass(frozen=True)
class ServerSpec:
    name: str
    factory: str  # module:function for `uvicorn --factory`
    probe_path: str  # the GET timed for start-up
    scenarios: tuple[Scenario, ...]
    prepare: Callable[[Server], None] | None = None  # runs once, before the first warm-up


def _post(server: Server, body: str) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json", "X-API-Key": CALLER_KEY}
    status, raw = server.request("POST", PROCESS, body, headers)
    return status, json.loads(raw)


def _answers(path: str) -> Check:
    def check(server: Server) -> str | None:
        status, _ = server.request("GET", path)
        return None if status == 200 else f"HTTP {status}"

    return check


def _bare_post_answers(server: Server) -> str | None:
    headers = {"Content-Type": "application/json"}
    status, raw = server.request("POST", BARE_POST_PATH, HIT_BODY, headers)
    return None if status == 200 else f"HTTP {status} {raw[:200]!r}"


def _bare_miss_answers(server: Server) -> str | None:
    unique = json.dumps({"operation": "sentiment", "text": f"Check {uuid.uuid4().hex}: fine."})
    headers = {"Content-Type": "application/json"}
    status, raw = server.request("POST", BARE_POST_PATH, unique, headers)
    return None if status == 200 and not json.loads(raw)["cached"] else f"{status} {raw[:200]!r}"


def _served_from_cache(server: Server) -> str | None:
    status, body = _post(server, HIT_BODY)
    return None if status == 200 and body["cached"] else f"{status} {body}"


def _served_from_cache_and_charged(server: Server) -> str | None:
    """A hit with the public key, charged to its per-minute limit (the headers say so)."""
    headers = {"Content-Type": "application/json", "X-API-Key": PUBLIC_KEY}
    status, raw, answered = server.exchange("POST", PROCESS, HIT_BODY, headers)
    cached = status == 200 and json.loads(raw)["cached"]
    return None if cached and "x-ratelimit-remaining" in answered else f"{status} {raw[:200]!r}"


def _computed(server: Server) -> str | None:
    unique = json.dumps({"operation": "sentiment", "text": f"Check {uuid.uuid4().hex}: fine."})
    status, body = _post(server, unique)
    return None if status == 200 and not body["cached"] else f"{status} {body}"


def _circuit_open(server: Server) -> str | None:
    status, body = _post(server, HIT_BODY)
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return None if code == "circuit_open" else f"{status} {body}"


def _open_breaker(server: Server) -> None:
    """One failing provider call opens the breaker (threshold 1). An in-memory breaker is one
    per worker: each of the others opens on its first failure, during the warm-up."""
    for _ in range(10):
        if _circuit_open(server) is None:
            return
    raise RuntimeError("the breaker did not open")


BARE_SERVER = ServerSpec(
    "bare",
    "bench.bare:create_bare_app",
    BARE_PATH,
    (
        Scenario(report.BARE, BARE_PATH, _answers(BARE_PATH)),
        Scenario(report.BARE_POST, BARE_POST_PATH, _bare_post_answers, "post.lua"),
    ),
)
BARE_MODEL_SERVER = ServerSpec(
    "bare_model",
    "bench.bare_model:create_bare_model_app",
    BARE_PATH,
    (Scenario(report.BARE_MISS, BARE_POST_PATH, _bare_miss_answers, "unique_post.lua"),),
)
OUR_SERVERS = (
    ServerSpec(
        "app",
        "bench.apps:create_bench_app",
        HEALTH,
        (
            Scenario(report.HEALTH, HEALTH, _answers(HEALTH)),
            Scenario(report.CACHE_HIT, PROCESS, _served_from_cache, "post.lua"),
            Scenario(
                report.LIMITED_HIT,
                PROCESS,
                _served_from_cache_and_charged,
                "post.lua",
                key=PUBLIC_KEY,
            ),
            Scenario(report.CACHE_MISS, PROCESS, _computed, "unique_post.lua"),
        ),
    ),
    ServerSpec(
        "breaker_open",
        "bench.apps:create_breaker_open_app",
        HEALTH,
        (Scenario(report.BREAKER_OPEN, PROCESS, _circuit_open, "post.lua", status=503),),
        prepare=_open_breaker,
    ),
)
