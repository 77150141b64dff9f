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
- Redis going away does not stop a worker: it logs one warning, tries again with backoff while
  Redis does not answer, and makes the stream and its consumer group again (XGROUP CREATE
  MKSTREAM) when Redis comes back without them (a restart without persistence, FLUSHDB). The
  messages lost with them are sent again by the workers' sweep (`JobService.send_unsent`).
- `InMemoryBroker` (taskiq) runs each message as a task of this process: the zero-configuration
  default, and what tests use when they need no Redis. Nothing survives a restart, so the
  jobs service queues the unfinished items again at the first call of the jobs API after it.

Workers say they are alive in a Redis hash (`<queue>:workers`), for /internal/jobs.
"""

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig
from taskiq import AckableMessage, AsyncBroker, InMemoryBroker
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

logger = logging.getLogger(__name__)

TASK_NAME = "process_job_item"
GROUP = "workers"
ItemHandler = Callable[[str, int], Awaitable[None]]
Sweep = Callable[[], Awaitable[int]]
# Redis not answering (restarting, unreachable): tried again after a pause that doubles up to this.
_RETRY_FIRST_SECONDS = 0.1
_RETRY_MAX_SECONDS = 5.0
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# What Redis answers a consumer once the stream (with its group) is gone: `UNBLOCKED` to a read
# waiting on it, `NOGROUP` to every command after.
_STREAM_GONE = ("NOGROUP", "UNBLOCKED")
_SCAN_CHUNK = 1000
_REDIS_TIMEOUT_SECONDS = 10.0
# Workers report every few seconds; one unheard of for this long is no longer listed.
WORKER_SEEN_SECONDS = 60.0
_ENQUEUE_CHUNK = 200


def worker_name() -> str:
    """This process, as the Redis consumer group and the job items' `worker` column name it.

    Asked when a queue is made, not when the module is imported: a process forked after the
    import (a preloading server) is another consumer, and two consumers under one name would
    take each other's pending items for their own.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


