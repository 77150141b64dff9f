"""API → jobs → the in-memory Taskiq queue → the embedded worker → TextProcessor → database.

Without REDIS_URL the API runs jobs itself: these tests follow a job through the whole stack in
one process, with a fake provider the test holds, fails or releases on cue. The same routes with
workers as separate processes on a real Redis are in test_job_workers.py.
"""

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from app.infrastructure.ai.local_model import run_operation, user_document
from app.infrastructure.database.engine import Database
from app.main import create_app
from app.resources import Externals
from asgi_lifespan import LifespanManager
from conftest import (
    OPERATOR_KEY,
    PUBLIC_KEY,
    ClientFactory,
    DatabaseBackend,
    job_when,
    make_settings,
)
from fakes.clock import FakeClock
from fakes.providers import FakeProvider, server_error
from httpx import ASGITransport, AsyncClient
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from shared.jobs import CSV_COLUMNS, JobItemResult
from sqlalchemy import text

OPERATOR = {"X-API-Key": OPERATOR_KEY}
OTHER_KEY = "test-other-public-key"
DEADLINE_SECONDS = 20.0
POISON = "This text makes the provider refuse it, every time it is sent."


def texts(count: int) -> list[dict[str, str]]:
    return [
        {"id": f"ticket-{n}", "text": f"Ticket {n}: the night train was late again, sadly."}
        for n in range(count)
    ]


async def until(
    client: AsyncClient,
    job_id: str,
    done: Callable[[dict[str, Any]], bool],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    return await job_when(client, job_id, done, within=DEADLINE_SECONDS, headers=headers)


def finished(info: dict[str, Any]) -> bool:
    return bool(info["pending"] == 0)


async def history_of(url: str, job_id: str) -> tuple[int, int]:
    """(rows, distinct items) of the job in the request history."""
    database = Database(url)
    try:
        async with database.session() as session:
            rows, items = (
                await session.execute(
                    text(
                        "SELECT count(*), count(DISTINCT job_item) FROM request_history "
                        "WHERE job_id = :job"
                    ),
                    {"job": job_id},
                )
            ).one()
    finally:
        await database.dispose()
    return rows, items


class PoisonModel:
    """Answers like the local model, but refuses POISON with HTTP 400 (not worth a retry)."""

    def __init__(self) -> None:
        self.model = FunctionModel(self._respond, model_name="poison-aware")

    async def _respond(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        document = user_document(messages)
        if document["text"] == POISON:
            raise server_error(400)
        output = run_operation(document).model_dump(mode="json")
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, output)])


