"""The text-processing domain service: cache-aside over the resilient AI provider.

A request is answered from a fresh cache entry if there is one; otherwise concurrent identical
requests share one provider call (single-flight) whose answer is cached with the operation's
TTL. While the breaker is open, a stale entry within the grace window is served as `degraded`
(and never written back). Every request leaves a history row, whatever its outcome.
"""

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Sequence
from typing import Any

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

Answer = tuple[dict[str, Any], bool]  # (value, came from the cache)


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
    ) -> None:
        self._provider = provider
        self._cache = cache
        self._history = history
        self._ttl = {**DEFAULT_TTL_SECONDS, **ttl_seconds}
        self._grace = stale_grace_seconds
        self._batch_concurrency = batch_concurrency
        self._flights: SingleFlight[Answer] = SingleFlight()

    async def process(
        self, request: TextProcessRequest, caller: str, *, read_cache: bool = True
    ) -> TextProcessResponse:
        started = time.perf_counter()
        text = clean_text(request.text)  # the contract saw to it that something is left
        question = clean_text(request.question) if request.question is not None else None
        provider_request = ProviderRequest(
            request.operation, text, options_dict(request.options), question
        )
        cached = degraded = False
        outcome = "ok"
        try:
            value, cached, degraded = await self._answer(provider_request, read_cache)
        except AppError as exc:
            outcome = exc.code
            raise
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            await self._history.record(
                HistoryEntry(
                    api_key_id=caller,
                    operation=request.operation,
                    text=text,
                    model=self._provider.model_id,
                    cached=cached,
                    degraded=degraded,
                    latency_ms=elapsed_ms,
                    outcome=outcome,
                )
            )
        return TextProcessResponse(
            operation=request.operation,
            result=value["result"],
            model=value["model"],
            cached=cached,
            degraded=degraded,
            processing_time_ms=round(elapsed_ms, 3),
        )

    async def _answer(
        self, request: ProviderRequest, read_cache: bool
    ) -> tuple[dict[str, Any], bool, bool]:
        key = cache_key(request, self._provider.model_id)
        if read_cache and (entry := await self._cache.get(key)) is not None and entry.fresh:
            return entry.value, True, False

        async def compute() -> Answer:
            result = await self._provider.run(request)
            value = {"result": result.model_dump(mode="json"), "model": self._provider.model_id}
            await self._cache.set(key, value, self._ttl[request.operation])
            return value, False

        try:
            (value, from_cache), shared = await self._flights.run(key, compute)
        except CircuitOpenError:
            stale = await self._cache.get(key, allow_stale_seconds=self._grace)
            if stale is None:
                raise
            return stale.value, True, True
        # Callers that shared another's provider call did not call the provider themselves.
        return value, from_cache or shared, False

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
