"""Batch jobs as their owner and the operator see them: submit, follow, read back, cancel.

A job and its items are written in one transaction, then a message per item is queued. A job's
status and counts are read from its items; a job belongs to the key that submitted it, and any
other key is told it does not exist (404), whether it does or not.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import ErrorDetail
from shared.jobs import (
    FINISHED_JOB_STATUSES,
    BaseJobRequest,
    ItemStatus,
    JobAccepted,
    JobInfo,
    JobItemResult,
    JobList,
    JobResultsPage,
    JobsOverview,
    JobStatus,
    StuckJob,
    WorkerSeen,
)
from shared.text import Operation, TextProcessResponse, options_dict
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.exceptions import NotFoundError, QueueUnavailableError
from app.infrastructure.database.engine import Database
from app.infrastructure.database.models import Job, JobItem, utcnow
from app.infrastructure.job_queue import JobQueue

logger = logging.getLogger(__name__)
_PENDING = (ItemStatus.QUEUED.value, ItemStatus.RUNNING.value)
_RESULTS_CHUNK = 1000


class JobService:
    def __init__(self, database: Database, queue: JobQueue, settings: Settings) -> None:
        self._database = database
        self._queue = queue
        self._stuck_seconds = settings.job_stuck_seconds
        self._redelivery_seconds = settings.job_redelivery_seconds
        self._concurrency = settings.job_concurrency
        self._embedded = settings.runs_embedded_worker
        # The in-memory queue died with the last process: its unfinished items are queued again
        # at the first call of the jobs API (not at start, which asks the database nothing).
        self._recovered = not (self._embedded and queue.in_memory)
        self._recovering = asyncio.Lock()

    async def submit(self, request: BaseJobRequest, caller: str, tier: str | None) -> JobAccepted:
        """The job and its items stored, then queued; a queue that refuses them leaves no job."""
        await self._recover()
        job_id = uuid.uuid4().hex
        now = utcnow()
        async with self._database.session() as session:
            session.add(
                Job(
                    id=job_id,
                    api_key_id=caller,
                    tier=tier,
                    operation=request.operation.value,
                    options=options_dict(request.options),
                    question=request.question,
                    total=len(request.items),
                    created_at=now,
                )
            )
            await session.flush()
            await session.execute(
                insert(JobItem),
                [
                    {
                        "job_id": job_id,
                        "position": position,
                        "ref": item.id,
                        "text": item.text,
                        "status": ItemStatus.QUEUED.value,
                    }
                    for position, item in enumerate(request.items)
                ],
            )
        try:
            await self._queue.enqueue(job_id, range(len(request.items)))
        except Exception as exc:
            async with self._database.session() as session:
                await session.execute(delete(Job).where(Job.id == job_id))
            raise QueueUnavailableError(
                "The job queue is unavailable; the job was not accepted. Try again.",
                retry_after_seconds=1.0,
            ) from exc
        return JobAccepted(job_id=job_id, status=JobStatus.QUEUED, total=len(request.items))

    async def info(self, job_id: str, caller: str) -> JobInfo:
        await self._recover()
        async with self._database.session() as session:
            job = await _owned(session, job_id, caller)
            return (await _infos(session, [job]))[0]

    async def page(self, caller: str, *, page: int, page_size: int) -> JobList:
        await self._recover()
        mine = Job.api_key_id == caller
        async with self._database.session() as session:
            total = await session.scalar(select(func.count()).select_from(Job).where(mine)) or 0
            jobs = await session.scalars(
                select(Job)
                .where(mine)
                .order_by(Job.created_at.desc(), Job.id)
                .offset((page - 1) * page_size)
                .limit(page_size)
            )
            items = await _infos(session, list(jobs))
        return JobList(items=items, total=total, page=page, page_size=page_size)

    async def results(
        self, job_id: str, caller: str, *, page: int, page_size: int
    ) -> JobResultsPage:
        await self._recover()
        async with self._database.session() as session:
            job = await _owned(session, job_id, caller)
            info = (await _infos(session, [job]))[0]
            items = await _results(session, job, (page - 1) * page_size, page_size)
        return JobResultsPage(
            job_id=job_id,
            status=info.status,
            items=items,
            total=job.total,
            page=page,
            page_size=page_size,
        )

    async def all_results(self, job_id: str, caller: str) -> AsyncIterator[JobItemResult]:
        """Every item's result, in order, read a chunk at a time (for the downloads)."""
        async with self._database.session() as session:
            job = await _owned(session, job_id, caller)
        for offset in range(0, job.total, _RESULTS_CHUNK):
            async with self._database.session() as session:
                for item in await _results(session, job, offset, _RESULTS_CHUNK):
                    yield item

    async def cancel(self, job_id: str, caller: str) -> JobInfo:
        """Items not started will not run; items running finish. A finished job stays as it is."""
        await self._recover()
        now = utcnow()
        async with self._database.session() as session:
            # The write first: SQLite cannot upgrade a read transaction after another writer.
            cancelled = await session.execute(
                update(JobItem)
                .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.QUEUED.value)
                .where(select(Job.id).where(Job.id == job_id, Job.api_key_id == caller).exists())
                .values(status=ItemStatus.CANCELLED.value, text=None, finished_at=now)
            )
            job = await _owned(session, job_id, caller)
            info = (await _infos(session, [job]))[0]
            if info.status not in FINISHED_JOB_STATUSES or _rowcount(cancelled):
                job.cancelled_at = job.cancelled_at or now
                info = (await _infos(session, [job]))[0]
        return info

    async def overview(self) -> JobsOverview:
        await self._recover()
        now = utcnow()
        async with self._database.session() as session:
            counts = dict(
                (
                    await session.execute(
                        select(JobItem.status, func.count())
                        .where(JobItem.status.in_(_PENDING))
                        .group_by(JobItem.status)
                    )
                ).all()
            )
            stuck = await _stuck(session, now - timedelta(seconds=self._stuck_seconds))
        workers = [
            WorkerSeen(
                name=worker.name,
                last_seen=datetime.fromtimestamp(worker.last_seen, UTC),
                concurrency=worker.concurrency,
            )
            for worker in await self._queue.workers()
        ]
        if self._embedded and self._queue.in_memory:
            embedded = WorkerSeen(name="embedded", last_seen=now, concurrency=self._concurrency)
            workers.insert(0, embedded)
        return JobsOverview(
            broker=self._queue.kind,
            queue_depth=await self._queue.depth(),
            queued_items=counts.get(ItemStatus.QUEUED.value, 0),
            running_items=counts.get(ItemStatus.RUNNING.value, 0),
            workers=workers,
            stuck=stuck,
        )

    async def _recover(self) -> None:
        if self._recovered:
            return
        async with self._recovering:
            if not self._recovered:
                await self.requeue_unfinished()
                self._recovered = True

    async def send_unsent(self) -> int:
        """Send again each unfinished item of which the Redis stream holds no message: the API
        that stored it died before sending it, or Redis lost it (a restart without
        persistence, FLUSHDB). Workers call this in turns (JobQueue.work).

        Only items of jobs older than JOB_REDELIVERY_SECONDS (a younger job's messages may be
        on their way still), and not a running item whose worker is alive (it will finish it).
        The stream is read before the database: a message deleted in between is acknowledged,
        so its item was finished (committed) before, and is not pending any more. A message
        sent twice all the same is harmless: the runner finishes and bills an item once.
        """
        in_stream = await self._queue.messages()
        alive = [worker.name for worker in await self._queue.workers()]
        before = utcnow() - timedelta(seconds=self._redelivery_seconds)
        async with self._database.session() as session:
            rows = (
                await session.execute(
                    select(JobItem.job_id, JobItem.position)
                    .join(Job, Job.id == JobItem.job_id)
                    .where(Job.created_at < before)
                    .where(
                        (JobItem.status == ItemStatus.QUEUED.value)
                        | (
                            (JobItem.status == ItemStatus.RUNNING.value)
                            & JobItem.worker.not_in(alive)
                        )
                    )
                    .order_by(JobItem.job_id, JobItem.position)
                )
            ).all()
        unsent = [
            (job_id, position) for job_id, position in rows if (job_id, position) not in in_stream
        ]
        await self._send(unsent)
        if unsent:
            logger.warning(
                "jobs: %d unfinished item(s) had no message in the queue (an API stopped while "
                "sending them, or Redis lost them): sent again",
                len(unsent),
            )
        return len(unsent)

    async def _send(self, items: Sequence[tuple[str, int]]) -> None:
        by_job: dict[str, list[int]] = {}
        for job_id, position in items:
            by_job.setdefault(job_id, []).append(position)
        for job_id, positions in by_job.items():
            await self._queue.enqueue(job_id, positions)

    async def requeue_unfinished(self) -> int:
        """Queue every unfinished item again: the in-memory queue lost them with the process
        that held them. Items finished meanwhile are skipped by the runner."""
        async with self._database.session() as session:
            rows = (
                await session.execute(
                    select(JobItem.job_id, JobItem.position)
                    .where(JobItem.status.in_(_PENDING))
                    .order_by(JobItem.job_id, JobItem.position)
                )
            ).all()
        await self._send([(job_id, position) for job_id, position in rows])
        if rows:
            logger.info("jobs: %d unfinished item(s) queued again", len(rows))
        return len(rows)


