"""The provider as the domain sees it: each request is retried inside the breaker's view, so
one request that exhausts its retries counts as one failure."""

import asyncio

from pydantic import BaseModel

from app.core.exceptions import ProviderError
from app.infrastructure.ai.provider import AIProvider, ProviderRequest
from app.infrastructure.metrics import Metrics
from app.infrastructure.resilience.breaker import CircuitBreaker
from app.infrastructure.resilience.retry import RetryPolicy, Sleep, call_with_retries


def is_provider_failure(exc: BaseException) -> bool:
    """What the breaker counts: the provider failed, not the caller."""
    return isinstance(exc, ProviderError)


class ResilientProvider:
    def __init__(
        self,
        provider: AIProvider,
        breaker: CircuitBreaker,
        retry_policy: RetryPolicy,
        metrics: Metrics,
        sleep: Sleep,
    ) -> None:
        self.provider = provider
        self.breaker = breaker
        self._retry_policy = retry_policy
        self._metrics = metrics
        self._sleep = sleep

    @property
    def model_id(self) -> str:
        return self.provider.model_id

    async def run(self, request: ProviderRequest) -> BaseModel:
        return await self.breaker.call(
            lambda: call_with_retries(
                lambda: self._counted(request), self._retry_policy, sleep=self._sleep
            )
        )

    async def _counted(self, request: ProviderRequest) -> BaseModel:
        calls = self._metrics.provider_calls
        try:
            result = await self.provider.run(request)
        except ProviderError as exc:
            calls.labels(outcome=exc.code).inc()
            raise
        except asyncio.CancelledError:
            # An attempt timeout or the request deadline cut the call (or the caller left). It
            # reached the provider all the same, and a hanging provider shows up only here.
            calls.labels(outcome="cancelled").inc()
            raise
        calls.labels(outcome="ok").inc()
        return result
