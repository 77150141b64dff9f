"""Group commit: items from concurrent requests are written in one transaction, and each request
still waits until its own item is committed (or gets the failure, e.g. DatabaseUnavailableError).

One transaction per request made the database the bottleneck of every cached answer: on SQLite
the writers queued on the file lock (its busy handler sleeps), on PostgreSQL each commit cost a
round trip and a flush. Here a single drain task per process takes whatever items are waiting,
hands them to `write_batch` in one transaction, and comes back for the items that arrived
meanwhile: no timer, no added latency when idle, and batches that grow with the load.
`write_batch` sees the whole batch, so it can write it as a few set-based statements (one
multi-row INSERT rather than one per item), which is what keeps a commit cheap under load.

When requests arrive spread out (misses paced by a provider's latency), most batches hold one
item, and a transaction's fixed cost is most of its price: the committer keeps its connection
(`KeptConnection`) from one batch to the next, and goes back to the pool once no batch has come
for the database's `keep_connection_seconds` (DATABASE_KEEP_CONNECTION_SECONDS).
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from app.infrastructure.database.engine import Database, KeptConnection

MAX_BATCH = 500
Item = TypeVar("Item")


class GroupCommitter(Generic[Item]):
    def __init__(
        self,
        database: Database,
        write_batch: Callable[[AsyncConnection, list[Item]], Awaitable[None]],
    ) -> None:
        self._connection = KeptConnection(database)
        self._keep_seconds = database.keep_connection_seconds
        self._write_batch = write_batch
        self._waiting: list[tuple[Item, asyncio.Future[None]]] = []
        # One task per burst of items, so that its spans and logs carry the context (the
        # trace) of the request that started it, as each batch's statements did before.
        self._drain_task: asyncio.Task[None] | None = None
        self._release_timer: asyncio.TimerHandle | None = None
        self._release_task: asyncio.Task[None] | None = None  # referenced: the loop holds weakly

    async def run(self, item: Item) -> None:
        """Return once `item` is committed; raise what the commit raised."""
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, committed))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain())
        await asyncio.shield(committed)

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                await self._commit([item for item, _ in batch])
            except Exception as exc:  # every waiter learns why its item was not written
                for _, committed in batch:
                    if not committed.done():
                        committed.set_exception(exc)
            else:
                for _, committed in batch:
                    if not committed.done():
                        committed.set_result(None)
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._release_timer = asyncio.get_running_loop().call_later(
            self._keep_seconds, self._start_release
        )

    def _start_release(self) -> None:
        self._release_task = asyncio.create_task(self._release_if_idle())

    async def _commit(self, items: list[Item]) -> None:
        async def write(connection: AsyncConnection) -> None:
            await self._write_batch(connection, items)

        await self._connection.transaction(write)

    async def _release_if_idle(self) -> None:
        # No await between the check and the release taking the connection: a drain that
        # starts after it checks out a connection of its own.
        if self._drain_task is None or self._drain_task.done():
            await self._connection.release()

    async def close(self) -> None:
        """Wait for the items already handed in (at shutdown), and give the connection back."""
        if self._drain_task is not None:
            await asyncio.gather(self._drain_task, return_exceptions=True)
        if self._release_timer is not None:
            self._release_timer.cancel()
        if self._release_task is not None:
            await asyncio.gather(self._release_task, return_exceptions=True)
        await self._connection.release()