class _StreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, with the adjustments the module docstring explains."""

    def __init__(self, url: str, queue_name: str, *, redelivery_seconds: float, batch: int) -> None:
        super().__init__(
            url,
            queue_name=queue_name,
            consumer_group_name=GROUP,
            consumer_name=worker_name(),
            consumer_id="0",  # a group made after messages were queued still gets them
            xread_block=1000,
            idle_timeout=int(redelivery_seconds * 1000),
            xread_count=batch,
            unacknowledged_batch_size=batch,
            max_connection_pool_size=64,
            # As in redis_client.create_redis: with them on, the pool does not check for the
            # connections a restarted Redis closed, and each fails its next command.
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
            # A Redis that stops answering (frozen, or a dead network) is an error to wait
            # out, not a read blocked for ever: a bound well above the read's own block.
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
        )
        self.in_flight: set[str] = set()
        self.outage = RedisOutage()
        # Set when this worker made the consumer group: the messages of an earlier stream, if
        # there was one, are lost, and the sweep should look for their items now.
        self.group_made = asyncio.Event()

    async def startup(self) -> None:
        # No consumer group here (taskiq-redis makes it now, and a worker started while Redis
        # is away would crash): `listen` makes it, waiting for Redis.
        await super(RedisStreamBroker, self).startup()

    async def _make_group(self, redis: Redis) -> None:
        try:
            await redis.xgroup_create(
                self.queue_name, self.consumer_group_name, id=self.consumer_id, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return  # another worker made it
        self.group_made.set()

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        async def ack() -> None:
            # The item is finished in the database already: a message left unacknowledged
            # (Redis away) is delivered again, and skipped.
            self.in_flight.discard(id)
            try:
                async with (
                    Redis(connection_pool=self.connection_pool) as redis,
                    redis.pipeline(transaction=False) as pipe,
                ):
                    pipe.xack(queue_name, self.consumer_group_name, id)
                    pipe.xdel(queue_name, id)
                    await pipe.execute()
            except _UNREACHABLE as exc:
                self.outage.began(exc)
            except ResponseError:  # the stream remade meanwhile: nothing left to acknowledge
                logger.warning("could not acknowledge job message %s", id, exc_info=True)

        return ack

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """New messages and those of workers that stopped answering, for as long as asked:
        Redis away or emptied is waited for, never raised."""
        pause = _RETRY_FIRST_SECONDS
        group_made = False
        while True:
            try:
                async with Redis(connection_pool=self.connection_pool) as redis:
                    if not group_made:
                        await self._make_group(redis)
                        self.outage.ended()
                        group_made = True
                    while True:
                        messages = await self._read(redis)
                        self.outage.ended()
                        pause = _RETRY_FIRST_SECONDS
                        for message_id, data in messages:
                            self.in_flight.add(message_id)
                            yield AckableMessage(
                                data=data,
                                ack=self._ack_generator(id=message_id, queue_name=self.queue_name),
                            )
            except ResponseError as exc:
                if not str(exc).startswith(_STREAM_GONE):
                    raise
                logger.warning(
                    "job stream %s is gone (Redis restarted without persistence, or was "
                    "flushed): making it again; the unfinished items whose messages were lost "
                    "are sent again",
                    self.queue_name,
                )
                group_made = False
            except _UNREACHABLE as exc:
                self.outage.began(exc)
                await asyncio.sleep(pause * random.uniform(1.0, 1.5))  # noqa: S311 - jitter
                pause = min(pause * 2, _RETRY_MAX_SECONDS)

    async def _read(self, redis: Redis) -> list[tuple[str, bytes]]:
        """New messages (waiting up to `block` for one), then those idle past `idle_timeout`."""
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
                "claimed %d job message(s) of a worker that stopped answering", len(claimed)
            )
        # A message deleted meanwhile: XAUTOCLAIM reports it without fields, and drops it.
        return [(id, fields[b"data"]) for id, fields in [*messages, *claimed] if fields]

    async def refresh_in_flight(self) -> None:
        """Reset the idle time of the messages this worker holds: it is alive."""
        if not self.in_flight:
            return
        async with Redis(connection_pool=self.connection_pool) as redis:
            try:
                await redis.xclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=0,
                    message_ids=list(self.in_flight),
                    justid=True,
                )
            except ResponseError as exc:
                if not str(exc).startswith(_STREAM_GONE):
                    raise
                # Lost with the stream; `listen` makes it again.


class RedisOutage:
    """A Redis that stopped answering, logged once when it stops and once when it is back."""

    def __init__(self) -> None:
        self._since: float | None = None

    def began(self, error: BaseException) -> None:
        if self._since is None:
            self._since = time.monotonic()
            logger.warning(
                "job queue: Redis does not answer (%s); trying again, with backoff, until it does",
                error or type(error).__name__,
            )

    def ended(self) -> None:
        if self._since is not None:
            logger.info(
                "job queue: Redis answers again after %.1f s", time.monotonic() - self._since
            )
            self._since = None


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

    async def messages(self) -> set[tuple[str, int]]:
        """`(job_id, position)` of every message in the stream: waiting, or in a worker's hands
        (an acknowledged message is deleted). Read a chunk at a time; empty in memory."""
        if not isinstance(self.broker, _StreamBroker):
            return set()
        found: set[tuple[str, int]] = set()
        start = "-"
        async with Redis(connection_pool=self.broker.connection_pool) as redis:
            while chunk := await redis.xrange(self.queue_name, start, "+", count=_SCAN_CHUNK):
                entries: list[tuple[bytes, dict[bytes, bytes]]] = cast(Any, chunk)
                for _, fields in entries:
                    job_id, position = self.broker.formatter.loads(fields[b"data"]).args
                    found.add((job_id, position))
                start = "(" + entries[-1][0].decode()
        return found

    async def work(
        self, handler: ItemHandler, stop: asyncio.Event, sweep: Sweep | None = None
    ) -> None:
        """Take items from the Redis stream until `stop` is set, JOB_CONCURRENCY at once; and
        `sweep` (send the items the stream lacks) every JOB_REDELIVERY_SECONDS, by one worker
        at a time."""
        broker = self.broker
        if not isinstance(broker, _StreamBroker):
            raise RuntimeError("a worker process needs REDIS_URL: the in-memory queue is local")
        await self.start(handler)
        chores = [asyncio.create_task(self._heartbeat(broker, stop))]
        if sweep is not None:
            chores.append(asyncio.create_task(self._sweeps(broker, sweep, stop)))
        try:
            await self._receive(broker, stop)
        finally:
            for chore in chores:
                chore.cancel()
            await asyncio.gather(*chores, return_exceptions=True)
            await self._forget(broker)

    async def _receive(self, broker: _StreamBroker, stop: asyncio.Event) -> None:
        """Taskiq's receiver, started again should it fail (a bug, not Redis: the broker waits
        for Redis), after a pause: a worker never stops taking items unless told to."""
        pause = _RETRY_FIRST_SECONDS
        while not stop.is_set():
            receiver = Receiver(
                broker,
                max_async_tasks=self.concurrency,
                max_prefetch=0,
                run_startup=False,
                propagate_exceptions=False,
                wait_tasks_timeout=self.redelivery_seconds,
            )
            try:
                await receiver.listen(stop)
            except Exception:
                logger.exception("job worker: the receiver failed; starting it again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, _RETRY_MAX_SECONDS)

    async def _heartbeat(self, broker: _StreamBroker, stop: asyncio.Event) -> None:
        """Keep this worker's messages and its entry in the workers' hash fresh."""
        while not stop.is_set():
            try:
                await broker.refresh_in_flight()
                async with Redis(connection_pool=broker.connection_pool) as redis:
                    entry = {"last_seen": time.time(), "concurrency": self.concurrency}
                    await redis.hset(self._workers_key, broker.consumer_name, json.dumps(entry))
            except _UNREACHABLE as exc:  # the next beat tries again
                broker.outage.began(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._beat_seconds)

    @property
    def _beat_seconds(self) -> float:
        return min(5.0, self.redelivery_seconds / 3)

    async def _sweeps(self, broker: _StreamBroker, sweep: Sweep, stop: asyncio.Event) -> None:
        """`sweep` every JOB_REDELIVERY_SECONDS by whichever worker takes the turn first (a key
        set with NX that expires with the turn), and at once when this worker made the stream's
        consumer group (the messages of an earlier stream are lost)."""
        turn = int(self.redelivery_seconds * 1000)
        while not stop.is_set():
            made = broker.group_made.is_set()
            broker.group_made.clear()
            try:
                async with Redis(connection_pool=broker.connection_pool) as redis:
                    mine = await redis.set(self._sweep_key, broker.consumer_name, nx=True, px=turn)
                if made:  # first, the other workers' heartbeats: their items are not unsent
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._beat_seconds)
                if mine or made:
                    await sweep()
            except _UNREACHABLE as exc:
                broker.outage.began(exc)
            except Exception:
                logger.exception("job worker: the sweep for unsent items failed")
            waits = [
                asyncio.create_task(stop.wait()),
                asyncio.create_task(broker.group_made.wait()),
            ]
            await asyncio.wait(
                waits, timeout=self.redelivery_seconds, return_when="FIRST_COMPLETED"
            )
            for wait in waits:
                wait.cancel()

    @property
    def _sweep_key(self) -> str:
        return f"{self.queue_name}:sweep"

    async def _forget(self, broker: _StreamBroker) -> None:
        try:
            async with Redis(connection_pool=broker.connection_pool) as redis:
                await redis.hdel(self._workers_key, broker.consumer_name)
        except Exception:
            logger.warning("could not remove this worker from the workers' hash", exc_info=True)
