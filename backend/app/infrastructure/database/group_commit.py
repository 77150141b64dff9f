"""Group commit: writes from concurrent requests share one transaction, and each request still
waits until its own write is committed (or gets the failure, e.g. DatabaseUnavailableError).

One transaction per request made the database the bottleneck of every cached answer: on SQLite
the writers queued on the file lock (its busy handler sleeps), on PostgreSQL each commit cost a
round trip and a flush. Here a single drain task per process takes whatever rows are waiting,
commits them together, and comes back for the rows that arrived meanwhile: no timer, no added
latency when idle, and batches that grow with the load.
"""

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from app.infrastructure.database.engine import Database

MAX_BATCH = 500
# One request's writes, applied to the shared session; all of them commit, or none.
Write = Callable[[AsyncSession], Awaitable[None]]


class GroupCommitter:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._waiting: list[tuple[Write, asyncio.Future[None]]] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def run(self, write: Write) -> None:
        """Return once `write` is committed; raise what the commit raised."""
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((write, committed))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain())
        # shield: a caller that gives up must not cancel the commit other callers wait on.
        await asyncio.shield(committed)

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                async with self._database.session() as session:
                    for write, _ in batch:
                        await write(session)
            except Exception as exc:  # every waiter learns why its row was not written
                for _, committed in batch:
                    if not committed.done():
                        committed.set_exception(exc)
            else:
                for _, committed in batch:
                    if not committed.done():
                        committed.set_result(None)

    async def close(self) -> None:
        """Wait for the writes already handed in (at shutdown)."""
        if self._drain_task is not None:
            await asyncio.gather(self._drain_task, return_exceptions=True)
