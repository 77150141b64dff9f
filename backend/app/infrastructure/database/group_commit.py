"""Group commit: items from concurrent requests are written in one transaction, and each request
still waits until its own item is committed (or gets the failure, e.g. DatabaseUnavailableError).

One transaction per request made the database the bottleneck of every cached answer: on SQLite
the writers queued on the file lock (its busy handler sleeps), on PostgreSQL each commit cost a
round trip and a flush. Here a single drain task per process takes whatever items are waiting,
hands them to `write_batch` in one transaction, and comes back for the items that arrived
meanwhile: no timer, no added latency when idle, and batches that grow with the load.
`write_batch` sees the whole batch, so it can write it as a few set-based statements (one
multi-row INSERT rather than one per item), which is what keeps a commit cheap under load.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from app.infrastructure.database.engine import Database

MAX_BATCH = 500
Item = TypeVar("Item")


class GroupCommitter(Generic[Item]):
    def __init__(
        self,
        database: Database,
        write_batch: Callable[[AsyncConnection, list[Item]], Awaitable[None]],
    ) -> None:
        self._database = database
        self._write_batch = write_batch
        self._waiting: list[tuple[Item, asyncio.Future[None]]] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def run(self, item: Item) -> None:
        """Return once `item` is committed; raise what the commit raised."""
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, committed))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain())
        # shield: a caller that gives up must not cancel the commit other callers wait on.
        await asyncio.shield(committed)

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                async with self._database.transaction() as connection:
                    await self._write_batch(connection, [item for item, _ in batch])
            except Exception as exc:  # every waiter learns why its item was not written
                for _, committed in batch:
                    if not committed.done():
                        committed.set_exception(exc)
            else:
                for _, committed in batch:
                    if not committed.done():
                        committed.set_result(None)

    async def close(self) -> None:
        """Wait for the items already handed in (at shutdown)."""
        if self._drain_task is not None:
            await asyncio.gather(self._drain_task, return_exceptions=True)
