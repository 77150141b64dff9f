"""API → error mapping: every failure leaves with the shared error body and a request id."""

import pytest
from conftest import ClientFactory
from shared.errors import ErrorResponse


class TestErrorContract:
    """Seam: middleware → routes → exception handlers → `shared.errors.ErrorResponse`.

    Paths: ERR-01, ERR-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the shared error model the clients parse.
    Faked: nothing: the requests are hostile on their own.
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