async def _owned(session: AsyncSession, job_id: str, caller: str) -> Job:
    job = await session.scalar(select(Job).where(Job.id == job_id, Job.api_key_id == caller))
    if job is None:
        raise NotFoundError(f"Job {job_id} does not exist.")
    return job


async def _infos(session: AsyncSession, jobs: Sequence[Job]) -> list[JobInfo]:
    """Each job's status and counts, from its items: one grouped query for all of them."""
    if not jobs:
        return []
    rows = await session.execute(
        select(
            JobItem.job_id,
            JobItem.status,
            func.count(),
            func.min(JobItem.started_at),
            func.max(JobItem.finished_at),
        )
        .where(JobItem.job_id.in_([job.id for job in jobs]))
        .group_by(JobItem.job_id, JobItem.status)
    )
    counts: dict[str, dict[str, int]] = {}
    started: dict[str, datetime] = {}
    finished: dict[str, datetime] = {}
    for job_id, status, count, first_start, last_finish in rows:
        counts.setdefault(job_id, {})[status] = count
        if first_start is not None:
            started[job_id] = min(first_start, started.get(job_id, first_start))
        if last_finish is not None and status != ItemStatus.CANCELLED.value:
            finished[job_id] = max(last_finish, finished.get(job_id, last_finish))
    return [
        _info(job, counts.get(job.id, {}), started.get(job.id), finished.get(job.id))
        for job in jobs
    ]


