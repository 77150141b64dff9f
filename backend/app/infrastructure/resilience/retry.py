"""Retries of transient provider failures with tenacity: exponential backoff with jitter, an
attempt cap, a total deadline, a timeout per attempt, and the provider's Retry-After honoured.

`sleep` is injectable so that tests prove the backoff without waiting for it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from app.core.exceptions import ProviderError, ProviderTimeoutError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    attempt_timeout_seconds: float
    deadline_seconds: float
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.transient


class _BackoffOrRetryAfter:
    """Jittered exponential backoff, but never sooner than the provider's Retry-After."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._backoff = wait_random_exponential(
            multiplier=policy.initial_backoff_seconds, max=policy.max_backoff_seconds
        )

    def __call__(self, state: RetryCallState) -> float:
        backoff: float = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderError) and exc.retry_after_seconds is not None:
            return max(backoff, exc.retry_after_seconds)
        return backoff


async def call_with_retries(
    fn: Callable[[], Awaitable[T]], policy: RetryPolicy, *, sleep: Sleep = asyncio.sleep
) -> T:
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.deadline_seconds),
        wait=_BackoffOrRetryAfter(policy),
        retry=retry_if_exception(is_transient),
        sleep=sleep,
        reraise=True,
    )
    try:
        async with asyncio.timeout(policy.deadline_seconds):
            async for attempt in retrying:
                with attempt:
                    return await _one_attempt(fn, policy.attempt_timeout_seconds)
    except TimeoutError as exc:  # the request's deadline, across attempts
        raise ProviderTimeoutError(
            f"The AI provider did not answer within {policy.deadline_seconds:g} s."
        ) from exc
    raise AssertionError("unreachable: tenacity either returns or re-raises")


async def _one_attempt(fn: Callable[[], Awaitable[T]], timeout_seconds: float) -> T:
    try:
        async with asyncio.timeout(timeout_seconds):
            return await fn()
    except TimeoutError as exc:
        raise ProviderTimeoutError(
            f"The AI provider did not answer within {timeout_seconds:g} s.", transient=True
        ) from exc
