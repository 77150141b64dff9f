"""A job worker process (`make worker`, `python -m app.cli worker`): items from the Redis stream
through the same resources as the API (cache, breaker, rate limits, database), JOB_CONCURRENCY at
once, until SIGTERM or SIGINT. Start as many as the provider's rate allows, on any machine that
reaches the same Redis and database (`docker compose up --scale worker=N`).
"""

import asyncio
import logging
import signal

from app.core.config import Settings
from app.core.exceptions import ConfigurationError
from app.core.logging import configure_logging
from app.infrastructure.metrics import Metrics
from app.resources import Externals, open_resources

logger = logging.getLogger(__name__)


async def run(settings: Settings, externals: Externals | None = None) -> None:
    """Until SIGTERM or SIGINT. `externals`: fakes for what is outside (a benchmark's model)."""
    if settings.redis_url is None:
        raise ConfigurationError(
            "REDIS_URL: a worker process takes jobs from Redis; without it, the API runs jobs "
            "itself (its embedded worker) and no worker process is needed"
        )
    configure_logging(settings.log_level, settings.log_renderer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_resources(
        settings, Metrics(), externals or Externals(), worker_process=True
    ) as resources:
        logger.info(
            "job worker started: %d item(s) at once from stream %s; items of a worker that "
            "stops answering are taken over after %g s",
            settings.job_concurrency,
            settings.job_queue_name,
            settings.job_redelivery_seconds,
        )
        await resources.job_queue.work(
            resources.job_runner.run_item, stop, sweep=resources.jobs.send_unsent
        )
    logger.info("job worker stopped")