def _info(
    job: Job, counts: dict[str, int], started: datetime | None, finished: datetime | None
) -> JobInfo:
    done = counts.get(ItemStatus.DONE.value, 0)
    failed = counts.get(ItemStatus.FAILED.value, 0)
    pending = sum(counts.get(status, 0) for status in _PENDING)
    if job.cancelled_at is not None:
        status = JobStatus.CANCELLED
    elif pending == 0:
        status = JobStatus.COMPLETED if done else JobStatus.FAILED
    elif started is not None:
        status = JobStatus.RUNNING
    else:
        status = JobStatus.QUEUED
    if pending:
        finished_at = None
    elif job.cancelled_at is not None:
        finished_at = max(filter(None, (finished, job.cancelled_at)))
    else:
        finished_at = finished
    return JobInfo(
        job_id=job.id,
        operation=Operation(job.operation),
        status=status,
        total=job.total,
        done=done,
        failed=failed,
        cancelled=counts.get(ItemStatus.CANCELLED.value, 0),
        pending=pending,
        created_at=job.created_at,
        started_at=started,
        finished_at=finished_at,
    )


async def _results(session: AsyncSession, job: Job, offset: int, limit: int) -> list[JobItemResult]:
    items = await session.scalars(
        select(JobItem)
        .where(JobItem.job_id == job.id)
        .order_by(JobItem.position)
        .offset(offset)
        .limit(limit)
    )
    return [
        JobItemResult(
            index=item.position,
            id=item.ref,
            status=ItemStatus(item.status),
            response=TextProcessResponse.model_validate(item.result) if item.result else None,
            error=ErrorDetail.model_validate(item.error) if item.error else None,
        )
        for item in items
    ]


async def _stuck(session: AsyncSession, before: datetime) -> list[StuckJob]:
    """Unfinished jobs whose last finished item (or creation) is older than `before`."""
    pending = (
        select(JobItem.job_id, func.count().label("pending"))
        .where(JobItem.status.in_(_PENDING))
        .group_by(JobItem.job_id)
        .subquery()
    )
    last = (
        select(JobItem.job_id, func.max(JobItem.finished_at).label("last_finished"))
        .group_by(JobItem.job_id)
        .subquery()
    )
    rows = await session.execute(
        select(Job.id, Job.api_key_id, pending.c.pending, Job.created_at, last.c.last_finished)
        .join(pending, pending.c.job_id == Job.id)
        .join(last, last.c.job_id == Job.id)
        .where(Job.cancelled_at.is_(None))
        .where(func.coalesce(last.c.last_finished, Job.created_at) < before)
        .order_by(Job.created_at)
        .limit(100)
    )
    return [
        StuckJob(
            job_id=job_id,
            key_id=key_id,
            pending=count,
            last_progress_at=last_finished or created_at,
        )
        for job_id, key_id, count, created_at, last_finished in rows
    ]


def _rowcount(result: Any) -> int:
    count: int = result.rowcount
    return count
