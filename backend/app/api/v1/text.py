from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response
from fastapi.routing import APIRoute
from shared.errors import ErrorResponse
from shared.text import (
    OPTIONS_BY_OPERATION,
    BatchRequest,
    BatchResponse,
    InvalidItem,
    Operation,
    OperationInfo,
    OperationsResponse,
    TextProcessRequest,
    TextProcessResponse,
)
from sse_starlette import EventSourceResponse
from starlette.requests import ClientDisconnect

from app.api import examples
from app.api.deps import KEY_SECURITY, CallerDep, charge_rate_limit, limit_result, resources_of
from app.api.errors import app_error_response, invalid_request
from app.api.responses import BODY_ERRORS, PROVIDER_ERRORS, errors
from app.api.sse import event_stream_response
from app.core.exceptions import RateLimitedError, ValidationError
from app.core.logging import annotate_request

_FORM = b"application/x-www-form-urlencoded"
_JSON = b"application/json"


class RateLimitedRoute(APIRoute):
    """Puts the caller's X-RateLimit-* headers on the route's responses, the 429 included.

    The 429 is built here, by the function the exception handlers use, because a handler
    only sees the exception, not the limit the request was charged.

    A body labelled `application/x-www-form-urlencoded`, what `curl -d` sends unless told
    otherwise, is read as JSON when it parses as JSON: these routes take nothing else. Real form
    data (`text=hello`) still gets the 415 of any body that is not JSON. It opens no CSRF door,
    as the key travels in a header, which a cross-site form cannot set.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_limit_headers(request: Request) -> Response:
            headers = request.scope["headers"]
            if (b"content-type", _FORM) in headers and await _is_json(request):
                request.scope["headers"] = [
                    (name, _JSON if (name, value) == (b"content-type", _FORM) else value)
                    for name, value in headers
                ]
            try:
                response = await handler(request)
            except RateLimitedError as exc:
                response = app_error_response(exc)
            if (result := limit_result(request)) is not None:
                response.headers.update(result.headers())
            return response

        return with_limit_headers


async def _is_json(request: Request) -> bool:
    """Whether the body parses as JSON; the parse is kept by the request for the route's own."""
    try:
        await request.json()
    except (ValueError, RecursionError, ClientDisconnect):
        return False  # the route reads it again and answers it as it would any other
    return True


# Declared with its full path and listed flat (see app.api.v1). 503: issued keys are checked
# against the database, which may be down.
router = APIRouter(
    prefix="/v1/text",
    tags=["text"],
    route_class=RateLimitedRoute,
    responses=errors(401, 503),
)


def _integer_headers(descriptions: dict[str, str]) -> dict[str, Any]:
    return {
        name: {"description": text, "schema": {"type": "integer"}}
        for name, text in descriptions.items()
    }


_LIMIT_HEADERS = _integer_headers(
    {
        "X-RateLimit-Limit": "Requests per minute the key's tier allows (not sent to operators).",
        "X-RateLimit-Remaining": "Requests left in the current 60-second window.",
        "X-RateLimit-Reset": "Unix time when the oldest counted request leaves the window.",
    }
)
_LIMITED: dict[int | str, dict[str, Any]] = {
    200: {"description": "Successful Response", "headers": _LIMIT_HEADERS},
    429: {
        "model": ErrorResponse,
        "description": "Rate limit reached: `Retry-After` says when to try again.",
        "headers": {**_integer_headers({"Retry-After": "Seconds to wait."}), **_LIMIT_HEADERS},
    },
}

_DESCRIPTIONS = {
    Operation.SUMMARIZE: "A short summary of the text.",
    Operation.SENTIMENT: "Positive, negative or neutral, with a score and a confidence.",
    Operation.KEY_POINTS: "The most important points of the text.",
    Operation.QUESTIONS: "Questions the text answers.",
    Operation.QA: "The answer to `question`, from the text only.",
}
CacheControl = Annotated[
    str | None,
    Header(description="`no-cache` skips the cache read (the fresh answer is still cached)."),
]


def _reads_cache(cache_control: str | None) -> bool:
    return "no-cache" not in (cache_control or "").lower()


@router.get("/operations", summary="The operations and their options", openapi_extra=KEY_SECURITY)
async def operations(_principal: CallerDep) -> OperationsResponse:
    return OperationsResponse(
        operations=[
            OperationInfo(
                name=operation,
                description=_DESCRIPTIONS[operation],
                options=sorted(OPTIONS_BY_OPERATION[operation]),
                requires_question=operation is Operation.QA,
            )
            for operation in Operation
        ]
    )


