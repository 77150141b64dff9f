"""`make bench-faults`: a Redis that stops answering and a PostgreSQL killed, under load.

Our app (`bench.apps:create_bench_app`: every setting at its default, a model answering after
BENCH_PROVIDER_LATENCY_MS) runs under uvicorn with two workers, on a redis-server and a
PostgreSQL cluster of its own, started with the fault tests' helpers (`fakes.services`). wrk
loads it on loopback with a new text per request and a public key (`lua/tagged_post.lua`), so
every request uses Redis three ways (rate limit, cache, breaker) and writes a history row.

1. Redis frozen with SIGSTOP, then resumed: statuses, p99 against the healthy p99 plus one Redis
   timeout (BENCH_FAULTS_ROUNDS alternating healthy and frozen loads, medians compared),
   timeouts met while Redis was healthy (a timeout set too tight), and how long after SIGCONT
   each worker sends Redis a command again (MONITOR; a worker is told by its sockets).
2. PostgreSQL's postmaster killed with SIGKILL under load, then restarted: statuses, the history
   row of every request answered 200, rows of requests that were not (a commit whose answer died
   with the server), and whether the service serves again within a second of PostgreSQL
   accepting connections (a prober posts every 10 ms on fresh connections, which reach either
   worker: when was the last request it sent refused, when was its first 200).

Prints the figures and whether each promise holds; exits non-zero only when something crashed.
Knobs (environment): BENCH_FAULTS_SECONDS per load (6), BENCH_FAULTS_ROUNDS (3),
BENCH_PROVIDER_LATENCY_MS (50); app settings (REDIS_TIMEOUT_SECONDS, say) reach the servers as
they would in a deployment.
"""

import asyncio
import hashlib
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which

import asyncpg  # type: ignore[import-untyped]
import httpx
from app.core.config import Settings
from redis import Redis

from bench import procfs
from bench.loadgen import CONNECTIONS, THREADS, LoadResult, WrkMissingError, run_wrk, wrk_path
from bench.scenarios import OPERATOR_KEY, PROCESS, PUBLIC_KEY
from bench.server import REPO, Server, serve
from bench.services import migrate

# The server helpers the fault tests use; they live with the tests, not in the app.
sys.path.insert(0, str(REPO / "backend" / "tests"))
from fakes.services import (
    PostgresCluster,
    RedisServerProcess,
    frozen,
    port_no_one_else_gets,
    postgres_bindir,
)

WORKERS = 2
RESUME_AFTER = 2.0  # seconds into the last Redis load when SIGCONT is sent
BACK_ON_REDIS_WITHIN = 2.0  # the promise, seconds after SIGCONT
KILL_AFTER = 2.0  # seconds into the PostgreSQL load when the postmaster is killed
DOWN_FOR = 3.0  # seconds between the kill and the restart
SERVING_WITHIN = 1.0  # the promise, seconds after PostgreSQL accepts connections
PROBE_EVERY = 0.01


def text_of(request_id: str) -> str:
    """The text `lua/tagged_post.lua` sends under `request_id` (the prober sends the same)."""
    return f"Fault bench {request_id}: the ferry left on time and the harbour stayed calm."


def sha256(request_id: str) -> str:
    return hashlib.sha256(text_of(request_id).encode()).hexdigest()


@dataclass
class Outcomes:
    """Responses by outcome ("200", "503 database_unavailable"), and which request got which."""

    counts: Counter[str] = field(default_factory=Counter)
    answered: set[str] = field(default_factory=set)  # request ids answered 200
    refused: set[str] = field(default_factory=set)

    def add(self, request_id: str, status: int, code: str) -> None:
        self.counts["200" if status == 200 else f"{status} {code}"] += 1
        (self.answered if status == 200 else self.refused).add(request_id)

    def merge(self, other: "Outcomes") -> None:
        self.counts.update(other.counts)
        self.answered |= other.answered
        self.refused |= other.refused

    @property
    def server_errors(self) -> int:
        return sum(n for outcome, n in self.counts.items() if outcome.startswith("500"))

    def line(self) -> str:
        return ", ".join(f"{outcome} x {n}" for outcome, n in self.counts.most_common())


@dataclass
class Run:
    load: LoadResult
    outcomes: Outcomes


