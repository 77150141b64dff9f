"""The app factory: settings, lifespan, middleware, error handlers, the two routers."""

import functools
import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import BaseRoute

from app.api import docs, internal, probes, v1
from app.api.errors import install_error_handlers
from app.api.middleware import (
    BodySizeLimitMiddleware,
    GZipWhenAcceptedMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from app.core.config import Settings, load_settings
from app.core.logging import configure_logging
from app.infrastructure.metrics import Metrics, worker_metrics
from app.infrastructure.tracing import Tracing
from app.resources import Externals, open_resources

TITLE = "LLM Starter"


def create_app(settings: Settings | None = None, externals: Externals | None = None) -> FastAPI:
    settings = settings or load_settings()
    externals = externals or Externals()
    configure_logging(settings.log_level, settings.log_renderer)
    metrics = Metrics()
    tracing = Tracing.configure(os.environ, externals.span_exporter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            worker_metrics(),
            open_resources(settings, metrics, externals, tracing) as resources,
        ):
            app.state.resources = resources
            _freeze_startup_objects()
            yield
        if tracing is not None:
            tracing.shutdown()

    app = FastAPI(
        title=TITLE,
        summary="Public API: text processing, batch, accounts, history, health.",
        lifespan=lifespan,
        docs_url=None,  # served by app.api.docs, from local assets
        redoc_url=None,
    )
    app.router.routes.extend(_api_routes())
    docs.mount_assets(app)
    install_error_handlers(app)
    _add_middleware(app, settings, metrics)
    if tracing is not None:
        tracing.instrument_app(app)
    return app


@functools.cache
def _api_routes() -> tuple[BaseRoute, ...]:
    """The API's routers, included once per process and shared by every app it builds.

    FastAPI resolves an included route (its dependencies, its request and response models) at
    the first request, per inclusion: about 20 ms for this API, paid by every app that includes
    the routers itself. A test session builds an app per test. The price of sharing: an app's
    `dependency_overrides` do not reach these routes; tests hand fakes in through `Externals`.
    """
    api = APIRouter()
    api.include_router(v1.router)
    api.include_router(internal.router, include_in_schema=False)
    api.include_router(docs.router)
    # The probes and the busiest routes are matched first, without a router around them (see
    # app.api.v1), in the order the document lists them.
    return (*probes.router.routes, *v1.routes, *api.routes)


def _add_middleware(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Innermost first: each `add_middleware` wraps everything added before it."""
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        path_limits={"/v1/jobs": settings.job_max_body_bytes},
    )
    # Below ~1 KiB gzip saves little and costs CPU on the hot path (a cache hit); level 6 is
    # zlib's default, close to level 9's size for much less CPU. Starlette never compresses
    # text/event-stream: a compressor would hold events back until its buffer fills.
    app.add_middleware(GZipWhenAcceptedMiddleware, minimum_size=1024, compresslevel=6)
    # Keys travel in headers, never cookies: no credentials mode. A preflight from an origin
    # not listed gets no Access-Control-Allow-Origin, so the browser refuses the call. With no
    # origin listed there is nothing to allow: no middleware, and no cost per request.
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Cache-Control",
                "X-Request-ID",
            ],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "Retry-After-Ms",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
            max_age=600,
        )
    if "*" not in settings.allowed_hosts:
        app.add_middleware(
            TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts, www_redirect=False
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    # Outermost, so that every response gets the headers: refusals of the middleware above and
    # the last-resort 500 included.
    app.add_middleware(
        SecurityHeadersMiddleware, hsts_max_age_seconds=settings.hsts_max_age_seconds
    )


@functools.cache
def _freeze_startup_objects() -> None:
    """Hide what exists at the first start (modules, routes, clients) from the cyclic garbage
    collector, once per process.

    Those ~230,000 objects live as long as the process, yet every full collection walked them
    all: under load (objects of requests in flight get promoted to the oldest generation) that
    was a 115-150 ms pause every second or so, and it set the p99 of every path (`make bench`:
    cache-hit p99 from ~130 ms to ~12 ms). Once per process rather than per start: a test
    session starts many apps in one process, and freezing each time would keep their garbage.
    """
    gc.freeze()
