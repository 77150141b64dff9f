"""API → error mapping: every failure leaves with the shared error body and a request id."""

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from app.main import create_app
from asgi_lifespan import LifespanManager
from conftest import OPERATOR_KEY, PUBLIC_KEY, ClientFactory, DatabaseBackend, make_settings
from fakes.providers import FakeProvider
from httpx import Response
from shared.errors import ErrorResponse
from starlette.types import Message

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends by default
VALID = {"operation": "summarize", "text": "The bridge reopened. Traffic fell."}

UNREADABLE_BODIES: dict[str, tuple[bytes, str]] = {
    "malformed": (b'{"operation": "summarize", "text": ', "Expecting value at character 35"),
    "not_utf8": (b'{"operation": "summarize", "text": "caf\xe9"}', "not UTF-8"),
    "nested_5000_deep": (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    "integer_of_5000_digits": (
        b'{"operation": "summarize", "text": "a", "options": {"max_sentences": '
        + b"9" * 5000
        + b"}}",
        "integer string conversion",
    ),
}


def without_request_id(response: Response) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = response.json()["error"]
    return response.status_code, {key: value for key, value in error.items() if key != "request_id"}


# Declared as something else than JSON, and read as nothing else: the media type is what is
# wrong. The one exception, JSON labelled a form on the text routes, has a test of its own.
NOT_JSON: dict[str, tuple[str, dict[str, str], bytes]] = {
    "text_plain": ("/v1/text/process", {"Content-Type": "text/plain"}, json.dumps(VALID).encode()),
    "form": ("/v1/text/process", FORM, b"operation=summarize&text=Hello+there."),
    "stream_form": ("/v1/text/stream", FORM, b"operation=summarize&text=Hello+there."),
    "form_of_plain_text": ("/v1/text/batch", FORM, b"Summarize this, please."),
    "xml": (
        "/v1/text/batch",
        {"Content-Type": "application/xml"},
        b"<items><item>summarize</item></items>",
    ),
    "no_content_type": ("/v1/text/batch", {}, json.dumps({"items": [VALID]}).encode()),
    "register_as_text": (
        "/v1/auth/register",
        {"Content-Type": "text/plain"},
        b'{"email": "ada@example.com", "display_name": "Ada"}',
    ),
    "invalidate_as_form": ("/internal/cache/invalidate", FORM, b"operation=summarize"),
}
# What /v1/text/stream must refuse before its first event exactly as /v1/text/process does,
# with MAX_BODY_BYTES at 1 KiB: (headers, body, status, code).
BAD_BODIES: dict[str, tuple[dict[str, str], bytes, int, str]] = {
    "malformed": (JSON, UNREADABLE_BODIES["malformed"][0], 400, "invalid_json"),
    "over_the_limit": (JSON, b"x" * 2048, 413, "payload_too_large"),
    "text_plain": (
        {"Content-Type": "text/plain"},
        json.dumps(VALID).encode(),
        415,
        "unsupported_media_type",
    ),
    "form": (FORM, b"operation=summarize&text=Hello+there.", 415, "unsupported_media_type"),
    "qa_without_question": (
        JSON,
        json.dumps({**VALID, "operation": "qa"}).encode(),
        422,
        "validation_error",
    ),
    "option_of_another_operation": (
        JSON,
        json.dumps({**VALID, "options": {"max_points": 3}}).encode(),
        422,
        "validation_error",
    ),
}


class TestErrorContract:
    """Seam: middleware → routes → exception handlers → `shared.errors.ErrorResponse`.

    Paths: ERR-01, ERR-02, ERR-03, ERR-04, ERR-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the shared error model the clients parse.
    Faked: the AI provider (FakeProvider, counting the calls a refused body must not make);
    otherwise nothing: the requests are hostile on their own.
    """

    @pytest.mark.covers("ERR-01")
    async def test_unknown_route_returns_shared_error_body(self, make_client: ClientFactory):
        """Even the framework's own 404 speaks our error contract.

        Integration scope: Starlette routing → HTTP exception handler → ErrorResponse.
        Business impact: clients parse one error shape for every failure.
        Test strategy: GET a path no router serves.
        Success criteria: 404 whose body validates as ErrorResponse with code `not_found`.
        """
        client = await make_client()

        response = await client.get("/v1/no-such-thing")

        assert response.status_code == 404
        assert ErrorResponse.model_validate(response.json()).error.code == "not_found"

    @pytest.mark.covers("ERR-01")
    async def test_caller_request_id_is_echoed_and_unsafe_one_replaced(
        self, make_client: ClientFactory
    ):
        """A caller's correlation id survives; one that could inject headers is replaced.

        Integration scope: RequestContextMiddleware → response headers and error body.
        Business impact: support can trace a request end to end without log-forging risks.
        Test strategy: send a safe id, then an id with spaces and quotes.
        Success criteria: the safe id is echoed; the unsafe one is replaced by a 32-hex id.
        """
        client = await make_client()

        kept = await client.get("/v1/health", headers={"X-Request-ID": "trace-42"})
        replaced = await client.get("/v1/health", headers={"X-Request-ID": 'a b"c'})

        assert kept.headers["X-Request-ID"] == "trace-42"
        assert replaced.headers["X-Request-ID"] != 'a b"c'
        assert len(replaced.headers["X-Request-ID"]) == 32

    @pytest.mark.covers("ERR-02")
    async def test_declared_body_over_limit_is_refused_with_413(self, make_client: ClientFactory):
        """A body over MAX_BODY_BYTES is refused from its Content-Length, unread.

        Integration scope: BodySizeLimitMiddleware → error body.
        Business impact: a client cannot make the server buffer megabytes of junk.
        Test strategy: POST 3 KiB to an app whose limit is 1 KiB.
        Success criteria: 413 with code `payload_too_large` naming the limit.
        """
        client = await make_client(max_body_bytes=1024)

        response = await client.post("/v1/health", content=b"x" * 3072)

        assert response.status_code == 413
        assert response.json()["error"]["details"] == {"max_body_bytes": 1024}

    @pytest.mark.covers("ERR-02")
    async def test_streamed_and_declared_413_carry_the_same_details(
        self, make_client: ClientFactory
    ):
        """A body over the limit gets one answer, however it was sent.

        Integration scope: BodySizeLimitMiddleware (declared length, and streamed chunks while
        FastAPI reads them) → error mapping.
        Business impact: a client handles a 413 by reading `max_body_bytes`; a streamed upload
        that got `details: null` left it nothing to shorten the body to.
        Test strategy: the same 3 KiB to a 1 KiB limit, once with Content-Length, once chunked.
        Success criteria: both 413 `payload_too_large` with details `{max_body_bytes: 1024}`.
        """
        client = await make_client(max_body_bytes=1024)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"x" * 1024

        declared = await client.post("/v1/text/process", content=b"x" * 3072, headers=JSON)
        streamed = await client.post("/v1/text/process", content=chunks(), headers=JSON)

        expected = {
            "code": "payload_too_large",
            "message": "The request body exceeds the limit of 1024 bytes.",
            "details": {"max_body_bytes": 1024},
        }
        assert without_request_id(declared) == (413, expected)
        assert without_request_id(streamed) == (413, expected)

    @pytest.mark.covers("ERR-03")
    @pytest.mark.parametrize(
        ("body", "reason"), UNREADABLE_BODIES.values(), ids=UNREADABLE_BODIES.keys()
    )
    async def test_unreadable_body_is_400_invalid_json_with_its_reason(
        self, make_client: ClientFactory, provider: FakeProvider, body: bytes, reason: str
    ):
        """Every body that cannot be read as JSON gets the same error, saying why.

        Integration scope: FastAPI's body parsing (json.loads) → exception handlers → error
        contract.
        Business impact: a client tells "fix your JSON" from other failures by one code; bytes
        that are not UTF-8, deep nesting or a huge number used to get a vague `http_error`.
        Test strategy: post each unreadable body with Content-Type: application/json.
        Success criteria: 400 `invalid_json` whose `details.reason` (also in the message) names
        the problem; no provider call.
        """
        client = await make_client(model=provider.model)

        response = await client.post("/v1/text/process", content=body, headers=JSON)

        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (400, "invalid_json")
        assert reason in error["details"]["reason"]
        assert error["details"]["reason"] in error["message"]
        assert provider.calls == 0

    @pytest.mark.covers("ERR-04")
    @pytest.mark.parametrize(("route", "headers", "body"), NOT_JSON.values(), ids=NOT_JSON.keys())
    async def test_body_that_is_not_json_is_415_on_json_routes(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        route: str,
        headers: dict[str, str],
        body: bytes,
    ):
        """A body sent as text, form or XML is refused for its media type, not its shape.

        Integration scope: FastAPI's Content-Type check → validation handler → error contract,
        on every route that takes a JSON body, the text routes' reading of forms included.
        Business impact: "Input should be a valid dictionary" sent people who posted a form or
        plain text looking at their JSON instead of their header.
        Test strategy: post JSON declared as another media type (or with no Content-Type), and
        form data or plain text labelled a form, to each JSON route, with the operator key
        (which passes both APIs).
        Success criteria: 415 `unsupported_media_type` naming `application/json`; no provider
        call.
        """
        client = await make_client(model=provider.model, api_key=OPERATOR_KEY)

        response = await client.post(route, content=body, headers=headers)

        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (415, "unsupported_media_type")
        assert "application/json" in error["message"]
        assert provider.calls == 0

    @pytest.mark.covers("ERR-04")
    @pytest.mark.parametrize(
        ("route", "media_type"),
        [
            ("/v1/text/process", "application/json"),
            ("/v1/text/batch", "application/json"),
            ("/v1/text/stream", "text/event-stream"),
        ],
    )
    async def test_json_labelled_a_form_is_read_as_json_on_text_routes(
        self, make_client: ClientFactory, provider: FakeProvider, route: str, media_type: str
    ):
        """`curl -d '{...}'`, which labels its JSON a form, works on the text routes.

        Integration scope: the text routes' reading of a form-labelled body → FastAPI's body
        parsing → the route and the provider.
        Business impact: curl labels every `-d` body a form; the README's stream example, and
        anyone's first try without `-H 'Content-Type: application/json'`, would be a 415.
        Test strategy: post valid JSON labelled `application/x-www-form-urlencoded` to each
        text route.
        Success criteria: 200 with the route's own media type; one provider call.
        """
        client = await make_client(model=provider.model)
        body = {"items": [VALID]} if route.endswith("/batch") else VALID

        response = await client.post(route, content=json.dumps(body), headers=FORM)

        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith(media_type)
        assert provider.calls == 1

    @pytest.mark.covers("ERR-04")
    async def test_client_leaving_while_it_sends_a_form_is_no_server_error(
        self, sqlite_backend: DatabaseBackend
    ):
        """A client that hangs up halfway through a form-labelled body is not a 500.

        Integration scope: the ASGI server's disconnect → the text routes' reading of a
        form-labelled body → FastAPI's body parsing → error handlers.
        Business impact: a 500 pages whoever watches the error rate, for a client that merely
        went away; FastAPI answers such a body 400 on any other route.
        Test strategy: drive the app at the ASGI level (no HTTP client can hang up mid-body on
        cue): half a JSON body labelled a form, then `http.disconnect`.
        Success criteria: the response started is a 400, not a 500.
        """
        app = create_app(make_settings(sqlite_backend))
        incoming: list[Message] = [
            {"type": "http.request", "body": b'{"operation": "summ', "more_body": True},
            {"type": "http.disconnect"},
        ]
        started: list[int] = []

        async def receive() -> Message:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.append(message["status"])

        scope = {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/text/process",
            "query_string": b"",
            "headers": [
                (b"host", b"testserver"),
                (b"x-api-key", PUBLIC_KEY.encode()),
                (b"content-type", b"application/x-www-form-urlencoded"),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        async with LifespanManager(app) as manager:
            await manager.app(scope, receive, send)

        assert started == [400]

    @pytest.mark.covers("ERR-05")
    @pytest.mark.parametrize(
        ("headers", "body", "status", "code"), BAD_BODIES.values(), ids=BAD_BODIES.keys()
    )
    async def test_stream_refuses_a_bad_body_with_the_error_process_gives(
        self,
        make_client: ClientFactory,
        provider: FakeProvider,
        headers: dict[str, str],
        body: bytes,
        status: int,
        code: str,
    ):
        """/v1/text/stream answers a bad body in JSON, before any event, as /process does.

        Integration scope: body limit, FastAPI's body parsing and the request schema → the
        exception handlers, on the stream route and on /process.
        Business impact: a client handles one set of body errors for both routes; a stream
        that began before refusing would leave it reading events for a request never made.
        Test strategy: post each bad body (unreadable, too large, not JSON, invalid fields) to
        both routes, with MAX_BODY_BYTES at 1 KiB.
        Success criteria: the expected status and code from the stream route, in JSON; the
        same error body from both (request id aside), so the same field-level `loc` for a 422;
        no provider call.
        """
        client = await make_client(model=provider.model, max_body_bytes=1024)

        streamed = await client.post("/v1/text/stream", content=body, headers=headers)
        processed = await client.post("/v1/text/process", content=body, headers=headers)

        assert (streamed.status_code, streamed.json()["error"]["code"]) == (status, code)
        assert without_request_id(streamed) == without_request_id(processed)
        assert provider.calls == 0
