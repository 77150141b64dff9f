"""API → text stream (server-sent events) → cache, breaker, retries, provider stream, history.

The app runs under a real uvicorn on loopback (fakes.live_server), so events arrive as they are
sent and a client that leaves is a closed TCP connection, as in production. Each provider test
runs twice: on the fake model in-process, and on the OpenAI-compatible server over real HTTP
streaming Chat Completions chunks (fakes.openai_server), whose own counters are the provider's
side of the story: requests that reached it, streams whose client went away.
"""

import asyncio
import inspect
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from app.infrastructure.ai.local_model import tool_call_chunks
from app.main import create_app
from app.resources import Externals
from conftest import OPERATOR_KEY, PUBLIC_KEY, DatabaseBackend, RedisBackend, make_settings
from fakes.clock import FakeClock
from fakes.live_server import served, served_client
from fakes.openai_server import openai_compatible_server
from fakes.providers import FakeProvider, RecordingSleep
from httpx_sse import aconnect_sse
from pydantic_ai import models
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

TEXT = (
    "The city council approved the new cycling plan on Tuesday. Twelve kilometres of protected "
    "lanes will be built by next summer. Shop owners worried about parking, but the council "
    "promised two new car parks."
)
SUMMARIZE = {"operation": "summarize", "text": TEXT}
OPERATOR = {"X-API-Key": OPERATOR_KEY}
NO_CACHE = {"Cache-Control": "no-cache"}
# How long the provider's side may take to see a client leave; the path is a disconnect, a
# cancellation and a closed socket, milliseconds in practice; the issue asks for under a second.
DISCONNECT_DEADLINE = 1.0
WRITE_DEADLINE = 5.0


# --- the provider behind the stream: the fake model, or the loopback server -------------------


@dataclass
class Upstream:
    """One provider for the stream tests, driven the same way whichever it is."""

    name: str
    model: Model | None
    settings: dict[str, Any]
    calls: Callable[[], int]
    abandoned: Callable[[], int]
    cut_after: Callable[[int], None]
    pause_after: Callable[[int], None]
    fail: Callable[[], None]  # every request fails before its first token, with a 500
    succeed: Callable[[], None]


@pytest.fixture(params=["fake-model", "openai-http"])
def upstream(
    request: pytest.FixtureRequest, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Upstream]:
    if request.param == "fake-model":
        yield Upstream(
            "fake-model",
            provider.model,
            {},
            calls=lambda: provider.calls,
            abandoned=lambda: provider.abandoned,
            cut_after=provider.cut_after,
            pause_after=provider.pause_after,
            fail=provider.fail,
            succeed=provider.succeed,
        )
        return
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)  # to the loopback server only
    with openai_compatible_server() as server:
        yield Upstream(
            "openai-http",
            None,
            {"ai_model": "openai-chat:fake-llm", "ai_base_url": server.base_url},
            calls=lambda: server.requests,
            abandoned=lambda: server.abandoned,
            cut_after=server.cut_after,
            pause_after=server.pause_after,
            fail=server.fail,
            succeed=server.answer,
        )


# --- the app, served -----------------------------------------------------------------------------

StreamClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_stream_client(
    sqlite_backend: DatabaseBackend, clock: FakeClock, sleep: RecordingSleep
) -> AsyncIterator[StreamClientFactory]:
    """As conftest's `make_client`, but the app is served by uvicorn and the client talks TCP."""
    async with AsyncExitStack() as stack:

        async def factory(
            *,
            upstream: Upstream | None = None,
            model: Model | None = None,
            redis: RedisBackend | None = None,
            database: DatabaseBackend | None = None,
            **overrides: Any,
        ) -> httpx.AsyncClient:
            redis_client = redis.wire(stack, overrides) if redis is not None else None
            if upstream is not None:
                overrides = {**upstream.settings, **overrides}
            overrides.setdefault("local_stream_delay_seconds", 0.0)
            settings = make_settings(database or sqlite_backend, **overrides)
            if upstream is not None:
                model = upstream.model
            externals = Externals(redis=redis_client, ai_model=model, clock=clock, sleep=sleep)
            url = await stack.enter_async_context(served(create_app(settings, externals)))
            return await stack.enter_async_context(
                served_client(url, headers={"X-API-Key": PUBLIC_KEY}, timeout=10)
            )

        yield factory