@dataclass
class Check:
    lines: list[str] = field(default_factory=list)
    failed: bool = False

    def promise(self, text: str, held: bool) -> None:
        self.lines.append(f"  {'PASS' if held else 'FAIL'}  {text}")
        self.failed |= not held

    def info(self, text: str) -> None:
        self.lines.append(f"        {text}")


def load(server: Server, seconds: float, run_id: str, scratch: Path) -> Run:
    """wrk for `seconds` (whole seconds), a new text per request; outcomes per request id."""
    status_file = scratch / f"{run_id}.outcomes"
    env = {
        **os.environ,
        "BENCH_RUN_ID": run_id,
        "BENCH_API_KEY": PUBLIC_KEY,
        "BENCH_STATUS_FILE": str(status_file),
    }
    result = run_wrk(server.base_url + PROCESS, round(seconds), script="tagged_post.lua", env=env)
    outcomes = Outcomes()
    for line in status_file.read_text().splitlines():
        request_id, status, code = line.split()
        outcomes.add(request_id, int(status), code)
    return Run(result, outcomes)


def redis_timeouts_logged(server: Server) -> int:
    """Outages the app's workers have logged so far: one warning each (RedisAvailability)."""
    return server.log.read_text().count("Redis unavailable")


# --- 1. Redis frozen -----------------------------------------------------------------------


async def redis_frozen(
    server: Server, redis: RedisServerProcess, seconds: float, rounds: int, scratch: Path
) -> Check:
    timeout = float(
        os.environ.get("REDIS_TIMEOUT_SECONDS")
        or Settings.model_fields["redis_timeout_seconds"].default
    )
    check = Check([f"Redis frozen under load (REDIS_TIMEOUT_SECONDS={timeout:g})"])
    assert redis.process is not None
    # Healthy and frozen loads alternate, and their p99s are compared by median: on a shared
    # machine, another tenant's burst moves one load's p99 by hundreds of milliseconds.
    runs: list[tuple[str, Run]] = []
    false_timeouts = 0
    for n in range(rounds):
        logged_before = redis_timeouts_logged(server)
        runs.append(("healthy", await asyncio.to_thread(load, server, seconds, f"h{n}", scratch)))
        false_timeouts += redis_timeouts_logged(server) - logged_before
        with frozen(redis.process):
            runs.append(
                ("frozen", await asyncio.to_thread(load, server, seconds, f"f{n}", scratch))
            )
        await asyncio.sleep(RESUME_AFTER)  # the next healthy load starts back on Redis
    with frozen(redis.process):
        # wrk keeps its connections to whichever worker took them; the prober's fresh
        # connections reach every worker, so each has Redis to go back to.
        stop_probing = asyncio.Event()
        prober = asyncio.create_task(probe(server, "resumed", stop_probing))
        resuming = asyncio.create_task(
            asyncio.to_thread(load, server, RESUME_AFTER + 4, "resumed", scratch)
        )
        await asyncio.sleep(RESUME_AFTER)
        monitor = asyncio.create_task(asyncio.to_thread(first_commands, redis.url, time.time() + 3))
        await asyncio.sleep(0.1)  # MONITOR connects; it is answered once the server resumes
        resumed_at = time.time()
    firsts = await monitor
    stop_probing.set()
    probes = await prober
    runs.append(("resumed", await resuming))
    by_worker = worker_delays(server, redis.port, firsts, resumed_at)

    outcomes = Outcomes()
    for name, run in runs:
        outcomes.merge(run.outcomes)
        check.info(
            f"{name:<8} {run.load.requests_per_second:6.0f} req/s  p50 {run.load.p50_ms:7.1f} ms"
            f"  p99 {run.load.p99_ms:7.1f} ms  {run.outcomes.line()}"
        )
    for request_id, status, code, _, _ in probes:
        outcomes.add(request_id, status, code)
    check.promise(
        f"every answer 200 (wrk and prober: {outcomes.line()})", set(outcomes.counts) == {"200"}
    )
    healthy_p99 = statistics.median(run.load.p99_ms for name, run in runs if name == "healthy")
    frozen_p99 = statistics.median(run.load.p99_ms for name, run in runs if name == "frozen")
    limit = healthy_p99 + timeout * 1000
    check.promise(
        f"frozen p99 {frozen_p99:.0f} ms ≤ healthy p99 + one timeout ({limit:.0f} ms); "
        f"medians of {rounds}",
        frozen_p99 <= limit,
    )
    check.promise(
        f"no Redis timeout while it was healthy ({false_timeouts} logged)", not false_timeouts
    )
    delays = ", ".join(f"pid {pid} +{delay * 1000:.0f} ms" for pid, delay in by_worker.items())
    # A worker that takes no request sends Redis nothing (the probe is a request's command),
    # so only those that took requests after SIGCONT can be timed.
    check.promise(
        f"on Redis again within {BACK_ON_REDIS_WITHIN:g} s of SIGCONT, each worker that took "
        f"requests ({len(by_worker)} of {WORKERS}): {delays}",
        bool(by_worker) and max(by_worker.values()) <= BACK_ON_REDIS_WITHIN,
    )
    return check


