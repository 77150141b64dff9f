"""Jobs across processes: the API in this process, workers as real processes running
`app.cli worker` (forked from a process that imported the app once, `preloaded`; one
test starts the command line itself), a real Redis between them (its stream the queue), a
database they all share.

What is under test is what crosses the process boundary: messages a dead worker leaves pending
are claimed by another (after JOB_REDELIVERY_SECONDS, short here), the item's state in the
database keeps a redelivered item from being done or billed twice, the breaker's state in Redis
makes every worker wait, and the API can go away and come back while workers go on.
"""

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from app.core.config import Settings
from app.infrastructure.database.engine import Database
from app.main import create_app
from app.resources import Externals
from asgi_lifespan import LifespanManager
from conftest import (
    OPERATOR_KEY,
    PUBLIC_KEY,
    TEST_KEY_HASH_SECRET,
    ClientFactory,
    DatabaseBackend,
    RedisBackend,
    job_when,
    make_settings,
)
from fakes.openai_server import OpenAICompatibleServer, openai_compatible_server
from fakes.providers import FakeProvider
from fakes.services import RedisServerProcess
from httpx import ASGITransport, AsyncClient
from preloaded import ForkedProcess, python_m
from sqlalchemy import text

OPERATOR = {"X-API-Key": OPERATOR_KEY}
REDELIVERY_SECONDS = 2
CONCURRENCY = 4
STARTUP_SECONDS = 60  # a worker importing the stack on a busy 2-core machine
DEADLINE_SECONDS = 60.0
# A test waits for its workers' start (they start together) once, then for its jobs: the
# worst case of both, and the time to stop them, rather than pytest's 60 s backstop.
TEST_TIMEOUT_SECONDS = STARTUP_SECONDS + DEADLINE_SECONDS + 30
pytestmark = pytest.mark.timeout(TEST_TIMEOUT_SECONDS)
# Workers' settings that must agree with the API's (the breaker's state is shared in Redis).
BREAKER = {"BREAKER_FAILURE_THRESHOLD": "2", "BREAKER_RECOVERY_SECONDS": "1"}
# Room for every test's items within a minute: here, waiting for the limit is not the subject.
TIERS = '{"free": 1000, "pro": 1000}'


on_real_redis = pytest.mark.parametrize("redis_backend", ["redis-server"], indirect=True)
on_sqlite = pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)


def texts(count: int) -> list[dict[str, str]]:
    return [{"id": f"review-{n}", "text": f"Review {n}: the trams ran late."} for n in range(count)]