class TestJobsEmbedded:
    """Seam: POST /v1/jobs → JobService → in-memory Taskiq broker → JobRunner (embedded worker)
    → TextProcessor → history, usage and job items in the database → GET /v1/jobs/{id}(/results).

    Paths: JOB-01, JOB-04, JOB-05, JOB-06, JOB-07, JOB-08, JOB-09, JOB-10, JOB-11, JOB-12,
    JOB-15
    Real: the app from create_app in its lifespan (its embedded worker), every layer of ours,
    Taskiq's InMemoryBroker, over in-process HTTP; SQLite and PostgreSQL; the in-memory cache,
    breaker and rate limiter.
    Faked: the AI provider (FakeProvider, held, failed and released on cue; a FunctionModel that
    refuses one text); the breaker's clock.
    """

    @pytest.mark.covers("JOB-01")
    async def test_job_completes_with_every_items_result_in_order(
        self, make_client: ClientFactory, database_backend: DatabaseBackend
    ):
        """A job's items are all answered, in item order, each billed once.

        Integration scope: jobs route → job and items stored → in-memory queue → runner →
        TextProcessor → one transaction per finished batch: item, history row, usage.
        Business impact: the point of a job: every text answered, and the answers lined up with
        the caller's ids, paid for once each.
        Test strategy: an issued key submits 12 texts; poll the job until nothing is pending;
        read the results and the database.
        Success criteria: 202 with the total; completed with 12 done; each result carries its
        item's id and a sentiment result; 12 history rows naming the job, one per item; the
        key's usage counts 12 requests.
        """
        client = await make_client(database=database_backend)
        registered = await client.post(
            "/v1/auth/register", json={"email": "jobs@example.com", "display_name": "Jobs"}
        )
        issued = {"X-API-Key": registered.json()["api_key"]}

        accepted = await client.post(
            "/v1/jobs", json={"operation": "sentiment", "items": texts(12)}, headers=issued
        )
        job_id = accepted.json()["job_id"]
        info = await until(client, job_id, finished, issued)
        results = await client.get(f"/v1/jobs/{job_id}/results", headers=issued)
        account = await client.get("/v1/auth/me", headers=issued)

        assert accepted.status_code == 202
        assert accepted.json() == {"job_id": job_id, "status": "queued", "total": 12}
        assert (info["status"], info["done"], info["failed"]) == ("completed", 12, 0)
        assert info["started_at"] is not None
        assert info["finished_at"] is not None
        items = results.json()["items"]
        assert [item["id"] for item in items] == [f"ticket-{n}" for n in range(12)]
        assert {item["response"]["result"]["kind"] for item in items} == {"sentiment"}
        assert await history_of(database_backend.url, job_id) == (12, 12)
        assert account.json()["usage"]["requests"] == 12

    @pytest.mark.covers("JOB-15")
    async def test_history_names_each_job_items_job_and_position(
        self, make_client: ClientFactory, database_backend: DatabaseBackend
    ):
        """The caller's history says which job and item each row of a job's belongs to.

        Integration scope: runner → history row with job_id and job_item → GET /v1/history →
        the shared HistoryRecord contract.
        Business impact: a caller reconciling a bill or an audit with their jobs needs to
        know which of the rows were which job's items, not only that they were made.
        Test strategy: an issued key makes one request of its own, then a job of 3 texts;
        read its history.
        Success criteria: four rows: the job's three name the job and positions 0, 1 and 2;
        the request's names no job.
        """
        client = await make_client(database=database_backend)
        registered = await client.post(
            "/v1/auth/register", json={"email": "history@example.com", "display_name": "H"}
        )
        issued = {"X-API-Key": registered.json()["api_key"]}
        await client.post(
            "/v1/text/process",
            json={"operation": "sentiment", "text": "A request of its own, not a job's."},
            headers=issued,
        )

        job_id = (
            await client.post(
                "/v1/jobs", json={"operation": "sentiment", "items": texts(3)}, headers=issued
            )
        ).json()["job_id"]
        await until(client, job_id, finished, issued)
        history = (await client.get("/v1/history", headers=issued)).json()

        named = sorted(
            ((row["job_id"] or "", row["job_item"]) for row in history["items"]),
            key=lambda pair: (pair[0], -1 if pair[1] is None else pair[1]),
        )
        assert named == [("", None), (job_id, 0), (job_id, 1), (job_id, 2)]

    @pytest.mark.covers("JOB-04")
    async def test_cancel_stops_items_not_started_running_one_finishes(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """Cancelling a job stops its queued items; the one in hand finishes with its result.

        Integration scope: DELETE /v1/jobs/{id} → queued items cancelled in the database →
        the runner skips them → the running item's result still committed.
        Business impact: a caller who sent the wrong 5,000 texts stops paying for them at once.
        Test strategy: one item at a time; the provider holds the first call; cancel; release.
        Success criteria: the DELETE answers cancelled with 4 cancelled and 1 pending; once
        the held call returns, 1 done, 4 cancelled, and the provider saw exactly one call.
        """
        provider.hang()
        client = await make_client(model=provider.model, job_concurrency=1)
        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(5)})
        ).json()["job_id"]
        await asyncio.wait_for(provider.hanging.wait(), DEADLINE_SECONDS)

        cancelled = await client.delete(f"/v1/jobs/{job_id}")
        provider.release.set()
        info = await until(client, job_id, finished)

        assert cancelled.status_code == 200
        assert (cancelled.json()["status"], cancelled.json()["cancelled"]) == ("cancelled", 4)
        assert cancelled.json()["pending"] == 1
        assert (info["status"], info["done"], info["cancelled"]) == ("cancelled", 1, 4)
        assert provider.calls == 1

    @pytest.mark.covers("JOB-05")
    async def test_poison_item_fails_alone_with_its_error(self, make_client: ClientFactory):
        """An item the provider refuses fails with that error; every other item is answered.

        Integration scope: runner → TextProcessor → provider 400 (no retry) → the item's error
        stored → results.
        Business impact: one unprocessable ticket must not cost the other 4,999 their answers.
        Test strategy: five texts, the third of which the provider always refuses.
        Success criteria: the job completes with 4 done, 1 failed; the failed item is the
        third, with `provider_error` and a message; the others have results.
        """
        items = texts(5)
        items[2]["text"] = POISON
        client = await make_client(model=PoisonModel().model)

        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": items})
        ).json()["job_id"]
        info = await until(client, job_id, finished)
        results = (await client.get(f"/v1/jobs/{job_id}/results")).json()["items"]

        assert (info["status"], info["done"], info["failed"]) == ("completed", 4, 1)
        assert [item["status"] for item in results] == ["done", "done", "failed", "done", "done"]
        assert results[2]["error"]["code"] == "provider_error"
        assert results[2]["error"]["message"]
        assert results[2]["response"] is None

    @pytest.mark.covers("JOB-06")
    async def test_items_wait_while_breaker_open_then_job_completes(
        self, make_client: ClientFactory, provider: FakeProvider, clock: FakeClock
    ):
        """While the breaker is open the items wait; after recovery every one is answered.

        Integration scope: runner → TextProcessor → breaker opened by provider failures →
        CircuitOpenError → the item waits → recovery (half-open trial) → answers.
        Business impact: a provider outage of minutes must delay a job, not fail its items.
        Test strategy: the provider fails (500) until the breaker (threshold 2, no retries) is
        open; then it answers again and the breaker's clock passes the recovery time.
        Success criteria: while open, nothing failed and items are pending; after recovery,
        the job completes with every item done and none failed.
        """
        provider.fail(server_error(500))
        client = await make_client(
            model=provider.model,
            breaker_failure_threshold=2,
            breaker_recovery_seconds=30,
            ai_max_attempts=1,
        )
        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(6)})
        ).json()["job_id"]
        await self._breaker_open(client)
        during = (await client.get(f"/v1/jobs/{job_id}")).json()

        provider.succeed()
        clock.advance(31)
        info = await until(client, job_id, finished)

        assert (during["failed"], during["pending"]) == (0, 6)
        assert (info["status"], info["done"], info["failed"]) == ("completed", 6, 0)

    @staticmethod
    async def _breaker_open(client: AsyncClient) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_SECONDS
        while True:
            breakers = (await client.get("/internal/resilience/breakers", headers=OPERATOR)).json()
            if breakers["breakers"][0]["state"] == "open":
                return
            if loop.time() > deadline:
                pytest.fail(f"the breaker never opened: {breakers}")
            await asyncio.sleep(0.02)

    @pytest.mark.covers("JOB-07")
    async def test_other_key_gets_404_for_every_job_route(self, make_client: ClientFactory):
        """A job is its key's alone: another key can neither see, read, list nor cancel it.

        Integration scope: jobs routes → JobService ownership filter on every query.
        Business impact: results are the caller's data (summaries of their tickets).
        Test strategy: one key submits; another settings key tries every route.
        Success criteria: 404 `not_found` for status, results (JSON and CSV) and cancel; the
        other key's list is empty; the owner still sees the job, not cancelled.
        """
        client = await make_client(api_keys=[PUBLIC_KEY, OTHER_KEY])
        job_id = (
            await client.post("/v1/jobs", json={"operation": "sentiment", "items": texts(2)})
        ).json()["job_id"]
        other = {"X-API-Key": OTHER_KEY}

        answers = [
            await client.get(f"/v1/jobs/{job_id}", headers=other),
            await client.get(f"/v1/jobs/{job_id}/results", headers=other),
            await client.get(f"/v1/jobs/{job_id}/results?format=csv", headers=other),
            await client.delete(f"/v1/jobs/{job_id}", headers=other),
        ]
        listed = await client.get("/v1/jobs", headers=other)
        owner = await until(client, job_id, finished)

        assert [answer.status_code for answer in answers] == [404, 404, 404, 404]
        assert {answer.json()["error"]["code"] for answer in answers} == {"not_found"}
        assert listed.json()["total"] == 0
        assert owner["status"] == "completed"

    @pytest.mark.covers("JOB-08")
    async def test_api_restarted_mid_job_job_completes_each_item_once(
        self, sqlite_backend: DatabaseBackend, clock: FakeClock
    ):
        """An API stopped mid-job queues the unfinished items again once it is asked about jobs.

        Integration scope: lifespan shutdown (items in hand cancelled, left unfinished) →
        database → next start, first jobs call: unfinished items queued again → runner.
        Business impact: without Redis, a redeploy must not strand a running job.
        Test strategy: the first app's provider holds every call; stop it with items queued
        and running; start a second app on the same database with a provider that answers.
        Success criteria: the job completes under the second app with every item done, one
        history row per item.
        """
        held = FakeProvider()
        held.hang()
        settings = make_settings(sqlite_backend, job_concurrency=2)
        async with self._served(settings, held, clock) as first:
            job_id = (
                await first.post("/v1/jobs", json={"operation": "summarize", "items": texts(6)})
            ).json()["job_id"]
            await asyncio.wait_for(held.hanging.wait(), DEADLINE_SECONDS)

        async with self._served(settings, FakeProvider(), clock) as second:
            info = await until(second, job_id, finished)

        assert (info["status"], info["done"], info["failed"]) == ("completed", 6, 0)
        assert await history_of(sqlite_backend.url, job_id) == (6, 6)

    @staticmethod
    @asynccontextmanager
    async def _served(
        settings: Any, provider: FakeProvider, clock: FakeClock
    ) -> AsyncIterator[AsyncClient]:
        app = create_app(settings, Externals(ai_model=provider.model, clock=clock))
        async with (
            LifespanManager(app) as manager,
            AsyncClient(
                transport=ASGITransport(app=manager.app),
                base_url="http://testserver",
                headers={"X-API-Key": PUBLIC_KEY},
            ) as client,
        ):
            yield client

    @pytest.mark.covers("JOB-09")
    async def test_results_paged_and_downloaded_as_ndjson_and_csv(self, make_client: ClientFactory):
        """Results come a page at a time as JSON, or whole as NDJSON or CSV.

        Integration scope: results route → content negotiation (Accept, `format`) → paged
        query, or a streamed download read a chunk at a time.
        Business impact: the frontend pages through results; people download them into a
        spreadsheet or a pipeline.
        Test strategy: a finished job of 5; page 2 of size 2; NDJSON by Accept; CSV by format.
        Success criteria: the page holds items 2 and 3; NDJSON has 5 lines that parse as
        results, in order; the CSV has the documented header and a row per item, and names
        a file to save.
        """
        client = await make_client()
        job_id = (
            await client.post("/v1/jobs", json={"operation": "key_points", "items": texts(5)})
        ).json()["job_id"]
        await until(client, job_id, finished)

        page = await client.get(f"/v1/jobs/{job_id}/results", params={"page": 2, "page_size": 2})
        ndjson = await client.get(
            f"/v1/jobs/{job_id}/results", headers={"Accept": "application/x-ndjson"}
        )
        table = await client.get(f"/v1/jobs/{job_id}/results", params={"format": "csv"})

        assert [item["index"] for item in page.json()["items"]] == [2, 3]
        assert page.json()["total"] == 5
        assert ndjson.headers["content-type"].startswith("application/x-ndjson")
        lines = [
            JobItemResult.model_validate(json.loads(line)) for line in ndjson.text.splitlines()
        ]
        assert [line.index for line in lines] == [0, 1, 2, 3, 4]
        assert table.headers["content-type"].startswith("text/csv")
        assert "attachment" in table.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(table.text)))
        assert tuple(rows[0]) == CSV_COLUMNS
        assert [row[1] for row in rows[1:]] == [f"ticket-{n}" for n in range(5)]
        assert {json.loads(row[5])["kind"] for row in rows[1:]} == {"key_points"}

    @pytest.mark.covers("JOB-10")
    @pytest.mark.parametrize(
        ("body", "status", "message"),
        [
            ({"operation": "summarize", "items": texts(4)}, 422, "at most 3 items"),
            ({"operation": "summarize", "items": []}, 422, "at least 1 item"),
            ({"operation": "translate", "items": texts(1)}, 422, "'summarize'"),
            (
                {"operation": "summarize", "options": {"max_points": 2}, "items": texts(1)},
                422,
                "do not apply to 'summarize'",
            ),
            ({"operation": "qa", "items": texts(1)}, 422, "question"),
            ({"operation": "summarize", "items": [{"text": "   "}]}, 422, "no content"),
            ({"operation": "summarize", "items": [{"text": "x" * 3000}] * 3}, 413, "2048"),
        ],
        ids=["too-many", "empty", "operation", "options", "qa-question", "blank-text", "body"],
    )
    async def test_bad_job_refused_whole_with_reason(
        self, make_client: ClientFactory, body: dict[str, Any], status: int, message: str
    ):
        """A job that cannot run is refused at once, saying why, and nothing is queued.

        Integration scope: body limit (the jobs route's own) → JobRequest validation →
        JOB_MAX_ITEMS → error contract.
        Business impact: a caller learns in the answer what to fix, not from 5,000 failures.
        Test strategy: JOB_MAX_ITEMS=3, JOB_MAX_BODY_BYTES=2048; one bad body per case.
        Success criteria: the status and a message naming the problem; no job listed.
        """
        client = await make_client(job_max_items=3, job_max_body_bytes=2048)

        refused = await client.post("/v1/jobs", json=body)
        listed = await client.get("/v1/jobs")

        assert refused.status_code == status
        assert message in json.dumps(refused.json()["error"])
        assert listed.json()["total"] == 0

    @pytest.mark.covers("JOB-10")
    async def test_job_body_over_request_limit_within_job_limit_accepted(
        self, make_client: ClientFactory
    ):
        """A job's body may exceed MAX_BODY_BYTES up to JOB_MAX_BODY_BYTES; other routes not.

        Integration scope: BodySizeLimitMiddleware's per-path limit → jobs route.
        Business impact: thousands of texts do not fit the limit of one request's body.
        Test strategy: MAX_BODY_BYTES=1024; a 4 KB job and a 4 KB /v1/text/process body.
        Success criteria: the job 202; the single request 413.
        """
        client = await make_client(max_body_bytes=1024)
        items = [{"text": "A long complaint about the trams. " * 30}] * 4

        job = await client.post("/v1/jobs", json={"operation": "summarize", "items": items})
        single = await client.post(
            "/v1/text/process", json={"operation": "summarize", "text": items[0]["text"] * 4}
        )

        assert job.status_code == 202
        assert single.status_code == 413

    @pytest.mark.covers("JOB-11")
    async def test_items_over_rate_limit_wait_instead_of_failing(self, make_client: ClientFactory):
        """Items beyond the key's per-minute limit wait for it; none fails for it.

        Integration scope: runner → RateLimiter (the key's tier, the same window as the
        single endpoint) → the item waits holding its slot.
        Business impact: a 5,000-item job on a 600-a-minute tier takes ten minutes; it must
        not fail 4,400 items with 429s.
        Test strategy: a tier of 3 requests a minute; a job of 5.
        Success criteria: 3 items done, the other 2 running (waiting), none failed; the key's
        next single request is refused 429: the job and the API share one limit.
        """
        client = await make_client(
            rate_limit_tiers={"tiny": 3}, api_keys_tier="tiny", default_tier="tiny"
        )
        job_id = (
            await client.post("/v1/jobs", json={"operation": "sentiment", "items": texts(5)})
        ).json()["job_id"]

        info = await until(client, job_id, lambda info: info["done"] == 3)
        single = await client.post(
            "/v1/text/process", json={"operation": "sentiment", "text": "One more, please."}
        )
        again = (await client.get(f"/v1/jobs/{job_id}")).json()

        assert (info["failed"], info["pending"]) == (0, 2)
        assert (again["status"], again["done"], again["failed"]) == ("running", 3, 0)
        assert single.status_code == 429

    @pytest.mark.covers("JOB-12")
    async def test_operator_sees_queue_workers_and_stuck_jobs(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """/internal/jobs shows the items waiting and running, the workers, and stuck jobs.

        Integration scope: /internal/jobs → JobService.overview → job items by status, the
        queue's workers, jobs with no progress for JOB_STUCK_SECONDS.
        Business impact: the operator's first look when a customer says their job is slow.
        Test strategy: the provider holds every call; one item at a time; JOB_STUCK_SECONDS
        tiny, so the job counts as stuck; public keys are refused.
        Success criteria: broker memory, 1 running, 2 queued, the embedded worker listed, the
        job listed as stuck with 3 pending; a public key gets 403.
        """
        provider.hang()
        client = await make_client(model=provider.model, job_concurrency=1, job_stuck_seconds=0.001)
        job_id = (
            await client.post("/v1/jobs", json={"operation": "summarize", "items": texts(3)})
        ).json()["job_id"]
        await asyncio.wait_for(provider.hanging.wait(), DEADLINE_SECONDS)

        overview = await client.get("/internal/jobs", headers=OPERATOR)
        refused = await client.get("/internal/jobs")
        provider.release.set()

        body = overview.json()
        assert (body["broker"], body["running_items"], body["queued_items"]) == ("memory", 1, 2)
        assert [worker["name"] for worker in body["workers"]] == ["embedded"]
        assert [(job["job_id"], job["pending"]) for job in body["stuck"]] == [(job_id, 3)]
        assert refused.status_code == 403
