"""The text-processing domain service: cache-aside over the resilient AI provider.

A request is answered from a fresh cache entry if there is one; otherwise concurrent identical
requests share one provider call (single-flight) whose answer is cached with the operation's
TTL. While the breaker is open, a stale entry within the grace window is served as `degraded`
(and never written back). Every request leaves a history row, whatever its outcome, with the
tokens of the provider call it made: none for a cache hit or a shared call, unknown (NULL) when
the call failed, since pydantic-ai reports no usage with an error.
"""

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span, Tracer
from shared.errors import ErrorDetail
from shared.text import (
    BatchItemResult,
    BatchResponse,
    Operation,
    TextProcessRequest,
    TextProcessResponse,
    options_dict,
)

from app.core.exceptions import AppError, CircuitOpenError
from app.infrastructure.ai.provider import DEFAULT_OPTIONS, PROMPT_VERSION, ProviderRequest
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

    async def process(
        self, request: TextProcessRequest, caller: str, *, read_cache: bool = True
    ) -> TextProcessResponse:
        started = time.perf_counter()
        text = clean_text(request.text)  # the contract saw to it that something is left
        question = clean_text(request.question) if request.question is not None else None
        provider_request = ProviderRequest(
            request.operation, text, options_dict(request.options), question
        )
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
                await self._history.record(
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
        if read_cache:
            with self._span("cache lookup") as span:
                entry = await self._cache.get(key)
                hit = entry is not None and entry.fresh
                if span is not None:
                    span.set_attribute("cache.hit", hit)
            if entry is not None and hit:
                return _Answer(entry.value, cached=True)

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
            stale = await self._cache.get(key, allow_stale_seconds=self._grace)
            if stale is None:
                raise
            return _Answer(stale.value, cached=True, degraded=True)
        # Callers that shared another's provider call did not call the provider themselves.
        return _Answer(answer.value, cached=True) if shared else answer

    def _span(self, name: str) -> AbstractContextManager[Span | None]:
        if self._tracer is None:
            return nullcontext()
        return self._tracer.start_as_current_span(name)

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