class Workers:
    """Worker processes started by the test, each with its log; all stopped at the end.

    `start()` forks a worker from a process that imported the app once (`preloaded`:
    milliseconds instead of seconds of imports); `start(command=True)` runs the command line
    itself, `python -m app.cli worker`, as a deployment does.
    """

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.processes: list[subprocess.Popen[bytes] | ForkedProcess] = []

    def start(self, *, command: bool = False) -> subprocess.Popen[bytes] | ForkedProcess:
        log = self.folder / f"worker-{len(self.processes)}.log"
        if command:
            with log.open("wb") as output:
                process: subprocess.Popen[bytes] | ForkedProcess = subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker"],
                    cwd=self.folder,  # no developer's .env reaches it
                    env=self.env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
        else:
            process = python_m("app.cli", ["worker"], env=self.env, folder=self.folder, log=log)
        self.processes.append(process)
        return process

    def logs(self, tail: int = 2000) -> str:
        """The end of each worker's log (all of it with `tail=0`)."""
        return "\n".join(path.read_text()[-tail:] for path in sorted(self.folder.glob("*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def provider() -> Iterator[OpenAICompatibleServer]:
    """The workers' model: an OpenAI-compatible server on loopback that takes 50 ms a call."""
    with openai_compatible_server() as server:
        server.take(0.05)
        yield server


@pytest.fixture
def workers(
    tmp_path: Path,
    redis_backend: RedisBackend,
    database_backend: DatabaseBackend,
    provider: OpenAICompatibleServer,
) -> Iterator[Workers]:
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields and not name.startswith("OTEL_")
    }
    assert redis_backend.url is not None
    env = {
        **inherited,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": database_backend.url,
        "DATABASE_AUTO_MIGRATE": "false",
        "REDIS_URL": redis_backend.url,
        "API_KEYS": PUBLIC_KEY,
        "INTERNAL_API_KEYS": OPERATOR_KEY,
        "KEY_HASH_SECRET": TEST_KEY_HASH_SECRET,
        "AI_MODEL": "openai-chat:fake-llm",
        "AI_BASE_URL": provider.base_url,
        "AI_API_KEY": "provider-key-for-workers",
        "AI_MAX_ATTEMPTS": "1",
        # A call the provider holds (hold_after) is waited for as long as a test may last.
        "AI_ATTEMPT_TIMEOUT_SECONDS": str(TEST_TIMEOUT_SECONDS),
        "AI_REQUEST_DEADLINE_SECONDS": str(TEST_TIMEOUT_SECONDS),
        "AI_CHECK_INTERVAL_SECONDS": "0",
        "JOB_CONCURRENCY": str(CONCURRENCY),
        "JOB_REDELIVERY_SECONDS": str(REDELIVERY_SECONDS),
        "RATE_LIMIT_TIERS": TIERS,
        **BREAKER,
    }
    started = Workers(tmp_path, env)
    yield started
    started.stop()


@pytest.fixture
def queue_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The job queue's records in this process (the app's logging setup replaces the root
    logger's handlers, caplog's among them: its handler goes on the queue's logger itself)."""
    queue_logger = logging.getLogger("app.infrastructure.job_queue")
    queue_logger.addHandler(caplog.handler)
    yield caplog
    queue_logger.removeHandler(caplog.handler)


STREAM = "llm:jobs"  # JOB_QUEUE_NAME's default
REDIS_AWAY = "job queue: Redis does not answer"
STREAM_GONE = "is gone (Redis restarted without persistence"


async def api(make_client: ClientFactory, redis: RedisBackend, database: DatabaseBackend) -> Any:
    return await make_client(
        redis=redis,
        database=database,
        breaker_failure_threshold=int(BREAKER["BREAKER_FAILURE_THRESHOLD"]),
        breaker_recovery_seconds=float(BREAKER["BREAKER_RECOVERY_SECONDS"]),
        rate_limit_tiers=json.loads(TIERS),
    )


async def logged(workers: Workers, text: str) -> None:
    """Until a worker's log has `text`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while text not in workers.logs(tail=0):
        if loop.time() > deadline:
            pytest.fail(f"no worker logged {text!r}; logs:\n{workers.logs()}")
        await asyncio.sleep(0.02)


async def holding(provider: OpenAICompatibleServer, count: int, workers: Workers) -> None:
    """Until the provider holds `count` calls unanswered (see `hold_after`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while provider.holding < count:
        if loop.time() > deadline:
            pytest.fail(f"the provider never held {count} calls; logs:\n{workers.logs()}")
        await asyncio.sleep(0.02)


async def until(
    client: AsyncClient, job_id: str, done: Any, workers: Workers | None, headers: Any = None
) -> dict[str, Any]:
    """The job's status once `done` holds; fails past the deadline with the workers' logs."""
    return await job_when(
        client,
        job_id,
        done,
        within=DEADLINE_SECONDS,
        headers=headers,
        explain=lambda: "; worker logs:\n" + (workers.logs() if workers else "(no worker process)"),
    )


def finished(info: dict[str, Any]) -> bool:
    return bool(info["pending"] == 0)


async def query(url: str, sql: str, **params: Any) -> list[Any]:
    database = Database(url)
    try:
        async with database.session() as session:
            return list((await session.execute(text(sql), params)).all())
    finally:
        await database.dispose()


async def history_rows(url: str, job_id: str) -> list[Any]:
    """[(rows, distinct items)] of the job's history: equal counts mean no item written twice."""
    return await query(
        url,
        "SELECT count(*), count(DISTINCT job_item) FROM request_history WHERE job_id = :job",
        job=job_id,
    )


class TestJobWorkers:
    """Seam: POST /v1/jobs (this process) → Redis stream (taskiq-redis, consumer group) →
    `python -m app.cli worker` processes → TextProcessor → the shared database.

    Paths: JOB-01, JOB-02, JOB-03, JOB-06, JOB-08
    Real: worker processes forked from the preloaded app (JOB_CONCURRENCY=4,
    JOB_REDELIVERY_SECONDS=2), a real Redis
    (this test process's redis-server; the container tier too where marked), SQLite and
    PostgreSQL files and databases shared by every process, SIGKILL, the app in its lifespan
    over in-process HTTP.
    Faked: the AI provider (an OpenAI-compatible server on loopback taking 50 ms a call).
    """

    @pytest.mark.covers("JOB-01", "JOB-03")
    @pytest.mark.parametrize("redis_backend", ["redis-server", "container"], indirect=True)
    @on_sqlite
    async def test_two_workers_share_one_job_every_item_answered(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        database_backend: DatabaseBackend,
        workers: Workers,
        provider: OpenAICompatibleServer,
    ):
        """Two worker processes take items of the same job; together they answer all of it.

        Integration scope: API → Redis stream → two consumers of one group → the database.
        Business impact: throughput grows with workers only if one job spreads across them.
        Test strategy: two workers (JOB_CONCURRENCY=4) started together; submit 8 texts with
        the provider holding every call: once it holds 8, each worker has 4 in hand; release.
        Success criteria: completed with 8 done; the items name both workers; one history
        row per item.
        """
        provider.hold_after(0)
        client = await api(make_client, redis_backend, database_backend)
        workers.start()
        workers.start()

        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(8)})
        ).json()["job_id"]
        await holding(provider, 2 * CONCURRENCY, workers)
        provider.release()
        info = await until(client, job_id, finished, workers)
        by_worker = await query(
            database_backend.url,
            "SELECT worker, count(*) FROM job_items WHERE job_id = :job GROUP BY worker",
            job=job_id,
        )
        history = await history_rows(database_backend.url, job_id)

        assert (info["status"], info["done"], info["failed"]) == ("completed", 8, 0)
        assert sorted(count for _, count in by_worker) == [CONCURRENCY, CONCURRENCY]
        assert history == [(8, 8)]

    @pytest.mark.covers("JOB-02")
    @on_real_redis
    @pytest.mark.parametrize("database_backend", ["sqlite", "postgresql"], indirect=True)
    async def test_worker_killed_mid_job_every_item_done_and_billed_once(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        database_backend: DatabaseBackend,
        workers: Workers,
        provider: OpenAICompatibleServer,
    ):
        """A worker SIGKILLed mid-job loses nothing and doubles nothing.

        Integration scope: the dead worker's pending messages → XAUTOCLAIM by the new worker
        after JOB_REDELIVERY_SECONDS → item state, history row and usage in one transaction.
        Business impact: workers die (deploys, OOM, spot instances); each item must still be
        answered once and billed once.
        Test strategy: an issued key submits 24 texts to two workers (JOB_CONCURRENCY=4,
        started together); the provider answers 8 calls and holds every later one; SIGKILL
        one worker once 8 calls are held (every slot of both: the 8 items before are
        committed); release the calls.
        Success criteria: 8 done at the kill; completed with 24 done; 24 history rows, one per
        item; the key's usage is 24 requests; exactly the 4 items in the dead worker's hands
        were delivered twice.
        """
        provider.hold_after(8)
        client = await api(make_client, redis_backend, database_backend)
        issued = {
            "X-API-Key": (
                await client.post(
                    "/v1/auth/register", json={"email": "kill@example.com", "display_name": "K"}
                )
            ).json()["api_key"]
        }
        doomed, _ = workers.start(), workers.start()
        job_id = (
            await client.post(
                "/v1/jobs", json={"operation": "sentiment", "items": texts(24)}, headers=issued
            )
        ).json()["job_id"]

        await holding(provider, 2 * CONCURRENCY, workers)
        midway = (await client.get(f"/v1/jobs/{job_id}", headers=issued)).json()
        doomed.kill()  # SIGKILL: no shutdown, no acknowledgement of the items in hand
        doomed.wait()
        provider.release()
        info = await until(client, job_id, finished, workers, issued)
        history = await history_rows(database_backend.url, job_id)
        redelivered = await query(
            database_backend.url,
            "SELECT count(*) FROM job_items WHERE job_id = :job AND attempts > 1",
            job=job_id,
        )
        account = (await client.get("/v1/auth/me", headers=issued)).json()

        assert (midway["done"], midway["pending"]) == (8, 16)
        assert (info["status"], info["done"], info["failed"]) == ("completed", 24, 0)
        assert history == [(24, 24)]
        assert account["usage"]["requests"] == 24
        assert redelivered == [(CONCURRENCY,)]

    @pytest.mark.covers("JOB-02")
    @on_real_redis
    @on_sqlite
    async def test_dead_workers_items_claimed_when_nothing_new_arrives(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        database_backend: DatabaseBackend,
        workers: Workers,
        provider: OpenAICompatibleServer,
    ):
        """A dead worker's items are claimed even when the stream has nothing new to read.

        Integration scope: a consumer group's pending messages → the new worker's claim on
        every turn of its read loop (taskiq-redis 1.2.4 claimed only after reading new
        messages, so these items would have waited for the next job).
        Business impact: the last items of a job, in the hands of a worker that died, must
        not wait for somebody's next job to be finished.
        Test strategy: two workers started together; a job of 8 items, the provider holding
        every call: once it holds 8, each worker has 4 in hand and the stream nothing new;
        SIGKILL one; release the calls.
        Success criteria: the job completes with 8 done; the dead worker's 4 items delivered
        twice, the others once; one history row each.
        """
        provider.hold_after(0)
        client = await api(make_client, redis_backend, database_backend)
        doomed, _ = workers.start(), workers.start()
        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(8)})
        ).json()["job_id"]
        await holding(provider, 2 * CONCURRENCY, workers)

        doomed.kill()
        doomed.wait()
        provider.release()
        info = await until(client, job_id, finished, workers)
        attempts = await query(
            database_backend.url,
            "SELECT attempts, count(*) FROM job_items WHERE job_id = :job GROUP BY attempts",
            job=job_id,
        )
        history = await history_rows(database_backend.url, job_id)

        assert (info["status"], info["done"]) == ("completed", 8)
        assert attempts == [(1, CONCURRENCY), (2, CONCURRENCY)]
        assert history == [(8, 8)]

    @pytest.mark.covers("JOB-06")
    @on_real_redis
    @on_sqlite
    async def test_breaker_opens_mid_job_items_wait_job_completes(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        database_backend: DatabaseBackend,
        workers: Workers,
        provider: OpenAICompatibleServer,
    ):
        """The provider failing mid-job opens the shared breaker; items wait, then finish.

        Integration scope: worker → provider 500s → the breaker's state in Redis → every
        worker's items wait → the provider recovers → half-open trial → items answered.
        Business impact: a provider outage delays a job; it must not fail its items.
        Test strategy: one worker; the provider answers 4 calls and holds the next 4 (the
        worker's slots); it fails them, until the API (sharing the breaker through Redis)
        sees the breaker open; then it answers again.
        Success criteria: the breaker was open mid-job; the job completes with its 12 items
        done, none failed.
        """
        provider.hold_after(4)
        client = await api(make_client, redis_backend, database_backend)
        workers.start()
        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(12)})
        ).json()["job_id"]
        await holding(provider, CONCURRENCY, workers)

        provider.fail()
        provider.release()
        await self._breaker_state(client, "open")
        provider.answer()
        info = await until(client, job_id, finished, workers)

        assert (info["status"], info["done"], info["failed"]) == ("completed", 12, 0)

    @staticmethod
    async def _breaker_state(client: AsyncClient, state: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while True:
            breakers = (await client.get("/internal/resilience/breakers", headers=OPERATOR)).json()
            if breakers["breakers"][0]["state"] == state:
                return
            if loop.time() > deadline:
                pytest.fail(f"the breaker never became {state}: {breakers}")
            await asyncio.sleep(0.02)

    @pytest.mark.covers("JOB-08")
    @on_real_redis
    @on_sqlite
    async def test_api_restarted_while_workers_run_job_completes(
        self,
        redis_backend: RedisBackend,
        database_backend: DatabaseBackend,
        workers: Workers,
        provider: OpenAICompatibleServer,
    ):
        """The API stopped and started again mid-job: the workers go on, the job completes.

        Integration scope: API lifespan (no worker of its own with REDIS_URL) → Redis stream
        and database outlive it → a new API process's view of the same job.
        Business impact: deploying the API must not interrupt the jobs its users submitted.
        Test strategy: one worker; submit 12 texts, the provider answering 3 calls and
        holding the next 4 (the worker's slots); stop the API; release the calls; start a new
        app on the same Redis and database.
        Success criteria: 3 done when the API stops; the job completes with 12 done, seen
        through the new app.
        """
        provider.hold_after(3)
        assert redis_backend.url is not None
        settings = make_settings(database_backend, redis_url=redis_backend.url)
        async with self._served(settings) as first:
            workers.start()
            job_id = (
                await first.post("/v1/jobs", json={"operation": "summarize", "items": texts(12)})
            ).json()["job_id"]
            await holding(provider, CONCURRENCY, workers)
            midway = (await first.get(f"/v1/jobs/{job_id}")).json()

        provider.release()
        async with self._served(settings) as second:
            info = await until(second, job_id, finished, workers)

        assert midway["done"] == 3
        assert (info["status"], info["done"], info["failed"]) == ("completed", 12, 0)

    @staticmethod
    @asynccontextmanager
    async def _served(settings: Settings) -> AsyncIterator[AsyncClient]:
        app = create_app(settings, Externals())
        async with (
            LifespanManager(app) as manager,
            AsyncClient(
                transport=ASGITransport(app=manager.app),
                base_url="http://testserver",
                headers={"X-API-Key": PUBLIC_KEY},
            ) as client,
        ):
            yield client


class TestLostJobMessages:
    """Seam: job workers (`python -m app.cli worker` processes; the API's embedded worker with
    JOB_EMBEDDED_WORKER=true) → a Redis stream that lost messages (Redis restarted empty,
    flushed) or never got them all (an API that died while sending) → the stream and consumer
    group made again → the workers' sweep sending the unfinished items the stream lacks.

    Paths: JOB-13, JOB-14
    Real: worker processes (JOB-13's the command line `python -m app.cli worker`, the others
    forked from the preloaded app), a private redis-server killed and started again on its port
    (no persistence); the app in its lifespan with its embedded worker on this test process's
    redis-server, FLUSHDB, XDEL; SQLite.
    Faked: the AI provider (an OpenAI-compatible server on loopback; a FakeProvider held and
    released on cue).
    """

    @pytest.mark.covers("JOB-13")
    @on_real_redis
    @on_sqlite
    async def test_redis_restarted_empty_worker_goes_on_lost_items_sent_again(
        self,
        redis_process: RedisServerProcess,  # first: it stops after the worker
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        database_backend: DatabaseBackend,
        workers: Workers,
        provider: OpenAICompatibleServer,
    ):
        """Redis restarting without its data neither stops a worker nor loses a job's items.

        Integration scope: worker process → redis-server killed and started again empty →
        the worker's retries, the stream and its consumer group made again → the sweep sends
        the unfinished items whose messages were lost → one transaction per item.
        Business impact: a production Redis restarts every week; the jobs in flight must
        finish, and no worker may need a restart (or crash-loop) for it.
        Test strategy: one worker; submit 12 texts, the provider answering 2 calls and
        holding the next 4 (the worker's slots: 6 items wait in the stream); kill the
        redis-server; once the worker says Redis does not answer, start it again on the same
        port; release the calls; submit 4 more.
        Success criteria: the worker process runs while Redis is away and after; both jobs
        complete with every item done, one history row each; the worker said once that Redis
        did not answer, and once that the stream was gone.
        """
        provider.hold_after(2)
        own = RedisBackend("redis-server", url=redis_process.url)
        client = await api(make_client, own, database_backend)
        workers.env["REDIS_URL"] = redis_process.url
        worker = workers.start(command=True)
        before = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(12)})
        ).json()["job_id"]
        await holding(provider, CONCURRENCY, workers)

        redis_process.stop()
        await logged(workers, REDIS_AWAY)
        alive_while_away = worker.poll() is None
        redis_process.start()
        provider.release()
        after = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(4)})
        ).json()["job_id"]
        infos = [await until(client, job, finished, workers) for job in (before, after)]
        history = await query(
            database_backend.url,
            "SELECT job_id, count(*), count(DISTINCT job_item) FROM request_history "
            "GROUP BY job_id",
        )

        assert alive_while_away
        assert worker.poll() is None
        assert [(info["status"], info["done"]) for info in infos] == [
            ("completed", 12),
            ("completed", 4),
        ]
        assert sorted(history) == sorted([(before, 12, 12), (after, 4, 4)])
        assert workers.logs(tail=0).count(REDIS_AWAY) == 1
        assert workers.logs(tail=0).count(STREAM_GONE) == 1

    @pytest.mark.covers("JOB-13")
    @on_real_redis
    @on_sqlite
    async def test_embedded_worker_on_flushed_redis_job_completes(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        database_backend: DatabaseBackend,
        redis_inspector: Any,
        queue_log: pytest.LogCaptureFixture,
    ):
        """The API's own worker on Redis survives FLUSHDB: the job's lost items are sent again.

        Integration scope: POST /v1/jobs → Redis stream → the API's embedded worker
        (JOB_EMBEDDED_WORKER=true) → FLUSHDB empties Redis mid-job → the stream made again →
        the sweep sends the queued items → TextProcessor → the database.
        Business impact: an API that runs its own worker must not stop processing silently
        while it goes on accepting jobs.
        Test strategy: one item at a time; the provider holds the first call; FLUSHDB while
        it is held (the other 5 items' messages are lost); release it.
        Success criteria: the job completes with 6 done, one history row each; the worker
        said once that the stream was gone.
        """
        provider = FakeProvider()
        provider.hang()
        client = await make_client(
            redis=redis_backend,
            database=database_backend,
            model=provider.model,
            job_embedded_worker=True,
            job_concurrency=1,
            job_redelivery_seconds=REDELIVERY_SECONDS,
        )
        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(6)})
        ).json()["job_id"]
        await asyncio.wait_for(provider.hanging.wait(), DEADLINE_SECONDS)

        await redis_inspector.flushdb()
        provider.release.set()
        info = await until(client, job_id, finished, None)
        history = await history_rows(database_backend.url, job_id)

        assert (info["status"], info["done"]) == ("completed", 6)
        assert history == [(6, 6)]
        assert queue_log.text.count(STREAM_GONE) == 1

    @pytest.mark.covers("JOB-14")
    @on_real_redis
    @on_sqlite
    async def test_items_an_api_never_sent_are_sent_once_by_two_workers(
        self,
        make_client: ClientFactory,
        redis_backend: RedisBackend,
        database_backend: DatabaseBackend,
        redis_inspector: Any,
        workers: Workers,
    ):
        """The items an API stored but died before sending are sent by the workers, once.

        Integration scope: POST /v1/jobs (items stored, messages sent) → the messages of the
        items past the eighth removed from the stream → two worker processes → the sweep, by
        one worker per turn → every item processed.
        Business impact: an API killed (deploy, OOM) while sending a 10,000-item job must not
        leave the rest of it queued for ever.
        Test strategy: no worker yet; submit 8 texts; XDEL the messages of items 3 to 7, as
        an API that died after sending 3 would have left the stream; start two workers.
        Success criteria: the job completes with 8 done, one history row each; no item was
        delivered twice (the two workers did not both send them); one worker said it sent 5.
        """
        client = await api(make_client, redis_backend, database_backend)
        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(8)})
        ).json()["job_id"]
        unsent = [
            message_id
            for message_id, fields in await redis_inspector.xrange(STREAM)
            if json.loads(fields[b"data"])["args"][1] >= 3
        ]
        assert await redis_inspector.xdel(STREAM, *unsent) == 5

        workers.start()
        workers.start()
        info = await until(client, job_id, finished, workers)
        attempts = await query(
            database_backend.url,
            "SELECT max(attempts) FROM job_items WHERE job_id = :job",
            job=job_id,
        )
        history = await history_rows(database_backend.url, job_id)

        assert (info["status"], info["done"]) == ("completed", 8)
        assert attempts == [(1,)]
        assert history == [(8, 8)]
        assert workers.logs(tail=0).count("5 unfinished item(s) had no message") == 1