# --- reading a stream ----------------------------------------------------------------------------


@dataclass
class Streamed:
    """A whole response of /v1/text/stream: its events, or the JSON error it was instead."""

    status: int
    headers: httpx.Headers
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error_body: dict[str, Any] | None = None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def data(self, name: str) -> dict[str, Any]:
        (data,) = [data for event, data in self.events if event == name]
        return data

    @property
    def text(self) -> str:
        return "".join(data["text"] for name, data in self.events if name == "delta")


async def stream(
    client: httpx.AsyncClient, body: dict[str, Any] = SUMMARIZE, **headers: str
) -> Streamed:
    async with aconnect_sse(client, "POST", "/v1/text/stream", json=body, headers=headers) as sse:
        response = sse.response
        if response.status_code != 200:
            await response.aread()
            return Streamed(response.status_code, response.headers, error_body=response.json())
        events = [(event.event, event.json()) async for event in sse.aiter_sse()]
        return Streamed(response.status_code, response.headers, events)


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float) -> None:
    """Poll `check` until it holds; fail once `within` seconds have passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _holds(check()):
        assert loop.time() < deadline, f"not true within {within:g} s"
        await asyncio.sleep(0.01)


async def _holds(result: bool | Awaitable[bool]) -> bool:
    return await result if inspect.isawaitable(result) else result


async def history(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await client.get("/v1/history")
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def breaker_state(client: httpx.AsyncClient) -> str:
    response = await client.get("/internal/resilience/breakers", headers=OPERATOR)
    (view,) = response.json()["breakers"]
    state: str = view["state"]
    return state


# --- the tests -----------------------------------------------------------------------------------


class TestStreamEvents:
    """Seam: POST /v1/text/stream → TextProcessor.stream → provider stream → server-sent events.

    Paths: STREAM-01
    Real: the app from create_app served by a real uvicorn on loopback (fakes.live_server),
    every layer of ours, over TCP; sse-starlette; SQLite; the local model's own stream.
    Faked: the AI provider (FakeProvider's stream, or an OpenAI-compatible server on loopback
    streaming Chat Completions chunks over real HTTP).
    """

    @pytest.mark.covers("STREAM-01")
    async def test_stream_sends_meta_then_deltas_then_done_equal_to_process(
        self, make_stream_client: StreamClientFactory, upstream: Upstream
    ):
        """A summary arrives as `meta`, word-sized `delta`s, and a `done` equal to /process.

        Integration scope: route, service, breaker, retries, pydantic-ai's stream of the
        provider (in-process fake, or Chat Completions chunks over loopback HTTP), sse-starlette.
        Business impact: clients render text as it is written and keep `done` as the record;
        if `done` differed from /process, the two endpoints would disagree on one question.
        Test strategy: stream a summary, then ask /process for the same text with no-cache (the
        provider answers again, deterministically).
        Success criteria: events in order meta, several deltas, done; the deltas spell the
        summary; done's result and model equal /process's; time to first token reported.
        """
        client = await make_stream_client(upstream=upstream)

        streamed = await stream(client)
        processed = (await client.post("/v1/text/process", json=SUMMARIZE, headers=NO_CACHE)).json()

        assert streamed.status == 200
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert streamed.names[0] == "meta"
        assert streamed.names[-1] == "done"
        assert streamed.names.count("delta") >= 5
        assert set(streamed.names[1:-1]) == {"delta"}
        meta, done = streamed.data("meta"), streamed.data("done")
        assert meta == {
            "operation": "summarize",
            "model": processed["model"],
            "cached": False,
            "degraded": False,
        }
        assert streamed.text == done["result"]["summary"]
        assert done["result"] == processed["result"]
        assert done["model"] == processed["model"]
        assert 0 < done["time_to_first_token_ms"] <= done["processing_time_ms"]
        assert upstream.calls() == 2

    @pytest.mark.covers("STREAM-01")
    @pytest.mark.parametrize("operation", ["sentiment", "key_points", "questions", "qa"])
    async def test_every_operation_streams_to_the_result_of_process(
        self, make_stream_client: StreamClientFactory, upstream: Upstream, operation: str
    ):
        """Every operation ends in the result /process gives; prose ones come as deltas.

        Integration scope: each operation's output tool streamed by the provider and validated
        by pydantic-ai at the end, on both providers.
        Business impact: one streaming endpoint serves every operation a client offers.
        Test strategy: stream each operation, then /process it with no-cache.
        Success criteria: done equals /process; `qa` sends deltas spelling the answer, the
        structured operations (a label, lists) send none (documented: only useful whole).
        """
        client = await make_stream_client(upstream=upstream)
        body = {"operation": operation, "text": TEXT}
        if operation == "qa":
            body["question"] = "What did the council approve?"

        streamed = await stream(client, body)
        processed = (await client.post("/v1/text/process", json=body, headers=NO_CACHE)).json()

        assert streamed.data("done")["result"] == processed["result"]
        if operation == "qa":
            assert streamed.text == processed["result"]["answer"]
            assert streamed.names.count("delta") >= 2
        else:
            assert streamed.names == ["meta", "done"]

    @pytest.mark.covers("STREAM-01")
    async def test_local_model_streams_word_by_word_to_its_unstreamed_result(
        self, make_stream_client: StreamClientFactory
    ):
        """The offline default streams too, and ends where its unstreamed answer is.

        Integration scope: the `local` model's stream function, with its development delay,
        through the whole app; a body posted as curl -d posts it (form content type).
        Business impact: a fresh clone shows streaming with no key and no network, and
        `curl -d` works as the README shows it.
        Test strategy: stream a summary from the local model (5 ms between words), posting the
        JSON with curl's default Content-Type; then /process with no-cache.
        Success criteria: one delta per word of the summary; done's result equals /process's.
        """
        client = await make_stream_client(local_stream_delay_seconds=0.005)
        form = {"Content-Type": "application/x-www-form-urlencoded"}

        async with aconnect_sse(
            client, "POST", "/v1/text/stream", content=json.dumps(SUMMARIZE), headers=form
        ) as sse:
            events = [(event.event, event.json()) async for event in sse.aiter_sse()]
        streamed = Streamed(200, httpx.Headers(), events)
        processed = (await client.post("/v1/text/process", json=SUMMARIZE, headers=NO_CACHE)).json()

        summary = processed["result"]["summary"]
        assert streamed.data("done")["result"] == processed["result"]
        assert [data["text"] for name, data in events if name == "delta"] == [
            word + " " for word in summary.split()[:-1]
        ] + [summary.split()[-1]]


class TestStreamCache:
    """Seam: POST /v1/text/stream → ResponseCache (LRU → Redis) → provider stream.

    Paths: STREAM-02, STREAM-03, STREAM-05
    Real: the app served by a real uvicorn on loopback, over TCP; the cache on every Redis tier
    (fakeredis, redis-server, container); SQLite.
    Faked: the AI provider (FakeProvider, or the loopback OpenAI-compatible server), told to
    break a stream off.
    """

    @pytest.mark.covers("STREAM-02")
    async def test_completed_stream_is_cached_and_a_hit_streams_at_once(
        self,
        make_stream_client: StreamClientFactory,
        upstream: Upstream,
        redis_backend: RedisBackend,
    ):
        """A completed stream is cached as its result; the next one is served from the cache.

        Integration scope: the stream's cache write and read through ResponseCache on each
        Redis tier; a second app instance over the same Redis.
        Business impact: a repeated question costs no provider call, streamed or not.
        Test strategy: stream a summary on one app; stream it again and /process it on another
        app sharing the Redis.
        Success criteria: one provider call; the hit is meta (cached), one delta with the whole
        text, done (cached) with the same result; /process answers cached with it too.
        """
        first = await make_stream_client(upstream=upstream, redis=redis_backend)
        other = await make_stream_client(upstream=upstream, redis=redis_backend)

        fresh = await stream(first)
        hit = await stream(other)
        processed = (await other.post("/v1/text/process", json=SUMMARIZE)).json()

        assert upstream.calls() == 1
        assert hit.names == ["meta", "delta", "done"]
        assert hit.data("meta")["cached"] is True
        assert hit.text == fresh.text
        assert hit.data("done")["cached"] is True
        assert hit.data("done")["result"] == fresh.data("done")["result"]
        assert processed["cached"] is True
        assert processed["result"] == fresh.data("done")["result"]

    @pytest.mark.covers("STREAM-03")
    async def test_stream_cut_by_the_provider_is_not_cached(
        self,
        make_stream_client: StreamClientFactory,
        upstream: Upstream,
        redis_backend: RedisBackend,
    ):
        """A stream the provider broke off after its first tokens leaves nothing in the cache.

        Integration scope: a provider failing mid-stream (the fake raising a 500 after three
        chunks; the server dropping the connection without `[DONE]`), the service's cache write.
        Business impact: a cached half answer would be served as whole to everyone after.
        Test strategy: cut the stream after three chunks, then let the provider heal and ask
        again.
        Success criteria: the first stream ends with `error` after its deltas; the second one
        reaches the provider (a miss) and completes; Redis then holds one entry.
        """
        client = await make_stream_client(upstream=upstream, redis=redis_backend, ai_max_attempts=1)
        upstream.cut_after(3)

        cut = await stream(client)
        upstream.succeed()
        again = await stream(client)

        assert cut.names[0] == "meta"
        assert "delta" in cut.names
        assert cut.names[-1] == "error"
        assert again.data("meta")["cached"] is False
        assert again.names[-1] == "done"
        assert upstream.calls() == 2
        stats = (await client.get("/internal/cache/stats", headers=OPERATOR)).json()
        assert stats["key_count"] == 1

    @pytest.mark.covers("STREAM-03", "STREAM-05")
    async def test_stream_its_client_leaves_is_not_cached(
        self,
        make_stream_client: StreamClientFactory,
        upstream: Upstream,
        redis_backend: RedisBackend,
    ):
        """A client that leaves mid-stream leaves no answer in the cache.

        Integration scope: client disconnect over TCP → sse-starlette → cancelled provider
        stream → no cache write, on each Redis tier.
        Business impact: an answer nobody finished reading is not an answer to reuse.
        Test strategy: the provider goes silent after three chunks; read two deltas and close
        the connection; wait until the provider has seen the client leave; ask again.
        Success criteria: the provider sees the disconnect; the next stream is a miss that
        reaches the provider again.
        """
        client = await make_stream_client(upstream=upstream, redis=redis_backend)
        upstream.pause_after(3)

        await read_then_leave(client, deltas=2)
        await eventually(lambda: upstream.abandoned() == 1, DISCONNECT_DEADLINE)
        upstream.succeed()
        again = await stream(client)

        assert again.data("meta")["cached"] is False
        assert upstream.calls() == 2


async def read_then_leave(client: httpx.AsyncClient, *, deltas: int) -> list[str]:
    """Open a stream, read its meta and `deltas` deltas, then close the connection."""
    names: list[str] = []
    async with aconnect_sse(client, "POST", "/v1/text/stream", json=SUMMARIZE) as sse:
        async for event in sse.aiter_sse():
            names.append(event.event)
            if names.count("delta") == deltas:
                break
    return names


class TestStreamResilience:
    """Seam: POST /v1/text/stream → CircuitBreaker → retries → provider stream.

    Paths: STREAM-04, STREAM-08
    Real: the app served by a real uvicorn on loopback, over TCP; tenacity; the breaker in
    memory; the stale answer on every Redis tier; SQLite.
    Faked: the AI provider (FakeProvider, or the loopback OpenAI-compatible server) failing on
    command; time (FakeClock); the backoff (RecordingSleep).
    """

    @pytest.mark.covers("STREAM-04")
    async def test_failure_after_the_first_token_ends_the_stream_and_opens_the_breaker(
        self, make_stream_client: StreamClientFactory, upstream: Upstream
    ):
        """A provider failing mid-stream is not retried, and counts as a breaker failure.

        Integration scope: the breaker call spanning the whole stream, the retry policy
        (three attempts allowed), the provider cut after three chunks.
        Business impact: retrying after tokens were shown would repeat them; not counting the
        failure would keep a broken provider in use.
        Test strategy: threshold 1; cut the stream after three chunks; stream another text.
        Success criteria: one provider request for the cut stream, which ends with `error`;
        the breaker is open; the next stream is a JSON 503 `circuit_open` with Retry-After,
        before any event, and reaches no provider.
        """
        client = await make_stream_client(
            upstream=upstream, ai_max_attempts=3, breaker_failure_threshold=1
        )
        upstream.cut_after(3)

        cut = await stream(client)
        refused = await stream(client, {"operation": "summarize", "text": "Another text."})

        assert cut.names[-1] == "error"
        assert upstream.calls() == 1
        assert await breaker_state(client) == "open"
        assert refused.status == 503
        assert refused.error_body is not None
        assert refused.error_body["error"]["code"] == "circuit_open"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.error_body["error"]["details"]["retry_after_ms"] > 0
        assert upstream.calls() == 1

    @pytest.mark.covers("STREAM-04")
    async def test_failures_before_the_first_token_are_retried_as_one_breaker_failure(
        self, make_stream_client: StreamClientFactory, upstream: Upstream
    ):
        """Before its first token a stream is retried like /process, and fails as one call.

        Integration scope: tenacity around opening the provider stream, the breaker counting
        the exhausted attempts once.
        Business impact: a blip before the answer starts is absorbed as it is for /process.
        Test strategy: every request fails with a 500; three attempts; threshold 2.
        Success criteria: three provider requests; meta then `error` `provider_error`; the
        breaker counts one failure and stays closed.
        """
        client = await make_stream_client(
            upstream=upstream, ai_max_attempts=3, breaker_failure_threshold=2
        )
        upstream.fail()

        failed = await stream(client)

        assert failed.names == ["meta", "error"]
        assert failed.data("error")["error"]["code"] == "provider_error"
        assert upstream.calls() == 3
        breakers = (await client.get("/internal/resilience/breakers", headers=OPERATOR)).json()
        assert breakers["breakers"][0]["failure_count"] == 1
        assert breakers["breakers"][0]["state"] == "closed"

    @pytest.mark.covers("STREAM-04")
    async def test_open_breaker_streams_a_stale_answer_as_degraded(
        self,
        make_stream_client: StreamClientFactory,
        upstream: Upstream,
        redis_backend: RedisBackend,
        clock: FakeClock,
    ):
        """While the breaker is open, an expired answer within the grace is streamed degraded.

        Integration scope: breaker open → stale cache entry on each Redis tier → a stream
        flagged degraded; the history row.
        Business impact: a streaming client gets yesterday's answer, marked, not an error.
        Test strategy: stream a summary; let its TTL pass (fake clock); open the breaker with
        a failing stream of another text; stream the summary again.
        Success criteria: meta and done say cached and degraded, the delta carries the whole
        text, no provider call is made for it.
        """
        client = await make_stream_client(
            upstream=upstream,
            redis=redis_backend,
            ai_max_attempts=1,
            breaker_failure_threshold=1,
            cache_ttl_seconds={"summarize": 60},
        )
        fresh = await stream(client)
        clock.advance(61)
        upstream.fail()
        await stream(client, {"operation": "summarize", "text": "Another text."})
        calls = upstream.calls()

        degraded = await stream(client)

        assert degraded.names == ["meta", "delta", "done"]
        assert degraded.data("meta")["degraded"] is True
        assert degraded.data("meta")["cached"] is True
        assert degraded.text == fresh.text
        assert degraded.data("done")["degraded"] is True
        assert upstream.calls() == calls
        (row, *_) = await history(client)
        assert (row["outcome"], row["degraded"], row["streamed"]) == ("completed", True, True)

    @pytest.mark.covers("STREAM-08")
    async def test_error_event_carries_the_json_error_of_process(
        self, make_stream_client: StreamClientFactory, upstream: Upstream
    ):
        """The `error` event's data is the body /process answers with for the same failure.

        Integration scope: the error mapping of app.api.errors reused for the event.
        Business impact: clients handle one error shape, streamed or not.
        Test strategy: the provider fails every request; stream, then /process.
        Success criteria: same code, message and details; the status /process gives is 502.
        """
        client = await make_stream_client(upstream=upstream, ai_max_attempts=1)
        upstream.fail()

        streamed = await stream(client)
        processed = await client.post("/v1/text/process", json=SUMMARIZE)

        event = streamed.data("error")["error"]
        body = processed.json()["error"]
        assert processed.status_code == 502
        assert (event["code"], event["message"], event["details"]) == (
            body["code"],
            body["message"],
            body["details"],
        )
        assert event["request_id"]

    @pytest.mark.covers("STREAM-08")
    async def test_streamed_output_that_does_not_validate_ends_with_error_not_cached(
        self, make_stream_client: StreamClientFactory
    ):
        """A model whose streamed output does not fit the result type ends the stream in error.

        Integration scope: the provider's own validation of a streamed tool call (it asks the
        model directly, not through an agent) → the error mapping → the `error` event, the
        history row and the cache.
        Business impact: an answer that does not fit its contract must never reach a client
        as `done`, nor be cached and served to the next caller.
        Test strategy: a model whose summary tool call lacks the summary, streamed and not;
        stream it twice, then ask /process.
        Success criteria: each stream ends with `error` coded as /process's 502 is
        (`invalid_provider_output`), no `done`; the second stream asks the model again (nothing
        was cached); the history rows carry that code.
        """
        calls = 0
        arguments = {"kind": "summary"}  # the required `summary` is missing

        async def answer(_messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            nonlocal calls
            calls += 1
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, arguments)])

        async def chunks(
            _messages: list[ModelMessage], info: AgentInfo
        ) -> AsyncIterator[DeltaToolCalls]:
            nonlocal calls
            calls += 1
            for chunk in tool_call_chunks(info.output_tools[0].name, arguments):
                yield chunk

        client = await make_stream_client(
            model=FunctionModel(answer, stream_function=chunks), ai_max_attempts=1
        )

        first = await stream(client)
        second = await stream(client)
        processed = await client.post("/v1/text/process", json=SUMMARIZE)

        assert first.names[-1] == second.names[-1] == "error"
        assert "done" not in first.names + second.names
        assert processed.status_code == 502
        assert (
            first.data("error")["error"]["code"]
            == processed.json()["error"]["code"]
            == "invalid_provider_output"
        )
        assert calls == 1 + 1 + 2  # two streams, then /process and its one retry
        outcomes = [row["outcome"] for row in await history(client) if row["streamed"]]
        assert outcomes == ["invalid_provider_output"] * 2


class TestStreamDisconnect:
    """Seam: client → TCP → uvicorn → sse-starlette → cancelled provider stream → history.

    Paths: STREAM-05, STREAM-06, STREAM-08
    Real: the app served by a real uvicorn on loopback, over TCP: a client that leaves closes a
    real connection; sse-starlette's heartbeats and send timeout; SQLite.
    Faked: the AI provider (FakeProvider, or the loopback OpenAI-compatible server) pausing
    mid-answer and telling when its caller left.
    """

    @pytest.mark.covers("STREAM-05", "STREAM-06")
    async def test_client_leaving_mid_stream_cancels_the_provider_call(
        self, make_stream_client: StreamClientFactory, upstream: Upstream
    ):
        """A client that closes the connection mid-stream stops the provider within a second.

        Integration scope: TCP close → uvicorn's http.disconnect → sse-starlette's cancel →
        pydantic-ai closing the provider stream (the HTTP response, for the server) → history.
        Business impact: tokens nobody reads are not paid for; the history says what happened.
        Test strategy: the provider goes silent after four chunks; read two deltas and close;
        poll the provider's side and the history, each with a deadline.
        Success criteria: the provider sees its stream abandoned within a second; the history
        row says `cancelled`, streamed, with a time to first token; the breaker counts nothing.
        """
        client = await make_stream_client(upstream=upstream)
        upstream.pause_after(4)

        names = await read_then_leave(client, deltas=2)

        assert names == ["meta", "delta", "delta"]
        await eventually(lambda: upstream.abandoned() == 1, DISCONNECT_DEADLINE)

        async def row_written() -> bool:
            return len(await history(client)) == 1

        await eventually(row_written, WRITE_DEADLINE)
        (row,) = await history(client)
        assert (row["outcome"], row["streamed"], row["cached"]) == ("cancelled", True, False)
        assert row["time_to_first_token_ms"] > 0
        breakers = (await client.get("/internal/resilience/breakers", headers=OPERATOR)).json()
        assert breakers["breakers"][0]["failure_count"] == 0

    @pytest.mark.covers("STREAM-05", "STREAM-08")
    async def test_silent_provider_gets_heartbeats_and_its_client_leaving_cancels_it(
        self, make_stream_client: StreamClientFactory, upstream: Upstream
    ):
        """Before the first token a silent stream carries heartbeats, and a client can leave.

        Integration scope: sse-starlette's ping while the provider is silent, and its
        disconnect listener while the generator waits on the provider (a response that only
        noticed the client at its next write would wait for the provider's next token).
        Business impact: proxies do not cut a stream during a long first-token wait; a user
        who gives up during it does not keep the provider busy.
        Test strategy: the provider answers nothing; heartbeats every 50 ms; read raw lines
        until a comment arrives after meta with the provider's call under way, then close (on
        a loaded machine a ping can come before the call reaches the provider, and a client
        that left before the call has nothing to cancel).
        Success criteria: a `: ping` comment arrives; the provider sees the client leave
        within a second; the history says `cancelled` with no time to first token.
        """
        client = await make_stream_client(upstream=upstream, stream_ping_seconds=0.05)
        upstream.pause_after(0)

        lines: list[str] = []
        async with client.stream("POST", "/v1/text/stream", json=SUMMARIZE) as response:
            async for line in response.aiter_lines():
                lines.append(line)
                if line.startswith(":") and upstream.calls() == 1:
                    break

        assert lines[0] == "event: meta"
        assert lines[-1].startswith(": ping")
        await eventually(lambda: upstream.abandoned() == 1, DISCONNECT_DEADLINE)

        async def cancelled_row() -> bool:
            rows = await history(client)
            return bool(rows) and rows[0]["outcome"] == "cancelled"

        await eventually(cancelled_row, WRITE_DEADLINE)
        assert (await history(client))[0]["time_to_first_token_ms"] is None

    @pytest.mark.covers("STREAM-05")
    async def test_client_that_stops_reading_is_cut_with_its_provider_call(
        self,
        make_stream_client: StreamClientFactory,
        provider: FakeProvider,
        capsys: pytest.CaptureFixture[str],
    ):
        """A client that keeps its connection open but reads nothing is cut after the send
        timeout, and the provider call with it.

        Integration scope: TCP flow control → uvicorn's send blocking → sse-starlette's send
        timeout → the stream closed → the fake provider's generator closed → history.
        Business impact: a frozen client (a suspended laptop, a stuck proxy) does not hold a
        provider call and a worker's memory open for ever.
        Test strategy: a raw socket with a 4 KB receive buffer that sends the request and never
        reads; the provider streams 6 MB of text at once, then goes silent before its last
        chunk until its consumer leaves (the service reads it ahead of the client, so a
        provider that finished first would leave nothing to cut); send timeout 0.2 s.
        Success criteria: the provider's stream is abandoned and the history row says
        `cancelled`, each within its deadline; the log (the app's handler writes to stderr)
        says so in a warning, not as an unhandled error with a traceback.
        """
        # More than the server's socket may buffer: Linux grows a send buffer up to 4 MB.
        long_summary = " ".join("y" * 50_000 for _ in range(120))  # one chunk a word
        provider.answer_with({"kind": "summary", "summary": long_summary})
        provider.pause_after(119)
        client = await make_stream_client(model=provider.model, stream_send_timeout_seconds=0.2)

        async with frozen_reader(client, SUMMARIZE):
            await eventually(lambda: provider.abandoned == 1, WRITE_DEADLINE)

            async def cancelled_row() -> bool:
                rows = await history(client)
                return bool(rows) and rows[0]["outcome"] == "cancelled"

            await eventually(cancelled_row, WRITE_DEADLINE)

        logged = ""

        def warned() -> bool:
            nonlocal logged
            logged += capsys.readouterr().err
            return "client stopped reading" in logged

        await eventually(warned, WRITE_DEADLINE)
        assert "unhandled error" not in logged
        assert "Traceback" not in logged


@asynccontextmanager
async def frozen_reader(client: httpx.AsyncClient, body: dict[str, Any]) -> AsyncIterator[None]:
    """A client that sends a stream request and never reads a byte of the answer."""
    url = client.base_url
    payload = json.dumps(body).encode()
    request = (
        f"POST /v1/text/stream HTTP/1.1\r\nHost: {url.host}\r\nX-API-Key: {PUBLIC_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (url.host, url.port))
        await loop.sock_sendall(sock, request)
        yield


class TestStreamAccounting:
    """Seam: POST /v1/text/stream → rate limiter and history, once per stream.

    Paths: STREAM-06, STREAM-07
    Real: the app served by a real uvicorn on loopback, over TCP; history on SQLite and the
    worker's PostgreSQL database; the rate limiter in memory.
    Faked: the AI provider (FakeProvider, or the loopback OpenAI-compatible server).
    """

    @pytest.mark.covers("STREAM-06")
    async def test_one_history_row_per_stream_with_its_outcome(
        self,
        make_stream_client: StreamClientFactory,
        upstream: Upstream,
        database_backend: DatabaseBackend,
    ):
        """Each stream leaves one row: completed, failed with its code, or refused.

        Integration scope: the stream's history row through the group commit into SQLite and
        PostgreSQL (migrated to 0004_stream), read back through /v1/history.
        Business impact: users and operators see every streamed request and how it ended.
        Test strategy: a completed stream, one cut by the provider, one refused by the open
        breaker (threshold 1).
        Success criteria: three rows, newest first: `circuit_open`, `provider_error`,
        `completed`; all streamed; time to first token for those that sent text.
        """
        client = await make_stream_client(
            upstream=upstream,
            database=database_backend,
            ai_max_attempts=1,
            breaker_failure_threshold=1,
        )
        await stream(client)
        upstream.cut_after(3)
        await stream(client, {"operation": "summarize", "text": "A second text, cut short."})
        await stream(client, {"operation": "summarize", "text": "A third text, refused."})

        rows = await history(client)

        assert [row["outcome"] for row in rows] == ["circuit_open", "provider_error", "completed"]
        assert all(row["streamed"] for row in rows)
        assert rows[0]["time_to_first_token_ms"] is None
        assert rows[2]["time_to_first_token_ms"] > 0

    @pytest.mark.covers("STREAM-07")
    async def test_rate_limit_is_charged_once_per_stream(
        self, make_stream_client: StreamClientFactory, upstream: Upstream
    ):
        """A stream of many events costs one request of the caller's limit.

        Integration scope: charge_rate_limit before the stream, the X-RateLimit-* headers on
        the event-stream response, the 429 as JSON before any event.
        Business impact: streaming must not multiply, nor dodge, what a key may spend.
        Test strategy: a limit of 2 a minute; two streams of many deltas; a third.
        Success criteria: Remaining 1 then 0; the third is a JSON 429 with Retry-After and
        reaches no provider.
        """
        client = await make_stream_client(upstream=upstream, rate_limit_tiers={"free": 2, "pro": 2})

        first = await stream(client)
        second = await stream(client, {"operation": "summarize", "text": "Second text here."})
        third = await stream(client, {"operation": "summarize", "text": "Third text here."})

        assert first.names.count("delta") >= 5
        assert first.headers["X-RateLimit-Remaining"] == "1"
        assert second.headers["X-RateLimit-Remaining"] == "0"
        assert third.status == 429
        assert third.error_body is not None
        assert third.error_body["error"]["code"] == "rate_limited"
        assert "Retry-After" in third.headers
        assert upstream.calls() == 2
