"""What a worker does with one job item: the same TextProcessor as the API, exactly once.

Delivery is at least once (a worker may die after its work and before its acknowledgement), so
the item's state in the database decides: an item already finished or cancelled is skipped, and
the item's result, its history row (naming job and item) and its key's usage are committed in
one transaction that only applies while the item is still unfinished. A second delivery may
repeat the provider call of a first one that died before committing; it can never leave a second
row or a second charge.

An item waits, holding its worker slot, while its key is over its rate limit (charged per item,
across every worker and the API, as the single endpoint charges) and while the circuit breaker
is open; the database being unavailable makes it wait too. Anything else ends the item alone,
with its error: a poison item fails, the job goes on. An item whose worker died under it more
than JOB_MAX_ATTEMPTS times fails as poison too.
"""

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

from shared.errors import ErrorDetail
from shared.jobs import JOB_TYPE_BY_OPERATION, BaseJobRequest, ItemStatus
from shared.text import OPTIONS_TYPE_BY_OPERATION, Operation, TextProcessRequest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.config import Settings
from app.core.exceptions import (
    AppError,
    CircuitOpenError,
    DatabaseUnavailableError,
    ProviderError,
)
from app.infrastructure.database.engine import Database
from app.infrastructure.database.group_commit import GroupCommitter
from app.infrastructure.database.models import Job, JobItem, utcnow
from app.infrastructure.rate_limit import RateLimiter
from app.services.history import HistoryEntry, write_entries
from app.services.text_processor import TextProcessor

logger = logging.getLogger(__name__)
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

_PENDING = (ItemStatus.QUEUED.value, ItemStatus.RUNNING.value)
# An open breaker (or a failing provider) is tried again at least this often: another worker's
# trial call may have closed it, and in tests the breaker's clock is not the wall clock.
_POLL_SECONDS = 0.5
_DATABASE_RETRY_SECONDS = 1.0
_SPECS_KEPT = 256


@dataclass(frozen=True)
class _JobSpec:
    caller: str
    tier: str | None
    request: BaseJobRequest  # operation, options and question; no items