def first_commands(url: str, until: float) -> dict[int, float]:
    """The first command MONITOR shows from each client port, by the server's clock."""
    firsts: dict[int, float] = {}
    client = Redis.from_url(url, socket_timeout=10)
    try:
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]
            while (command := monitor.next_command())["time"] < until:
                if command["client_port"]:
                    firsts.setdefault(int(command["client_port"]), command["time"])
    finally:
        client.close()
    return firsts


def worker_delays(
    server: Server, redis_port: int, firsts: dict[int, float], resumed_at: float
) -> dict[int, float]:
    """Per worker pid, seconds from SIGCONT to its first command on a connection it still holds
    (the connections of timed-out commands are closed, and their queued commands replayed)."""
    delays: dict[int, float] = {}
    for port, pid in procfs.tcp_ports_to(server.process.pid, redis_port).items():
        if port in firsts:
            delays[pid] = min(delays.get(pid, float("inf")), firsts[port] - resumed_at)
    return dict(sorted(delays.items()))


# --- 2. PostgreSQL killed --------------------------------------------------------------------


async def postgres_killed(
    server: Server, cluster: PostgresCluster, seconds: float, scratch: Path
) -> Check:
    length = max(seconds, KILL_AFTER + DOWN_FOR + 3)
    check = Check(
        [
            f"PostgreSQL killed under load ({length:g} s; SIGKILL at +{KILL_AFTER:g} s, "
            f"restart {DOWN_FOR:g} s later)"
        ]
    )
    stop_probing = asyncio.Event()
    wrk = asyncio.create_task(asyncio.to_thread(load, server, length, "pg", scratch))
    prober = asyncio.create_task(probe(server, "pg", stop_probing))
    await asyncio.sleep(KILL_AFTER)
    killed_at = time.time()
    await asyncio.to_thread(cluster.kill)
    await asyncio.sleep(DOWN_FOR)
    restarting = asyncio.create_task(asyncio.to_thread(cluster.start))
    accepting_at = await first_accepted(cluster)
    await restarting
    run = await wrk
    stop_probing.set()
    probes = await prober
    rows = set(await history_hashes(cluster))

    outcomes = Outcomes()
    outcomes.merge(run.outcomes)
    for request_id, status, code, _, _ in probes:
        outcomes.add(request_id, status, code)
    after_kill = [(status, sent, done) for _, status, _, sent, done in probes if sent > killed_at]
    served_at = min((done for status, _, done in after_kill if status == 200), default=math.inf)
    last_refused = max((sent for status, sent, _ in after_kill if status != 200), default=killed_at)
    unrecorded = {i for i in outcomes.answered if sha256(i) not in rows}
    phantoms = {i for i in outcomes.refused if sha256(i) in rows}
    check.info(
        f"wrk {run.load.requests_per_second:.0f} req/s, p99 {run.load.p99_ms:.0f} ms; "
        f"wrk and prober: {outcomes.line()}"
    )
    check.info(
        f"PostgreSQL accepted connections {accepting_at - killed_at - DOWN_FOR:.2f} s after "
        f"its restart began; the prober's first 200 came {served_at - accepting_at:+.2f} s "
        "after that"
    )
    check.promise(f"no 500 ({outcomes.server_errors})", not outcomes.server_errors)
    check.promise(
        f"every 200 has its history row ({len(outcomes.answered)} answered, "
        f"{len(unrecorded)} without)",
        not unrecorded,
    )
    check.info(f"rows of requests not answered 200: {len(phantoms)}")
    refused_for = last_refused - accepting_at
    check.promise(
        f"serving again within {SERVING_WITHIN:g} s of PostgreSQL accepting connections: the "
        f"last request refused was sent {refused_for * 1000:+.0f} ms from then",
        refused_for <= SERVING_WITHIN and served_at < math.inf,
    )
    return check


