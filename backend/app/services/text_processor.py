"""The text-processing domain service: cache-aside over the resilient AI provider.

A request is answered from a fresh cache entry if there is one; otherwise concurrent identical
requests share one provider call (single-flight) whose answer is cached with the operation's
TTL. While the breaker is open, a stale entry within the grace window is served as `degraded`
(and never written back). While this process knows the circuit open, a request looks the cache
up once, stale allowed, and a key found with nothing cached is not looked up again until the
breaker's remembered open period ends (at most a second, the same delay as its refusals): a
refusal is the cheapest answer there is. Every request leaves a history row, whatever its
outcome, with the tokens of the provider call it made: none for a cache hit or a shared call,
unknown (NULL) when the call failed or was cut short, since pydantic-ai reports no usage with an
error.

`stream` answers the same way as events (`StreamMeta`, `StreamDelta`s, then `StreamDone` or a
`StreamFailure`), with the provider's own stream behind it: a completed stream is cached as its
final result; one cut short (the client left, the provider failed) is not. Streams do not join
the single-flight: each is its own provider call, and the cache serves whoever comes after.
"""

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, aclosing, nullcontext
from dataclasses import dataclass, field
from typing import Any

import anyio
from opentelemetry.trace import Span, Tracer
from shared.errors import ErrorDetail
from shared.text import (
    TEXT_FIELDS,
    BatchItemResult,
    BatchResponse,
    Operation,
    StreamDelta,
    StreamDone,
    StreamMeta,
    TextProcessRequest,
    TextProcessResponse,
    options_dict,
)

from app.core.exceptions import AppError, CircuitOpenError
from app.infrastructure.ai.provider import (
    DEFAULT_OPTIONS,
    PROMPT_VERSION,
    ProviderAnswer,
    ProviderRequest,
)
from app.infrastructure.ai.resilient import ResilientProvider
from app.infrastructure.cache import ResponseCache
from app.infrastructure.single_flight import SingleFlight
from app.services.history import HistoryEntry, HistoryService

DEFAULT_TTL_SECONDS: dict[Operation, int] = {
    Operation.SUMMARIZE: 24 * 3600,
    Operation.SENTIMENT: 24 * 3600,
    Operation.KEY_POINTS: 24 * 3600,
    Operation.QUESTIONS: 24 * 3600,
    Operation.QA: 3600,
}
# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; tab and newline are kept.
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class _Answer:
    value: dict[str, Any]
    cached: bool
    degraded: bool = False
    input_tokens: int = 0  # of this request's own provider call
    output_tokens: int = 0
    tokens_estimated: bool = False


@dataclass(frozen=True)
class StreamFailure:
    """The stream's last event when it fails after its first: the error a JSON answer carries."""

    error: AppError


StreamEvent = StreamMeta | StreamDelta | StreamDone | StreamFailure


def clean_text(text: str) -> str:
    """Control characters removed (newlines and tabs kept); everything else untouched."""
    return _CONTROL_CHARACTERS.sub("", text.replace("\r\n", "\n"))


def cache_key(request: ProviderRequest, model_id: str) -> str:
    """`operation:digest` of everything that changes the answer, and nothing that does not."""
    options = {**DEFAULT_OPTIONS.get(request.operation, {}), **request.options}
    identity = [
        request.operation.value,
        " ".join(request.text.split()),  # whitespace differences do not change the answer
        options,
        " ".join((request.question or "").split()),
        model_id,
        PROMPT_VERSION,
    ]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{request.operation.value}:{digest}"


