"""Pure ASGI middleware: request ids and scope, the access log line, the body-size limit,
metrics, the last-resort 500, and the security headers (Starlette has none for those; CORS, hosts
and gzip are Starlette's own).

Pure ASGI rather than BaseHTTPMiddleware so that streaming bodies are counted as they arrive
and a body over the limit is refused without being read into memory, and because every layer
runs on every request: each reads only the header it needs and wraps `send` or `receive` only
when it has something to do there (they were a fifth of a cache hit's CPU, now about an eighth).
"""

import logging
import re
import time
import uuid

from fastapi.routing import iter_route_contexts
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from sse_starlette.sse import SendTimeoutError
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import BodyReadError, app_error_response, error_response
from app.core.exceptions import PayloadTooLargeError
from app.core.logging import end_request, start_request
from app.infrastructure import redis_client
from app.infrastructure.metrics import Metrics

logger = logging.getLogger(__name__)
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), without building a mapping of them all."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


# Endpoint → full path template, for every app of the process. Walking an app's routes makes
# FastAPI build the state of every route it has not served yet (~20 ms of CPU per app, half of
# what a test's app costs), so it is done once per process rather than once per app: the routers
# are module-level, and an endpoint is mounted under one path wherever create_app is called.
_TEMPLATES: dict[object, str] = {}


def _route_templates(routes: list[BaseRoute]) -> dict[object, str]:
    """Each endpoint's full path template, prefixes and mounts included (`/v1/health`,
    `/internal/accounts/{account_id}/revoke`, `/docs-assets/{path}`).

    The router leaves the endpoint it chose in the scope, but not its full template: an
    included route knows only its own part (`/health`, for `/v1/health` and `/internal/health`
    alike), and plain routes such as `/docs` leave no route at all.
    """
    templates: dict[object, str] = {}
    for context in iter_route_contexts(routes):
        # A mount's "endpoint" in the scope is the app it mounts.
        endpoint = context.endpoint or getattr(context, "app", None)
        if endpoint is not None and context.path_format is not None:
            templates[endpoint] = context.path_format
    return templates


class RequestContextMiddleware:
    """Gives every response an X-Request-ID, every log line of the request its fields, counts
    it in the metrics under its route template, and writes the request's access line; turns an
    unhandled error into a clean 500.

    Each request also gets its Redis scope: after one failed Redis command it sends no other,
    so it waits out at most one Redis timeout.

    With tracing on, the request id is an attribute of the request's server span too (the
    tracing middleware wraps this one, so its span is the current one here).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._routes_walked = False
        # The labelled metrics of each (method, route, status): `labels()` costs a lock and a
        # lookup of its own on every call.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = (header(scope, b"x-request-id") or b"").decode("latin-1")
        # A caller's id is kept only if it is harmless in logs and headers.
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        tokens = start_request(request_id, method=scope["method"])
        trace.get_current_span().set_attribute("request.id", request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            with redis_client.request_scope():
                await self.app(scope, receive, send_with_id)
        except SendTimeoutError:
            # A client that stopped reading an event stream: its stream was closed, as designed.
            logger.warning("client stopped reading: stream closed after the send timeout")
        except Exception:
            logger.exception("unhandled error")
            if not response_started:
                response = error_response(500, "internal_error", "An unexpected error occurred.")
                await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = self._route(scope)
            requests, latency = self._labelled(scope["method"], route, status)
            requests.inc()
            latency.observe(elapsed)
            logger.info(
                "request",
                extra={"route": route, "status": status, "latency_ms": round(elapsed * 1000, 3)},
            )
            end_request(tokens)

    def _labelled(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        series = self._series.get((method, route, status))
        if series is None:
            series = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.request_latency.labels(route),
            )
            self._series[(method, route, status)] = series
        return series

    def _route(self, scope: Scope) -> str:
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return "unmatched"
        if endpoint not in _TEMPLATES and not self._routes_walked:
            # An endpoint no app of the process has shown yet (routes built per app, like the
            # docs pages'): this app's routes, all registered by its first request.
            self._routes_walked = True
            _TEMPLATES.update(_route_templates(scope["app"].routes))
        return _TEMPLATES.get(endpoint, "unmatched")


class BodySizeLimitMiddleware:
    """413 when Content-Length, or a streamed body so far, exceeds the limit: `max_body_bytes`,
    or a path's own in `path_limits` (a job's thousands of texts need more than one request)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, path_limits: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.max_body_bytes)
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                await app_error_response(self._too_large(limit))(scope, receive, send)
                return
            # The server delivers no more than a declared length (HTTP framing): nothing to count.
            await self.app(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            chunk = await receive()
            if chunk["type"] == "http.request":
                received += len(chunk.get("body", b""))
                if received > limit:
                    raise BodyReadError(self._too_large(limit))
            return chunk

        await self.app(scope, counting_receive, send)

    @staticmethod
    def _too_large(limit: int) -> PayloadTooLargeError:
        """The same error whether the body declared its length or was streamed."""
        return PayloadTooLargeError(
            f"The request body exceeds the limit of {limit} bytes.",
            details={"max_body_bytes": limit},
        )


class GZipWhenAcceptedMiddleware:
    """Starlette's GZipMiddleware for the requests that accept gzip; the others go straight on.

    Starlette wraps every response to decide, so a client that never asks for gzip (API
    clients, load generators) would pay for a wrapper that can only pass the body through.
    """

    def __init__(self, app: ASGIApp, minimum_size: int, compresslevel: int) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=compresslevel)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"gzip" in (header(scope, b"accept-encoding") or b""):
            await self.gzip(scope, receive, send)
            return
        await self.app(scope, receive, send)


# JSON needs nothing from a browser: no scripts, no styles, no frames, nowhere to submit.
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# The documentation pages run Swagger UI and ReDoc from this origin; FastAPI's pages start them
# with an inline script, and both set inline styles; ReDoc renders in a blob: worker.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)
DOCS_PAGES = frozenset({"/docs", "/redoc", "/internal/docs"})


Header = tuple[bytes, bytes]


def _encoded(headers: dict[str, str]) -> list[Header]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class SecurityHeadersMiddleware:
    """Puts the browser-hardening headers on every response a route has not set them on.

    Strict-Transport-Security only on a request that came over HTTPS: uvicorn (--proxy-headers)
    reports https for a TLS connection, or for X-Forwarded-Proto from a trusted proxy
    (FORWARDED_ALLOW_IPS). On plain HTTP the header is ignored by browsers anyway.
    The headers are encoded once, here, and appended raw: this runs on every response.
    """

    def __init__(self, app: ASGIApp, hsts_max_age_seconds: int) -> None:
        self.app = app
        common = {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        }
        self.api = _encoded({**common, "Content-Security-Policy": API_CONTENT_SECURITY_POLICY})
        self.docs = _encoded({**common, "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY})
        hsts = f"max-age={hsts_max_age_seconds}; includeSubDomains"
        self.hsts = _encoded({"Strict-Transport-Security": hsts}) if hsts_max_age_seconds else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = self.docs if scope["path"] in DOCS_PAGES else self.api
        if scope["scheme"] == "https":
            added = added + self.hsts

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in added if header[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
