"""The job queue: Taskiq, on a Redis stream (workers anywhere) or in this process's memory.

One message per job item, `(job_id, position)`; what the item means lives in the database, so a
message is small and a redelivered one finds the item's state there (services/job_runner.py).

- `RedisStreamBroker` (taskiq-redis) acknowledges a message after its task ran: a worker that
  dies leaves its messages pending in the consumer group, and another worker claims them
  (XAUTOCLAIM) once they have been idle for JOB_REDELIVERY_SECONDS. `_StreamBroker` adjusts
  three things of taskiq-redis 1.2.4's own `listen`: it claims idle messages on every turn,
  not only after new messages arrived (with a quiet stream, a dead worker's items were never
  claimed); it takes no lock around the claim (XAUTOCLAIM is atomic, and the lock it took had no
  expiry, so a worker killed while holding it stopped every reclaim); and it keeps its own
  messages fresh (XCLAIM to itself) while it works on them, so an item waiting for the rate
  limit or the circuit breaker, or a slow provider, is not handed to a second worker: only a
  worker that stops answering loses its messages. An acknowledged message is deleted, so the
  stream's length is the queue's depth.
- `InMemoryBroker` (taskiq) runs each message as a task of this process: the zero-configuration
  default, and what tests use when they need no Redis. Nothing survives a restart, so the
  runner queues the unfinished items again at start.

Workers say they are alive in a Redis hash (`<queue>:workers`), for /internal/jobs.
"""

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from taskiq import AckableMessage, AsyncBroker, InMemoryBroker
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

logger = logging.getLogger(__name__)

TASK_NAME = "process_job_item"
GROUP = "workers"
ItemHandler = Callable[[str, int], Awaitable[None]]
# Workers report every few seconds; one unheard of for this long is no longer listed.
WORKER_SEEN_SECONDS = 60.0
_ENQUEUE_CHUNK = 200
# This process, as the Redis consumer group and the job items' `worker` column name it.
WORKER_NAME = f"{socket.gethostname()}-{os.getpid()}"


