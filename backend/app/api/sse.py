"""The text service's stream as server-sent events, through sse-starlette.

sse-starlette rather than Starlette's own StreamingResponse: it keeps listening for the client's
disconnect while the generator waits on a silent provider (StreamingResponse, on servers speaking
ASGI 2.4, notices a gone client only when its next write fails, so a provider that has not sent
its next token would keep going), and it brings heartbeat comments and a send timeout.
"""

from collections.abc import AsyncGenerator, AsyncIterator

from shared.text import StreamDelta, StreamDone, StreamMeta
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from app.api.errors import app_error_response
from app.core.config import Settings
from app.core.logging import annotate_request
from app.services.text_processor import StreamEvent, StreamFailure

_EVENT_NAMES: dict[type, str] = {StreamMeta: "meta", StreamDelta: "delta", StreamDone: "done"}


def encode(event: StreamEvent) -> ServerSentEvent:
    """One event; an error's data is the very body its JSON response would have."""
    if isinstance(event, StreamFailure):
        body = app_error_response(event.error).body
        return ServerSentEvent(data=bytes(body).decode(), event="error")
    return ServerSentEvent(data=event.model_dump_json(), event=_EVENT_NAMES[type(event)])


async def event_stream_response(
    events: AsyncGenerator[StreamEvent, None], settings: Settings
) -> EventSourceResponse:
    """The response for `events`, whose first event is taken now: a refusal raised before it
    (an open circuit with no stale answer) still becomes an ordinary JSON error with its status
    code.

    `events` is always closed, so that a stream cut short (its client left, or stopped reading)
    stops its provider call, settles its breaker call and writes its history row: by `encoded`,
    which sse-starlette closes on any interruption, in the task that iterated it; or, for a
    stream the response never started, by the background task.
    """
    first = await anext(events)
    if isinstance(first, StreamMeta):  # the access line's fields, as /v1/text/process's
        annotate_request(model=first.model, cached=first.cached, degraded=first.degraded)

    async def encoded() -> AsyncIterator[ServerSentEvent]:
        try:
            yield encode(first)
            async for event in events:
                yield encode(event)
        finally:
            await events.aclose()

    return EventSourceResponse(
        encoded(),
        ping=settings.stream_ping_seconds,
        send_timeout=settings.stream_send_timeout_seconds,
        background=BackgroundTask(events.aclose),
    )
