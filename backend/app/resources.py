"""Shared clients: created and closed by the lifespan, handed out by the API dependencies."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic_ai.models import Model
from redis.asyncio import Redis

from app.core.config import Settings
from app.infrastructure.ai.provider import AIProvider, build_model
from app.infrastructure.ai.resilient import ResilientProvider, is_provider_failure
from app.infrastructure.cache import ResponseCache
from app.infrastructure.database.engine import Database
from app.infrastructure.job_queue import JobQueue, worker_name
from app.infrastructure.metrics import BREAKER_STATE_VALUES, Metrics
from app.infrastructure.rate_limit import RateLimiter
from app.infrastructure.redis_client import RedisAvailability, create_redis, loggable_url, ping
from app.infrastructure.resilience.breaker import CircuitBreaker
from app.infrastructure.resilience.breaker_store import MemoryBreakerStore, RedisBreakerStore
from app.infrastructure.resilience.retry import RetryPolicy, Sleep
from app.services.accounts import AccountService
from app.services.auth import Authenticator
from app.services.history import HistoryService
from app.services.job_runner import JobRunner
from app.services.jobs import JobService
from app.services.text_processor import TextProcessor

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from app.infrastructure.tracing import Tracing

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Externals:
    """Clients of out-of-process services handed in instead of built from settings.

    Tests pass a fakeredis client or a fake AI model here: the fake stands where the outside
    world stands, and everything of ours between the route and that boundary runs for real.
    A span exporter (the trace collector's stand-in) turns tracing on whatever OTEL_* says.
    """

    redis: Redis | None = None
    ai_model: Model | None = None
    clock: Callable[[], float] = time.time
    sleep: Sleep = asyncio.sleep
    span_exporter: "SpanExporter | None" = None


@dataclass
class Resources:
    settings: Settings
    metrics: Metrics
    database: Database
    redis: Redis | None
    cache: ResponseCache
    authenticator: Authenticator
    provider: ResilientProvider
    text_processor: TextProcessor
    history: HistoryService
    accounts: AccountService
    rate_limiter: RateLimiter
    job_queue: JobQueue
    jobs: JobService
    job_runner: JobRunner


@asynccontextmanager
async def open_resources(
    settings: Settings,
    metrics: Metrics,
    externals: Externals,
    tracing: "Tracing | None" = None,
    *,
    worker_process: bool = False,
) -> AsyncIterator[Resources]:
    """Everything the API (or, with `worker_process`, a job worker) uses, closed on exit."""
    model = externals.ai_model or build_model(  # bad AI_MODEL: stop here
        settings, tracing.instrument_http_client if tracing else None
    )
    provider = AIProvider(model, tracing.ai_instrumentation() if tracing else None)
    database = Database(
        settings.database_url, keep_connection_seconds=settings.database_keep_connection_seconds
    )
    history = HistoryService(database)
    redis = externals.redis
    if redis is None and settings.redis_url:
        redis = await _open_redis(settings.redis_url, settings.redis_timeout_seconds)
    if tracing is not None and redis is not None:
        tracing.instrument_redis(redis)
    # One for the whole process: a timeout met by any component keeps all of them off Redis.
    availability = None if redis is None else RedisAvailability(redis, clock=externals.clock)
    resilient: ResilientProvider | None = None
    job_queue = JobQueue(
        redis_url=settings.redis_url,
        queue_name=settings.job_queue_name,
        concurrency=settings.job_concurrency,
        redelivery_seconds=settings.job_redelivery_seconds,
    )
    rate_limiter = RateLimiter(availability, reserve_seconds=settings.rate_limit_reserve_seconds)
    job_runner: JobRunner | None = None
    embedded: asyncio.Task[None] | None = None
    stop_embedded = asyncio.Event()
    try:
        if settings.auto_migrate:
            await database.migrate()
        if tracing is not None:  # after the migration: its statements are no request's
            tracing.instrument_engine(database.engine)
        cache = ResponseCache(
            availability,
            lru_size=settings.cache_lru_size,
            max_stale_seconds=settings.cache_stale_grace_seconds,
            metrics=metrics,
            clock=externals.clock,
        )
        breaker = CircuitBreaker(
            "ai_provider",
            RedisBreakerStore(availability) if availability is not None else MemoryBreakerStore(),
            failure_threshold=settings.breaker_failure_threshold,
            recovery_seconds=settings.breaker_recovery_seconds,
            window_seconds=settings.breaker_window_seconds,
            half_open_max_calls=settings.breaker_half_open_max_calls,
            clock=externals.clock,
            is_failure=is_provider_failure,
            on_transition=lambda name, _before, after: metrics.breaker_changed(name, after.value),
        )
        metrics.breaker_state.labels(breaker.name).set(
            BREAKER_STATE_VALUES[(await breaker.snapshot()).state.value]
        )
        resilient = ResilientProvider(
            provider,
            breaker,
            RetryPolicy(
                max_attempts=settings.ai_max_attempts,
                attempt_timeout_seconds=settings.ai_attempt_timeout_seconds,
                deadline_seconds=settings.ai_request_deadline_seconds,
                initial_backoff_seconds=settings.ai_retry_initial_seconds,
            ),
            metrics,
            externals.sleep,
            check_interval_seconds=settings.ai_check_interval_seconds,
            clock=externals.clock,
        )
        text_processor = TextProcessor(
            resilient,
            cache,
            history,
            ttl_seconds=settings.cache_ttl_seconds,
            stale_grace_seconds=settings.cache_stale_grace_seconds,
            batch_concurrency=settings.batch_concurrency,
            tracer=tracing.tracer() if tracing else None,
        )
        accounts = AccountService(database, settings, clock=externals.clock)
        job_runner = JobRunner(
            database,
            text_processor,
            rate_limiter,
            settings,
            model_id=resilient.model_id,
            worker_name=worker_name() if worker_process or settings.redis_url else "embedded",
        )
        jobs = JobService(database, job_queue, settings)
        if not worker_process:
            embedded = await _start_jobs(settings, job_queue, job_runner, jobs, stop_embedded)
        if settings.uses_dev_keys:
            logger.warning(
                "development keys in use: public %r, operator %r (set API_KEYS and "
                "INTERNAL_API_KEYS to replace them)",
                settings.api_keys[0],
                settings.internal_api_keys[0],
            )
        yield Resources(
            settings=settings,
            metrics=metrics,
            database=database,
            redis=redis,
            cache=cache,
            authenticator=Authenticator(settings, accounts),
            provider=resilient,
            text_processor=text_processor,
            history=history,
            accounts=accounts,
            rate_limiter=rate_limiter,
            job_queue=job_queue,
            jobs=jobs,
            job_runner=job_runner,
        )
    finally:
        stop_embedded.set()
        if embedded is not None:
            await asyncio.gather(embedded, return_exceptions=True)
        await (
            job_queue.close()
        )  # in memory: items in hand are cancelled, queued again after a start
        if job_runner is not None:
            await job_runner.close()
        if resilient is not None:
            await resilient.aclose()  # its background provider check, if one is running
        await history.close()  # rows already handed in are committed before the engine goes
        await rate_limiter.aclose()  # what was charged ahead goes back while Redis is open
        # Close only what we opened: handed-in clients belong to whoever handed them in.
        if redis is not None and externals.redis is None:
            await redis.aclose()
        if externals.ai_model is None:
            await provider.aclose()
        await database.dispose()


async def _start_jobs(
    settings: Settings,
    queue: JobQueue,
    runner: JobRunner,
    jobs: JobService,
    stop: asyncio.Event,
) -> "asyncio.Task[None] | None":
    """Connect the API to the job queue, with a worker of its own when it should run one."""
    if not settings.runs_embedded_worker:
        await queue.start()
        logger.info(
            "jobs are queued in Redis (stream %s): run `make worker` to process them",
            settings.job_queue_name,
        )
        return None
    if queue.in_memory:
        await queue.start(runner.run_item)
        logger.info(
            "jobs run in this process (no REDIS_URL): an embedded worker, %d item(s) at once; "
            "a job left unfinished by a restart goes on once the jobs API is next called",
            settings.job_concurrency,
        )
        return None
    logger.info("jobs: this process runs a worker of its own too (JOB_EMBEDDED_WORKER=true)")
    worker = asyncio.create_task(queue.work(runner.run_item, stop, sweep=jobs.send_unsent))
    worker.add_done_callback(_report_stopped)
    return worker


def _report_stopped(worker: "asyncio.Task[None]") -> None:
    """The embedded worker waits for Redis rather than fail: an end it was not asked for is a
    bug, said loudly, since the API goes on accepting jobs."""
    if not worker.cancelled() and (error := worker.exception()) is not None:
        logger.error("the embedded job worker stopped: jobs stay queued", exc_info=error)


async def _open_redis(url: str, timeout_seconds: float) -> Redis:
    """A client for REDIS_URL. The app starts whether Redis answers or not (it falls back on
    memory), so a server that does not answer is reported now rather than at the first request.
    """
    redis = create_redis(url, timeout_seconds=timeout_seconds)
    if not await ping(redis):
        logger.warning(
            "REDIS_URL %s does not answer: the cache, rate limits and circuit breakers use "
            "this process's memory until it does",
            loggable_url(url),
        )
    return redis