class _StreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, with the adjustments the module docstring explains."""

    def __init__(self, url: str, queue_name: str, *, redelivery_seconds: float, batch: int) -> None:
        super().__init__(
            url,
            queue_name=queue_name,
            consumer_group_name=GROUP,
            consumer_name=WORKER_NAME,
            consumer_id="0",  # a group made after messages were queued still gets them
            xread_block=1000,
            idle_timeout=int(redelivery_seconds * 1000),
            xread_count=batch,
            unacknowledged_batch_size=batch,
            max_connection_pool_size=64,
        )
        self.in_flight: set[str] = set()

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            async with (
                Redis(connection_pool=self.connection_pool) as redis,
                redis.pipeline(transaction=False) as pipe,
            ):
                pipe.xack(queue_name, self.consumer_group_name, id)
                pipe.xdel(queue_name, id)
                await pipe.execute()
            self.in_flight.discard(id)

        return ack

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        async with Redis(connection_pool=self.connection_pool) as redis:
            while True:
                fetched: Any = await redis.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    block=self.block,
                    count=self.count,
                )
                messages: list[Any] = [message for _, batch in fetched for message in batch]
                claim: list[Any] = await redis.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    count=self.unacknowledged_batch_size,
                )
                claimed = claim[1]
                if claimed:
                    logger.warning(
                        "claimed %d job message(s) of a worker that stopped answering",
                        len(claimed),
                    )
                for message_id, fields in [*messages, *claimed]:
                    if fields is None:  # deleted meanwhile: XAUTOCLAIM reports it, and drops it
                        continue
                    self.in_flight.add(message_id)
                    yield AckableMessage(
                        data=fields[b"data"],
                        ack=self._ack_generator(id=message_id, queue_name=self.queue_name),
                    )

    async def refresh_in_flight(self) -> None:
        """Reset the idle time of the messages this worker holds: it is alive."""
        if not self.in_flight:
            return
        async with Redis(connection_pool=self.connection_pool) as redis:
            await redis.xclaim(
                self.queue_name,
                self.consumer_group_name,
                self.consumer_name,
                min_idle_time=0,
                message_ids=list(self.in_flight),
                justid=True,
            )


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    last_seen: float  # epoch seconds
    concurrency: int


class JobQueue:
    """Where job items wait for a worker; `handler` is what a worker does with one."""

    def __init__(
        self,
        *,
        redis_url: str | None,
        queue_name: str,
        concurrency: int,
        redelivery_seconds: float,
    ) -> None:
        self.queue_name = queue_name
        self.concurrency = concurrency
        self.redelivery_seconds = redelivery_seconds
        self.broker: AsyncBroker
        if redis_url is None:
            self.broker = InMemoryBroker(max_async_tasks=concurrency)
        else:
            self.broker = _StreamBroker(
                redis_url, queue_name, redelivery_seconds=redelivery_seconds, batch=concurrency
            )
        self._redis_url = redis_url
        self._handler: ItemHandler | None = None

        async def process_job_item(job_id: str, position: int) -> None:
            if self._handler is None:  # a queue opened to send was handed an item: a bug
                raise RuntimeError("this process runs no job worker")
            await self._handler(job_id, position)

        self._task = self.broker.register_task(process_job_item, task_name=TASK_NAME)
        self._started = False

    @property
    def kind(self) -> str:
        return "memory" if self._redis_url is None else "redis"

    @property
    def in_memory(self) -> bool:
        return self._redis_url is None

    async def start(self, handler: ItemHandler | None = None) -> None:
        """With a handler, items are run here. Without one (an API that only sends), nothing
        is asked of Redis now: the API starts whether Redis answers or not, and a worker's
        group reads the stream from its start whenever it is made."""
        self._handler = handler
        self._started = True
        if handler is None and not self.in_memory:
            return
        self.broker.is_worker_process = handler is not None
        await self.broker.startup()

    async def close(self) -> None:
        if self._started:
            await self.broker.shutdown()

    async def enqueue(self, job_id: str, positions: Iterable[int]) -> None:
        """A message per position; raises what the broker raised (Redis down)."""
        kicker = self._task.kicker()
        pending = list(positions)
        for start in range(0, len(pending), _ENQUEUE_CHUNK):
            chunk = pending[start : start + _ENQUEUE_CHUNK]
            await asyncio.gather(*(kicker.kiq(job_id, position) for position in chunk))

    async def depth(self) -> int | None:
        """Messages not yet acknowledged; None where the broker cannot say (in memory)."""
        if not isinstance(self.broker, _StreamBroker):
            return None
        async with Redis(connection_pool=self.broker.connection_pool) as redis:
            length: int = await redis.xlen(self.queue_name)
            return length

    async def workers(self, *, now: float | None = None) -> list[WorkerInfo]:
        """Workers heard from within WORKER_SEEN_SECONDS (the in-memory queue: none)."""
        if not isinstance(self.broker, _StreamBroker):
            return []
        now = time.time() if now is None else now
        async with Redis(connection_pool=self.broker.connection_pool) as redis:
            raw: dict[bytes, bytes] = await redis.hgetall(self._workers_key)  # type: ignore[assignment]
        seen = []
        for name, value in raw.items():
            fields: dict[str, Any] = json.loads(value)
            if now - fields["last_seen"] <= WORKER_SEEN_SECONDS:
                seen.append(WorkerInfo(name.decode(), fields["last_seen"], fields["concurrency"]))
        return sorted(seen, key=lambda worker: worker.name)

    @property
    def _workers_key(self) -> str:
        return f"{self.queue_name}:workers"

    async def work(self, handler: ItemHandler, stop: asyncio.Event) -> None:
        """Take items from the Redis stream until `stop` is set, JOB_CONCURRENCY at once."""
        broker = self.broker
        if not isinstance(broker, _StreamBroker):
            raise RuntimeError("a worker process needs REDIS_URL: the in-memory queue is local")
        await self.start(handler)
        receiver = Receiver(
            broker,
            max_async_tasks=self.concurrency,
            max_prefetch=0,
            run_startup=False,
            propagate_exceptions=False,
            wait_tasks_timeout=self.redelivery_seconds,
        )
        beat = asyncio.create_task(self._heartbeat(broker, stop))
        try:
            await receiver.listen(stop)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            await self._forget(broker)

    async def _heartbeat(self, broker: _StreamBroker, stop: asyncio.Event) -> None:
        """Keep this worker's messages and its entry in the workers' hash fresh."""
        interval = min(5.0, self.redelivery_seconds / 3)
        while not stop.is_set():
            try:
                await broker.refresh_in_flight()
                async with Redis(connection_pool=broker.connection_pool) as redis:
                    entry = {"last_seen": time.time(), "concurrency": self.concurrency}
                    await redis.hset(self._workers_key, broker.consumer_name, json.dumps(entry))
            except Exception:  # Redis away for a while: the next beat tries again
                logger.warning("job worker heartbeat failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def _forget(self, broker: _StreamBroker) -> None:
        try:
            async with Redis(connection_pool=broker.connection_pool) as redis:
                await redis.hdel(self._workers_key, broker.consumer_name)
        except Exception:
            logger.warning("could not remove this worker from the workers' hash", exc_info=True)