@router.post(
    "/process",
    summary="Process one text",
    responses={**BODY_ERRORS, **_LIMITED, **PROVIDER_ERRORS},
    openapi_extra=KEY_SECURITY,
)
async def process(
    request: Request,
    body: Annotated[
        TextProcessRequest, Body(title="TextProcessRequest", openapi_examples=examples.PROCESS)
    ],
    principal: CallerDep,
    cache_control: CacheControl = None,
) -> TextProcessResponse:
    await charge_rate_limit(request, principal)
    response = await resources_of(request).text_processor.process(
        body, principal.key_id, read_cache=_reads_cache(cache_control)
    )
    annotate_request(model=response.model, cached=response.cached, degraded=response.degraded)
    return response


_STREAM_EVENTS = """Server-sent events, in order:

- `meta`: `{operation, model, cached, degraded}`;
- `delta`, for `summarize` and `qa`: `{text}`, the next fragment of the result's text as the model
  writes it (the other operations' results are only useful whole: they come with `done`);
- `done`: the `TextProcessResponse` `/v1/text/process` gives, plus `time_to_first_token_ms`;
- or `error`, after the first event: the `ErrorResponse` body the JSON error would carry.

Comments (`: ping`) keep a silent stream open. Anything refused before the first event (a body
that is unreadable, not JSON or invalid: 400, 413, 415, 422; 401, 429, an open circuit with no
stale answer) is a JSON error with its status code and body, as for `/v1/text/process`. A client
that disconnects stops the provider call."""


# One event as OpenAPI 3.1 describes it for `text/event-stream`; its data's shape by event name
# is in the route's description.
_SERVER_SENT_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["meta", "delta", "done", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


@router.post(
    "/stream",
    summary="Process one text, streaming the answer as server-sent events",
    description=_STREAM_EVENTS,
    response_class=EventSourceResponse,
    responses={
        **BODY_ERRORS,
        **_LIMITED,
        200: {
            "description": "A `text/event-stream` of `meta`, `delta`s, then `done` or `error`.",
            "headers": _LIMIT_HEADERS,
            "content": {"text/event-stream": {"schema": _SERVER_SENT_EVENT}},
        },
        503: PROVIDER_ERRORS[503],
    },
    openapi_extra=KEY_SECURITY,
)
async def stream(
    request: Request,
    body: Annotated[
        TextProcessRequest, Body(title="TextProcessRequest", openapi_examples=examples.PROCESS)
    ],
    principal: CallerDep,
    cache_control: CacheControl = None,
) -> EventSourceResponse:
    await charge_rate_limit(request, principal)
    resources = resources_of(request)
    events = resources.text_processor.stream(
        body, principal.key_id, read_cache=_reads_cache(cache_control)
    )
    return await event_stream_response(events, resources.settings)


@router.post(
    "/batch",
    summary="Process several texts; each item gets a result or an error, in order",
    description="Each valid item counts as one request toward the rate limit. An item that is "
    "not a valid request gets the `validation_error` the single endpoint would answer, in its "
    "place; a body that is not a list of items, or holds too many, is refused whole (422).",
    responses={**BODY_ERRORS, **_LIMITED, 503: PROVIDER_ERRORS[503]},
    openapi_extra=KEY_SECURITY,
)
async def batch(
    request: Request,
    body: Annotated[BatchRequest, Body(openapi_examples=examples.BATCH)],
    principal: CallerDep,
    cache_control: CacheControl = None,
) -> BatchResponse:
    resources = resources_of(request)
    settings = resources.settings
    if len(body.items) > settings.batch_max_items:
        raise ValidationError(
            f"A batch holds at most {settings.batch_max_items} items; got {len(body.items)}.",
            details={"max_items": settings.batch_max_items},
        )
    items = [
        invalid_request(item.errors, item.input, at=["body", "items", index])
        if isinstance(item, InvalidItem)
        else item
        for index, item in enumerate(body.items)
    ]
    if valid := sum(not isinstance(item, ValidationError) for item in items):
        await charge_rate_limit(request, principal, valid)
    response = await resources.text_processor.process_batch(
        items, principal.key_id, read_cache=_reads_cache(cache_control)
    )
    annotate_request(
        model=resources.provider.model_id, items=len(body.items), failed=response.failed
    )
    return response