async def probe(
    server: Server, run_id: str, stop: asyncio.Event
) -> list[tuple[str, int, str, float, float]]:
    """Posts a new text every PROBE_EVERY seconds on a fresh connection (so either worker may
    answer) until `stop`: (id, status, error code, sent at, answered at) each."""
    results = []
    limits = httpx.Limits(max_keepalive_connections=0)
    headers = {"X-API-Key": OPERATOR_KEY}
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30) as client:
        for n in range(sys.maxsize):
            if stop.is_set():
                break
            request_id = f"{run_id}-probe-{n}"
            sent = time.time()
            response = await client.post(
                PROCESS,
                json={"operation": "summarize", "text": text_of(request_id)},
                headers=headers,
            )
            code = "-" if response.status_code == 200 else response.json()["error"]["code"]
            results.append((request_id, response.status_code, code, sent, time.time()))
            await asyncio.sleep(PROBE_EVERY)
    return results


async def first_accepted(cluster: PostgresCluster) -> float:
    """When a connection of our own is first accepted (polled every 10 ms)."""
    dsn = cluster.url.replace("postgresql+asyncpg", "postgresql")
    while True:
        try:
            connection = await asyncpg.connect(dsn, timeout=1)
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(0.01)
            continue
        accepted = time.time()
        await connection.close()
        return accepted


async def history_hashes(cluster: PostgresCluster) -> list[str]:
    connection = await asyncpg.connect(cluster.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return [row[0] for row in await connection.fetch("SELECT text_sha256 FROM request_history")]
    finally:
        await connection.close()


# --- Orchestration -------------------------------------------------------------------------


@dataclass
class Services:
    redis: RedisServerProcess
    postgres: PostgresCluster


def start_services() -> Services:
    redis_binary, bindir = which("redis-server"), postgres_bindir()
    if redis_binary is None or bindir is None:
        raise RuntimeError(
            "needs `redis-server` and PostgreSQL's `initdb`: run scripts/install-system-deps.sh"
        )
    redis = RedisServerProcess(redis_binary, port_no_one_else_gets())
    redis.start()
    postgres = PostgresCluster.initialize(bindir, port_no_one_else_gets())
    postgres.start()
    return Services(redis, postgres)


def server_env(services: Services) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "API_KEYS": PUBLIC_KEY,
        "INTERNAL_API_KEYS": OPERATOR_KEY,
        "DATABASE_URL": services.postgres.url,
        "DATABASE_AUTO_MIGRATE": "false",  # migrated once, before the workers start
        "REDIS_URL": services.redis.url,
        # The public key's tier: high enough that no request of the load is refused.
        "RATE_LIMIT_TIERS": '{"free": 60, "pro": 1000000}',
        "BENCH_PROVIDER_LATENCY_MS": os.environ.get("BENCH_PROVIDER_LATENCY_MS", "50"),
    }


async def run(seconds: float, rounds: int) -> bool:
    services = start_services()
    try:
        env = server_env(services)
        migrate(env)
        with tempfile.TemporaryDirectory(prefix="bench-faults-") as name:
            scratch = Path(name)
            with serve(
                "bench.apps:create_bench_app",
                workers=WORKERS,
                probe_path="/v1/health",
                env=env,
                scratch=scratch,
            ) as server:
                print(f"load: wrk -t{THREADS} -c{CONNECTIONS}, uvicorn --workers {WORKERS}")
                load(server, 1, "warmup", scratch)
                checks = [
                    await redis_frozen(server, services.redis, seconds, rounds, scratch),
                    await postgres_killed(server, services.postgres, seconds, scratch),
                ]
    finally:
        services.postgres.close()
        services.redis.close()
    for check in checks:
        print("\n".join(check.lines))
    return not any(check.failed for check in checks)


def main() -> int:
    try:
        wrk_path()
    except WrkMissingError as exc:
        print(exc, file=sys.stderr)
        return 1
    seconds = float(os.environ.get("BENCH_FAULTS_SECONDS", "6"))
    rounds = int(os.environ.get("BENCH_FAULTS_ROUNDS", "3"))
    held = asyncio.run(run(seconds, rounds))
    print("every promise held" if held else "some promise did not hold (figures above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
