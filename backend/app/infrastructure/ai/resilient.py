"""The provider as the domain sees it: each request is retried inside the breaker's view, so
one request that exhausts its retries counts as one failure."""

import asyncio
import time
from collections.abc import Callable

from app.core.exceptions import ProviderError
from app.infrastructure.ai.provider import AIProvider, ProviderAnswer, ProviderRequest
from app.infrastructure.metrics import Metrics
from app.infrastructure.resilience.breaker import CircuitBreaker
from app.infrastructure.resilience.retry import RetryPolicy, Sleep, call_with_retries


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

    async def run(self, request: ProviderRequest) -> ProviderAnswer:
        return await self.breaker.call(
            lambda: call_with_retries(
                lambda: self._counted(request), self._retry_policy, sleep=self._sleep
            )
        )

    async def _counted(self, request: ProviderRequest) -> ProviderAnswer:
        started = time.perf_counter()
        outcome = "error"  # a bug of ours, not the provider's: counted all the same
        try:
            result = await self.provider.run(request)
            outcome = "ok"
        except ProviderError as exc:
            outcome = exc.code
            raise
        except asyncio.CancelledError:
            # An attempt timeout or the request deadline cut the call (or the caller left). It
            # reached the provider all the same, and a hanging provider shows up only here.
            outcome = "cancelled"
            raise
        finally:
            self._metrics.provider_calls.labels(outcome=outcome).inc()
            self._metrics.provider_latency.labels(outcome).observe(time.perf_counter() - started)
        self._metrics.tokens.labels(self.model_id, "input").inc(result.input_tokens)
        self._metrics.tokens.labels(self.model_id, "output").inc(result.output_tokens)
        return result