class TextProcessor:
    def __init__(
        self,
        provider: ResilientProvider,
        cache: ResponseCache,
        history: HistoryService,
        *,
        ttl_seconds: dict[Operation, int],
        stale_grace_seconds: float,
        batch_concurrency: int,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer  # None: tracing is off, and spans cost nothing
        self._provider = provider
        self._cache = cache
        self._history = history
        self._ttl = {**DEFAULT_TTL_SECONDS, **ttl_seconds}
        self._grace = stale_grace_seconds
        self._batch_concurrency = batch_concurrency
        self._flights: SingleFlight[_Answer] = SingleFlight()
        # Keys with nothing cached, not even stale, while the circuit is known open (until the
        # first item): no answer can appear for them before a call does, so a repeated request
        # is refused without asking the cache again (at most one lookup per key per second).
        self._uncached_while_open: tuple[float, set[str]] = (0.0, set())

    async def process(
        self,
        request: TextProcessRequest,
        caller: str,
        *,
        read_cache: bool = True,
        record: Callable[[HistoryEntry], Awaitable[None]] | None = None,
    ) -> TextProcessResponse:
        """`record` takes the request's history entry instead of the history service: a job's
        item writes it in the transaction that finishes the item."""
        started = time.perf_counter()
        provider_request = _provider_request(request)
        text = provider_request.text
        answer: _Answer | None = None
        outcome = "ok"
        try:
            answer = await self._answer(provider_request, read_cache)
        except AppError as exc:
            outcome = exc.code
            raise
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            with self._span("history write"):
                await (record or self._history.record)(
                    HistoryEntry(
                        api_key_id=caller,
                        operation=request.operation,
                        text=text,
                        model=self._provider.model_id,
                        cached=answer is not None and answer.cached,
                        degraded=answer is not None and answer.degraded,
                        latency_ms=elapsed_ms,
                        outcome=outcome,
                        input_tokens=answer.input_tokens if answer else None,
                        output_tokens=answer.output_tokens if answer else None,
                        tokens_estimated=answer is not None and answer.tokens_estimated,
                    )
                )
        return TextProcessResponse(
            operation=request.operation,
            result=answer.value["result"],
            model=answer.value["model"],
            cached=answer.cached,
            degraded=answer.degraded,
            processing_time_ms=round(elapsed_ms, 3),
        )

    async def _answer(self, request: ProviderRequest, read_cache: bool) -> _Answer:
        key = cache_key(request, self._provider.model_id)
        # A circuit this process knows open refuses the call anyway: one lookup, stale allowed,
        # answers the request (fresh, degraded, or refused) without a second one.
        refused_until = self._provider.refused_until()
        looked_for_stale = refused_until is not None and self._known_uncached(refused_until, key)
        if looked_for_stale and (refusal := self._provider.refusal()) is not None:
            raise refusal  # what the call would raise, without the call's machinery
        if not looked_for_stale and (read_cache or refused_until is not None):
            with self._span("cache lookup") as span:
                grace = 0.0 if refused_until is None else self._grace
                entry = await self._cache.get(key, allow_stale_seconds=grace)
                hit = entry is not None and entry.fresh and read_cache
                if span is not None:
                    span.set_attribute("cache.hit", hit)
            if entry is not None and (hit or refused_until is not None):
                return _Answer(entry.value, cached=True, degraded=not hit)  # refused: degraded
            if refused_until is not None:
                self._uncached_while_open[1].add(key)
                looked_for_stale = True

        async def compute() -> _Answer:
            answer = await self._provider.run(request)
            value = {
                "result": answer.output.model_dump(mode="json"),
                "model": self._provider.model_id,
            }
            await self._cache.set(key, value, self._ttl[request.operation])
            return _Answer(
                value,
                cached=False,
                input_tokens=answer.input_tokens,
                output_tokens=answer.output_tokens,
                tokens_estimated=answer.estimated,
            )

        try:
            answer, shared = await self._flights.run(key, compute)
        except CircuitOpenError:
            if looked_for_stale:
                raise
            stale = await self._cache.get(key, allow_stale_seconds=self._grace)
            if stale is None:
                raise
            return _Answer(stale.value, cached=True, degraded=True)
        # Callers that shared another's provider call did not call the provider themselves.
        return _Answer(answer.value, cached=True) if shared else answer

    def _known_uncached(self, refused_until: float, key: str) -> bool:
        period, keys = self._uncached_while_open
        if period != refused_until:  # another open period: what was learnt may be stale
            self._uncached_while_open = (refused_until, set())
            return False
        return key in keys

    def _span(self, name: str) -> AbstractContextManager[Span | None]:
        if self._tracer is None:
            return nullcontext()
        return self._tracer.start_as_current_span(name)

    async def stream(
        self, request: TextProcessRequest, caller: str, *, read_cache: bool = True
    ) -> AsyncGenerator[StreamEvent, None]:
        """The answer as events. Whatever refuses the request (an open breaker with no stale
        answer) is raised before the first event, so a caller that awaits the first event before
        answering can still answer with an HTTP error.

        One history row per stream, written before its last event: `completed`, the error code,
        or `cancelled` when the stream is closed or cancelled early (its client left).
        """
        provider_request = _provider_request(request)
        record = _StreamRecord(self._history, caller, provider_request, self._provider.model_id)
        try:
            async with aclosing(
                self._stream_events(provider_request, read_cache, record)
            ) as events:
                async for event in events:
                    yield event
        except AppError as exc:  # refused before the first event
            if not record.finished:
                await record.finish(exc.code)
            raise
        finally:
            if not record.finished:
                # A cancelled stream is cancelled again at every await until it leaves the
                # cancelled scope: the shield lets its history row be written first.
                with anyio.CancelScope(shield=True):
                    await record.finish("cancelled")

    async def _stream_events(
        self, request: ProviderRequest, read_cache: bool, record: "_StreamRecord"
    ) -> AsyncGenerator[StreamEvent, None]:
        key = cache_key(request, self._provider.model_id)
        if read_cache and (entry := await self._cache.get(key)) is not None and entry.fresh:
            for event in await record.replay(entry.value, degraded=False):
                yield event
            return
        try:
            async with AsyncExitStack() as stack:
                try:
                    answer = await stack.enter_async_context(self._provider.stream(request))
                except CircuitOpenError:
                    stale = await self._cache.get(key, allow_stale_seconds=self._grace)
                    if stale is None:
                        raise
                    for event in await record.replay(stale.value, degraded=True):
                        yield event
                    return
                yield record.meta(cached=False, degraded=False)
                while (snapshot := await answer.next_snapshot()) is not None:
                    if delta := record.delta(snapshot):
                        yield delta
                provided = await answer.answer()
        except AppError as exc:
            if not record.meta_sent:
                raise
            yield await record.fail(exc)
            return
        record.used(provided)
        value = {
            "result": provided.output.model_dump(mode="json"),
            "model": self._provider.model_id,
        }
        await self._cache.set(key, value, self._ttl[request.operation])
        for event in await record.complete(value):
            yield event

    async def process_batch(
        self,
        items: Sequence[TextProcessRequest | AppError],
        caller: str,
        *,
        read_cache: bool = True,
    ) -> BatchResponse:
        """Each request processed, at most `batch_concurrency` at once; an item that is already
        an error (refused before it got here) is answered with that error, in its place."""
        slots = asyncio.Semaphore(self._batch_concurrency)

        def refused(index: int, exc: AppError) -> BatchItemResult:
            error = ErrorDetail(code=exc.code, message=exc.message, details=exc.details)
            return BatchItemResult(index=index, error=error)

        async def one(index: int, item: TextProcessRequest | AppError) -> BatchItemResult:
            if isinstance(item, AppError):
                return refused(index, item)
            async with slots:
                try:
                    response = await self.process(item, caller, read_cache=read_cache)
                except AppError as exc:
                    return refused(index, exc)
                return BatchItemResult(index=index, response=response)

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
        failed = sum(result.error is not None for result in results)
        return BatchResponse(items=list(results), succeeded=len(results) - failed, failed=failed)


def _provider_request(request: TextProcessRequest) -> ProviderRequest:
    text = clean_text(request.text)  # the contract saw to it that something is left
    question = clean_text(request.question) if request.question is not None else None
    return ProviderRequest(request.operation, text, options_dict(request.options), question)


@dataclass
class _StreamRecord:
    """One stream's events and its history row: what was sent, when, and how it ended."""

    history: HistoryService
    caller: str
    request: ProviderRequest
    model: str
    started: float = field(default_factory=time.perf_counter)
    meta_sent: bool = False
    cached: bool = False
    degraded: bool = False
    sent_text: str = ""
    first_token_ms: float | None = None
    finished: bool = False
    # The provider call's tokens: unknown (None) until it completes; none for a cached answer.
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_estimated: bool = False

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def meta(self, *, cached: bool, degraded: bool) -> StreamMeta:
        self.meta_sent, self.cached, self.degraded = True, cached, degraded
        if cached:
            self.input_tokens = self.output_tokens = 0
        return StreamMeta(
            operation=self.request.operation, model=self.model, cached=cached, degraded=degraded
        )

    def delta(self, result: dict[str, Any]) -> StreamDelta | None:
        """The text added since the last delta, if the (partial) result's text grew. A text that
        does not extend what was sent (a model revising itself) is left to `done` to correct."""
        text_field = TEXT_FIELDS.get(self.request.operation)
        text = result.get(text_field) if text_field is not None else None
        if not isinstance(text, str) or len(text) <= len(self.sent_text):
            return None
        if not text.startswith(self.sent_text):
            return None
        added, self.sent_text = text[len(self.sent_text) :], text
        if self.first_token_ms is None:
            self.first_token_ms = self._elapsed_ms()
        return StreamDelta(text=added)

    def used(self, answer: ProviderAnswer) -> None:
        self.input_tokens, self.output_tokens = answer.input_tokens, answer.output_tokens
        self.tokens_estimated = answer.estimated

    async def replay(self, value: dict[str, Any], *, degraded: bool) -> list[StreamEvent]:
        """A whole answer (from the cache) as a stream, at once."""
        return [self.meta(cached=True, degraded=degraded), *await self.complete(value)]

    async def complete(self, value: dict[str, Any]) -> list[StreamEvent]:
        """The last events of an answer: the rest of its text, then `done`."""
        events: list[StreamEvent] = []
        if delta := self.delta(value["result"]):
            events.append(delta)  # what the last snapshots had not shown, or a cached text
        if self.first_token_ms is None:  # no delta: the result itself is the first text sent
            self.first_token_ms = self._elapsed_ms()
        elapsed_ms = self._elapsed_ms()
        done = StreamDone(
            operation=self.request.operation,
            result=value["result"],
            model=value["model"],
            cached=self.cached,
            degraded=self.degraded,
            processing_time_ms=round(elapsed_ms, 3),
            time_to_first_token_ms=round(self.first_token_ms, 3),
        )
        try:
            await self.finish("completed", elapsed_ms)
        except AppError as exc:  # the history could not be written: as /process, an error
            return [*events, StreamFailure(exc)]
        return [*events, done]

    async def fail(self, error: AppError) -> StreamFailure:
        try:
            await self.finish(error.code)
        except AppError as exc:  # as /process: the database's failure is the one reported
            return StreamFailure(exc)
        return StreamFailure(error)

    async def finish(self, outcome: str, elapsed_ms: float | None = None) -> None:
        self.finished = True
        await self.history.record(
            HistoryEntry(
                api_key_id=self.caller,
                operation=self.request.operation,
                text=self.request.text,
                model=self.model,
                cached=self.cached,
                degraded=self.degraded,
                latency_ms=self._elapsed_ms() if elapsed_ms is None else elapsed_ms,
                outcome=outcome,
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens,
                tokens_estimated=self.tokens_estimated,
                streamed=True,
                time_to_first_token_ms=self.first_token_ms,
            )
        )
