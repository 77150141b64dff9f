"""Pure ASGI middleware: request ids and scope, the body-size limit, metrics, the last-resort 500.

Pure ASGI rather than BaseHTTPMiddleware so that streaming bodies are counted as they arrive
and a body over the limit is refused without being read into memory.
"""

import logging
import re
import time
import uuid

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import app_error_response, error_response
from app.core.exceptions import PayloadTooLargeError
from app.core.logging import request_id_var
from app.infrastructure import redis_client
from app.infrastructure.metrics import Metrics

logger = logging.getLogger(__name__)
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives every response an X-Request-ID and turns an unhandled error into a clean 500.

    Each request also gets its Redis scope: after one failed Redis command it sends no other,
    so it waits out at most one Redis timeout.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # A caller's id is kept only if it is harmless in logs and headers.
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
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
        except Exception:
            logger.exception("unhandled error")
            if not response_started:
                response = error_response(500, "internal_error", "An unexpected error occurred.")
                await response(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.request_latency.labels(route).observe(time.perf_counter() - started)
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """413 when Content-Length, or a streamed body so far, exceeds the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"The request body exceeds the limit of {self.max_body_bytes} bytes."
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            too_large = PayloadTooLargeError(
                message, details={"max_body_bytes": self.max_body_bytes}
            )
            await app_error_response(too_large)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            chunk = await receive()
            if chunk["type"] == "http.request":
                received += len(chunk.get("body", b""))
                if received > self.max_body_bytes:
                    # FastAPI turns any other error raised while reading the body into a 400.
                    raise HTTPException(status_code=413, detail=message)
            return chunk

        await self.app(scope, counting_receive, send)
