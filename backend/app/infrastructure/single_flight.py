"""Single-flight: concurrent calls for the same key share one execution and its outcome.

Twenty identical cache misses arriving together cost one provider call, not twenty.
Per process: across workers the cache, filled by the first, does the same job a moment later.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._in_flight: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The outcome of `fn`, and whether this caller shared another caller's execution."""
        if (pending := self._in_flight.get(key)) is not None:
            # shield: one waiter being cancelled must not cancel the shared execution.
            return await asyncio.shield(pending), True
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await fn()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters may be none, and that is fine
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            del self._in_flight[key]
