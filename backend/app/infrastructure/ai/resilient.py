"""The provider as the domain sees it: each request is retried inside the breaker's view, so
one request that exhausts its retries counts as one failure.

A streamed answer is one breaker call from its request to its last token. It is retried only
until the provider's first chunk: once text may have reached the caller, starting over would
repeat it, so a later failure ends the stream (and counts as the call's failure).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any, TypeVar

from app.core.exceptions import CircuitOpenError, ProviderError, ProviderTimeoutError
from app.infrastructure.ai.provider import (
    AIProvider,
    ProviderAnswer,
    ProviderRequest,
    ProviderStream,
)
from app.infrastructure.metrics import Metrics
from app.infrastructure.resilience.breaker import CircuitBreaker
from app.infrastructure.resilience.retry import RetryPolicy, Sleep, call_with_retries

T = TypeVar("T")


def is_provider_failure(exc: BaseException) -> bool:
    """What the breaker counts: the provider failed, not the caller."""
    return isinstance(exc, ProviderError)


CHECK_TIMEOUT_SECONDS = 5.0


class ResilientProvider:
    def __init__(
        self,
        provider: AIProvider,
        breaker: CircuitBreaker,
        retry_policy: RetryPolicy,
        metrics: Metrics,
        sleep: Sleep,
        *,
        check_interval_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.breaker = breaker
        self._retry_policy = retry_policy
        self._metrics = metrics
        self._sleep = sleep
        self._check_interval = check_interval_seconds
        self._clock = clock
        self._check_problem: str | None = None
        self._next_check = 0.0
        self._check_task: asyncio.Task[None] | None = None

    @property
    def model_id(self) -> str:
        return self.provider.model_id

    def check_problem(self) -> str | None:
        """What the latest provider check found wrong (None: nothing, or not checked yet).

        The check runs in the background, at most once per `check_interval_seconds` (0: never),
        so a readiness probe never waits on the provider: it reads the last verdict.
        """
        now = self._clock()
        idle = self._check_task is None or self._check_task.done()
        if self._check_interval > 0 and idle and now >= self._next_check:
            self._next_check = now + self._check_interval
            self._check_task = asyncio.create_task(self._check())
        return self._check_problem

    async def _check(self) -> None:
        self._check_problem = await self.provider.check(CHECK_TIMEOUT_SECONDS)

    async def aclose(self) -> None:
        if self._check_task is not None:
            self._check_task.cancel()
            await asyncio.gather(self._check_task, return_exceptions=True)

    def refused_until(self) -> float | None:
        """Until when calls are refused (CircuitOpenError) at once, without a store lookup; None
        when a call may be tried. See CircuitBreaker.known_open_until."""
        return self.breaker.known_open_until()

    def refusal(self) -> CircuitOpenError | None:
        """What a call would be refused with now, without a store lookup (None: it may try)."""
        return self.breaker.refusal()

    async def run(self, request: ProviderRequest) -> ProviderAnswer:
        return await self.breaker.call(
            lambda: call_with_retries(
                lambda: self._counted_run(request), self._retry_policy, sleep=self._sleep
            )
        )

    async def _counted_run(self, request: ProviderRequest) -> ProviderAnswer:
        with counted(self._metrics):
            answer = await self.provider.run(request)
        count_tokens(self._metrics, self.model_id, answer)
        return answer

    @asynccontextmanager
    async def stream(self, request: ProviderRequest) -> AsyncIterator["ResilientStream"]:
        """Entering asks the breaker (CircuitOpenError while open) and calls nothing yet: the
        first `next_snapshot` calls the provider. Leaving closes the provider's stream and
        settles the breaker call: a failure if a ProviderError left, none if cancelled."""
        async with self.breaker.guard(), AsyncExitStack() as stack:
            yield ResilientStream(
                self.provider, request, stack, self._retry_policy, self._sleep, self._metrics
            )


@contextmanager
def counted(metrics: Metrics) -> Iterator[None]:
    """One call that reached the provider (a run, or a stream to its end), counted and timed
    by how it ended."""
    started = time.perf_counter()
    outcome = "error"  # a bug of ours, not the provider's: counted all the same
    try:
        yield
        outcome = "ok"
    except ProviderError as exc:
        outcome = exc.code
        raise
    except (asyncio.CancelledError, GeneratorExit):
        # An attempt timeout or the request deadline cut the call, or the caller left. It
        # reached the provider all the same, and a hanging provider shows up only here.
        outcome = "cancelled"
        raise
    finally:
        metrics.provider_calls.labels(outcome=outcome).inc()
        metrics.provider_latency.labels(outcome).observe(time.perf_counter() - started)


def count_tokens(metrics: Metrics, model_id: str, answer: ProviderAnswer) -> None:
    metrics.tokens.labels(model_id, "input").inc(answer.input_tokens)
    metrics.tokens.labels(model_id, "output").inc(answer.output_tokens)


class ResilientStream:
    """A provider stream under the retry policy: attempts (each its own connection) until the
    first chunk, each within the attempt timeout; then every later chunk within the attempt
    timeout too (a provider silent that long has stalled), and all of it within the deadline."""

    def __init__(
        self,
        provider: AIProvider,
        request: ProviderRequest,
        stack: AsyncExitStack,
        policy: RetryPolicy,
        sleep: Sleep,
        metrics: Metrics,
    ) -> None:
        self._provider = provider
        self._request = request
        self._stack = stack  # what lives as long as the caller's stream
        self._policy = policy
        self._sleep = sleep
        self._metrics = metrics
        self._stream: ProviderStream | None = None
        self._deadline = 0.0

    async def next_snapshot(self) -> dict[str, Any] | None:
        """The output's arguments so far, or None once the provider is done."""
        if self._stream is None:
            return await self._open()
        return await self._within_limits(self._stream.next_snapshot())

    async def answer(self) -> ProviderAnswer:
        """The validated output and its usage, after the last snapshot."""
        assert self._stream is not None, "read the snapshots first"
        answer = await self._within_limits(self._stream.answer())
        count_tokens(self._metrics, self._provider.model_id, answer)
        return answer

    async def _open(self) -> dict[str, Any] | None:
        self._deadline = asyncio.get_running_loop().time() + self._policy.deadline_seconds

        async def attempt() -> dict[str, Any] | None:
            async with AsyncExitStack() as attempt_stack:
                attempt_stack.enter_context(counted(self._metrics))
                stream = await attempt_stack.enter_async_context(
                    self._provider.stream(self._request)
                )
                first = await stream.next_snapshot()
                # The first chunk arrived: from now on the connection lives as long as the
                # caller's stream, and no failure is retried.
                self._stack.push_async_exit(attempt_stack.pop_all())
            self._stream = stream
            return first

        return await call_with_retries(attempt, self._policy, sleep=self._sleep)

    async def _within_limits(self, step: Awaitable[T]) -> T:
        left = self._deadline - asyncio.get_running_loop().time()
        timeout = min(self._policy.attempt_timeout_seconds, left)
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                return await step
        except TimeoutError as exc:
            raise ProviderTimeoutError(
                f"The AI provider did not finish within {self._policy.deadline_seconds:g} s."
                if timeout == left
                else f"The AI provider sent nothing for {timeout:g} s mid-answer."
            ) from exc