@dataclass(frozen=True)
class _Finished:
    job_id: str
    position: int
    status: ItemStatus
    entry: HistoryEntry
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class JobRunner:
    def __init__(
        self,
        database: Database,
        processor: TextProcessor,
        rate_limiter: RateLimiter,
        settings: Settings,
        *,
        model_id: str,
        worker_name: str,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.worker_name = worker_name
        self._database = database
        self._processor = processor
        self._limiter = rate_limiter
        self._settings = settings
        self._model_id = model_id
        self._sleep = sleep
        # The in-memory broker starts every message at once: the slots bound it as the Redis
        # stream's receiver does.
        self._slots = asyncio.Semaphore(settings.job_concurrency)
        self._specs: OrderedDict[str, _JobSpec] = OrderedDict()
        self._in_hand: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._finisher: GroupCommitter[_Finished] = GroupCommitter(database, _finish_batch)

    async def close(self) -> None:
        """Stop the items in hand (an unfinished item is delivered again, or queued again at the
        next start in memory), then wait for the results already handed to the database."""
        self._closing = True
        for task in list(self._in_hand):
            task.cancel()
        await asyncio.gather(*self._in_hand, return_exceptions=True)
        await self._finisher.close()

    async def run_item(self, job_id: str, position: int) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_hand.add(task)
        try:
            await self._run_item(job_id, position)
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # Stopped by close(): the item stays unfinished for its next delivery; this is no
            # failure for the queue to report.
        finally:
            self._in_hand.discard(task)

    async def _run_item(self, job_id: str, position: int) -> None:
        async with self._slots:
            started = await self._until_available(lambda: self._start(job_id, position))
            if started is None:
                return  # finished by an earlier delivery, or cancelled
            spec, text, attempts = started
            finished = await self._process(spec, job_id, position, text, attempts)
            await self._until_available(lambda: self._finisher.run(finished))

    async def _process(
        self, spec: _JobSpec, job_id: str, position: int, text: str, attempts: int
    ) -> _Finished:
        def finished(status: ItemStatus, entry: HistoryEntry, **fields: Any) -> _Finished:
            named = replace(entry, job_id=job_id, job_item=position)
            return _Finished(job_id, position, status, named, **fields)

        if attempts > self._settings.job_max_attempts:
            code = "job_item_abandoned"
            message = (
                f"The item was abandoned after {attempts - 1} deliveries: each time, the worker "
                "processing it stopped."
            )
            error = ErrorDetail(code=code, message=message).model_dump(mode="json")
            return finished(ItemStatus.FAILED, self._entry(spec, text, code), error=error)
        request = cast(TextProcessRequest, spec.request.item_request(text))
        if attempts == 1:  # an item counts once toward its key's limit, as it is billed once
            await self._wait_for_rate_limit(spec)
        transient_failures = 0
        while True:
            captured: list[HistoryEntry] = []

            async def capture(entry: HistoryEntry) -> None:
                captured.append(entry)  # noqa: B023 - awaited within this turn of the loop

            try:
                response = await self._processor.process(request, spec.caller, record=capture)
            except CircuitOpenError as exc:
                await self._sleep(_bounded(exc.retry_after_seconds, _POLL_SECONDS))
                continue
            except ProviderError as exc:
                # A provider that is failing for everyone (it is about to open the breaker, or
                # already has) is no fault of this item: it waits, a few times, and tries again.
                transient_failures += 1
                if exc.transient and transient_failures < self._settings.job_max_attempts:
                    await self._sleep(_bounded(exc.retry_after_seconds, _POLL_SECONDS))
                    continue
                return finished(ItemStatus.FAILED, captured[0], error=_detail(exc))
            except AppError as exc:
                return finished(ItemStatus.FAILED, captured[0], error=_detail(exc))
            except Exception:
                logger.exception("job %s item %d failed unexpectedly", job_id, position)
                internal = AppError("The item could not be processed (an internal error).")
                entry = replace(captured[0], outcome=internal.code) if captured else None
                return finished(
                    ItemStatus.FAILED,
                    entry or self._entry(spec, text, internal.code),
                    error=_detail(internal),
                )
            return finished(ItemStatus.DONE, captured[0], result=response.model_dump(mode="json"))

    def _entry(self, spec: _JobSpec, text: str, outcome: str) -> HistoryEntry:
        return HistoryEntry(
            api_key_id=spec.caller,
            operation=spec.request.operation,
            text=text,
            model=self._model_id,
            cached=False,
            degraded=False,
            latency_ms=0.0,
            outcome=outcome,
        )

    async def _wait_for_rate_limit(self, spec: _JobSpec) -> None:
        """Charge the item to its key's limit, waiting until the limit has room."""
        if spec.tier is None:
            return  # an operator's job
        per_minute = self._settings.requests_per_minute(spec.tier)
        while not (result := await self._limiter.hit(spec.caller, per_minute=per_minute)).allowed:
            # A little jitter: the waiting items of every worker do not come back as one.
            wait = (result.retry_after_seconds or 1.0) + random.uniform(0, 0.1)  # noqa: S311
            await self._sleep(wait)

    async def _start(self, job_id: str, position: int) -> tuple[_JobSpec, str, int] | None:
        """Mark the item running (one more delivery, by this worker); None if it is not pending."""
        async with self._database.session() as session:
            row = (
                await session.execute(
                    update(JobItem)
                    .where(
                        JobItem.job_id == job_id,
                        JobItem.position == position,
                        JobItem.status.in_(_PENDING),
                    )
                    .values(
                        status=ItemStatus.RUNNING.value,
                        attempts=JobItem.attempts + 1,
                        worker=self.worker_name,
                        started_at=func.coalesce(JobItem.started_at, utcnow()),
                    )
                    .returning(JobItem.text, JobItem.attempts)
                )
            ).first()
            if row is None or row.text is None:
                return None
            spec = self._specs.get(job_id) or await self._load_spec(session, job_id)
        return spec, row.text, row.attempts

    async def _load_spec(self, session: AsyncSession, job_id: str) -> _JobSpec:
        job = (await session.scalars(select(Job).where(Job.id == job_id))).one()
        operation = Operation(job.operation)
        request = JOB_TYPE_BY_OPERATION[operation].model_construct(
            operation=operation,
            options=OPTIONS_TYPE_BY_OPERATION[operation].model_validate(job.options),
            question=job.question,
            items=[],
        )
        spec = _JobSpec(job.api_key_id, job.tier, request)
        self._specs[job_id] = spec
        if len(self._specs) > _SPECS_KEPT:
            self._specs.popitem(last=False)
        return spec

    async def _until_available(self, action: Callable[[], Awaitable[T]]) -> T:
        """`action`, again after a pause for as long as the database is unavailable."""
        while True:
            try:
                return await action()
            except DatabaseUnavailableError:
                logger.warning("database unavailable: the job item waits", exc_info=True)
                await self._sleep(_DATABASE_RETRY_SECONDS)


def _bounded(seconds: float | None, ceiling: float) -> float:
    return min(max(seconds or ceiling, 0.05), ceiling)


def _detail(error: AppError) -> dict[str, Any]:
    detail = ErrorDetail(code=error.code, message=error.message, details=error.details)
    return detail.model_dump(mode="json")


async def _finish_batch(connection: AsyncConnection, items: list[_Finished]) -> None:
    """Finish each item that is still unfinished, and write history and usage for those only:
    an item another delivery finished first is left as that delivery left it."""
    now = utcnow()
    won: list[_Finished] = []
    for item in items:
        result = await connection.execute(
            update(JobItem)
            .where(
                JobItem.job_id == item.job_id,
                JobItem.position == item.position,
                JobItem.status.in_(_PENDING),
            )
            .values(
                status=item.status.value,
                result=item.result,
                error=item.error,
                text=None,
                finished_at=now,
            )
        )
        if cast(Any, result).rowcount:
            won.append(item)
    if won:
        await write_entries(connection, [item.entry for item in won])
