"""The API's edge toward browsers and proxies: security headers, CORS, HSTS, gzip, allowed hosts.

Through the app as `create_app` wires it, in-process. The proxy tests serve it with a real
uvicorn (fakes.live_server) configured as the image runs it, because trusting X-Forwarded-Proto
is uvicorn's part: uvicorn's defaults are the image's command line, --proxy-headers on and the
trusted proxies read from FORWARDED_ALLOW_IPS. The event stream is served the same way, because
only a real server hands events over as they are written.
"""

import pytest
from app.api.middleware import API_CONTENT_SECURITY_POLICY, DOCS_CONTENT_SECURITY_POLICY
from app.main import create_app
from app.resources import Externals
from conftest import OPERATOR_KEY, PUBLIC_KEY, ClientFactory, DatabaseBackend, make_settings
from fakes.live_server import served
from fakes.providers import FakeProvider
from httpx import AsyncClient, Response
from httpx_sse import aconnect_sse

APP_ORIGIN = "https://app.example.com"
HSTS = "max-age=31536000; includeSubDomains"


def preflight(origin: str) -> dict[str, str]:
    """The headers a browser sends before a cross-origin POST with an API key."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }


def assert_hardened(response: Response, policy: str = API_CONTENT_SECURITY_POLICY) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == policy


class TestSecurityHeaders:
    """Seam: every response → SecurityHeadersMiddleware (outermost) → the browser.

    Paths: HTTP-01
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    every middleware as create_app adds it (CORS and host checks configured).
    Faked: the browser (headers read by the test).
    """

    @pytest.mark.covers("HTTP-01")
    @pytest.mark.parametrize(
        ("method", "path", "headers", "body", "status"),
        [
            ("GET", "/v1/health", {}, b"", 200),
            ("GET", "/openapi.json", {}, b"", 200),
            ("GET", "/v1/history", {"X-API-Key": "wrong"}, b"", 401),
            ("GET", "/v1/no-such-route", {}, b"", 404),
            ("POST", "/v1/text/process", {}, b"x" * 2048, 413),
            ("OPTIONS", "/v1/text/process", preflight("https://evil.example"), b"", 400),
            ("GET", "/v1/health", {"Host": "evil.example"}, b"", 400),
        ],
        ids=["ok", "openapi", "401", "404", "413", "cors-refusal", "host-refusal"],
    )
    async def test_every_kind_of_response_carries_the_headers(
        self,
        make_client: ClientFactory,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        status: int,
    ):
        """Answers, errors and the refusals of other middleware all carry the headers.

        Integration scope: HTTP request → the whole middleware stack → route or refusal.
        Business impact: one response without nosniff or frame denial is enough for a
        content-sniffing or clickjacking attack; refusals are responses too.
        Test strategy: one request per kind of response, from the routes, the error handlers,
        the body limit, CORS and the host check (ALLOWED_HOSTS restricted, 1 KiB body limit).
        Success criteria: the expected status, and the four headers with the strict JSON policy.
        """
        client = await make_client(
            allowed_hosts=["testserver"], cors_allow_origins=[APP_ORIGIN], max_body_bytes=1024
        )

        response = await client.request(method, path, headers=headers, content=body)

        assert response.status_code == status
        assert_hardened(response)

    @pytest.mark.covers("HTTP-01")
    @pytest.mark.parametrize("path", ["/docs", "/redoc", "/internal/docs"])
    async def test_documentation_pages_get_the_policy_their_scripts_need(
        self, make_client: ClientFactory, path: str
    ):
        """The HTML documentation may run same-origin and inline scripts; nothing else may.

        Integration scope: docs routes → SecurityHeadersMiddleware's per-path policy.
        Business impact: Swagger UI and ReDoc start from an inline script; a JSON-strict policy
        would blank the docs, a relaxed one everywhere would weaken every response.
        Test strategy: GET each documentation page.
        Success criteria: an HTML page with the docs policy (scripts from 'self' and inline,
        no framing) and the other headers.
        """
        client = await make_client(api_key=OPERATOR_KEY)  # the operator pages need its key

        response = await client.get(path)

        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert_hardened(response, DOCS_CONTENT_SECURITY_POLICY)


class TestCors:
    """Seam: a browser's cross-origin request → CORSMiddleware (CORS_ALLOW_ORIGINS).

    Paths: HTTP-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    Starlette's CORSMiddleware from CORS_ALLOW_ORIGINS.
    Faked: the browser (preflights and Origin headers sent by the test).
    """

    @pytest.mark.covers("HTTP-02")
    async def test_preflight_from_a_listed_origin_is_allowed(self, make_client: ClientFactory):
        """A web app on a listed origin may call the API with its key.

        Integration scope: OPTIONS preflight → CORSMiddleware → response headers.
        Business impact: a single-page app on the listed origin works; its key header and
        JSON body are allowed.
        Test strategy: CORS_ALLOW_ORIGINS with one origin; the preflight a browser sends for a
        POST with Content-Type and X-API-Key.
        Success criteria: 200 with that origin echoed and both headers allowed.
        """
        client = await make_client(cors_allow_origins=[APP_ORIGIN])

        response = await client.options("/v1/text/process", headers=preflight(APP_ORIGIN))

        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        assert {"x-api-key", "content-type"} <= set(allowed.replace(" ", "").split(","))

    @pytest.mark.covers("HTTP-02")
    @pytest.mark.parametrize(
        ("listed", "origin"),
        [
            ([APP_ORIGIN], "https://evil.example"),
            ([APP_ORIGIN], "https://app.example.com.evil.example"),
            ([APP_ORIGIN], "http://app.example.com"),
            ([], APP_ORIGIN),
        ],
        ids=["other-origin", "suffix-trick", "other-scheme", "empty-default"],
    )
    async def test_preflight_from_any_other_origin_is_not_allowed(
        self, make_client: ClientFactory, listed: list[str], origin: str
    ):
        """Only exact listed origins are allowed; by default none is.

        Integration scope: OPTIONS preflight → CORSMiddleware → response headers.
        Business impact: a page on another site cannot drive the API from a visitor's browser;
        a fresh clone exposes nothing to browsers until someone lists an origin.
        Test strategy: preflights from look-alike origins, and from any origin with the default
        (empty) CORS_ALLOW_ORIGINS.
        Success criteria: no Access-Control-Allow-Origin, so the browser blocks the call.
        """
        client = await make_client(cors_allow_origins=listed)

        response = await client.options("/v1/text/process", headers=preflight(origin))

        assert "Access-Control-Allow-Origin" not in response.headers

    @pytest.mark.covers("HTTP-02")
    async def test_cross_origin_answer_exposes_the_request_id_and_limits(
        self, make_client: ClientFactory
    ):
        """Script on the listed origin can read the headers a client needs.

        Integration scope: GET with Origin → route → CORSMiddleware → response headers.
        Business impact: a web client shows the request id to support and honours
        Retry-After and the rate-limit headers; unexposed, they are invisible to its code.
        Test strategy: a cross-origin GET from the listed origin.
        Success criteria: the origin echoed; X-Request-ID, Retry-After and X-RateLimit-Remaining
        exposed.
        """
        client = await make_client(cors_allow_origins=[APP_ORIGIN])

        response = await client.get("/v1/health", headers={"Origin": APP_ORIGIN})

        assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
        exposed = response.headers["Access-Control-Expose-Headers"].lower()
        assert {"x-request-id", "retry-after", "x-ratelimit-remaining"} <= set(
            exposed.replace(" ", "").split(",")
        )


class TestHsts:
    """Seam: the request's scheme (TLS, or a trusted proxy's X-Forwarded-Proto) → HSTS.

    Paths: HTTP-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    for the proxy header, the app served by a real uvicorn on loopback (fakes.live_server) with
    the image's --proxy-headers and FORWARDED_ALLOW_IPS.
    Faked: the TLS-terminating proxy (the scheme, or X-Forwarded-Proto, set by the test).
    """

    @pytest.mark.covers("HTTP-03")
    @pytest.mark.parametrize(
        ("scheme", "max_age", "expected"),
        [("https", 31_536_000, HSTS), ("http", 31_536_000, None), ("https", 0, None)],
        ids=["https", "plain-http", "turned-off"],
    )
    async def test_sent_over_https_only_unless_turned_off(
        self, make_client: ClientFactory, scheme: str, max_age: int, expected: str | None
    ):
        """HSTS on HTTPS answers; never on plain HTTP; HSTS_MAX_AGE_SECONDS=0 turns it off.

        Integration scope: request scheme → SecurityHeadersMiddleware → response headers.
        Business impact: browsers then refuse to reach the API over plain HTTP for a year,
        so no network on the way can strip TLS; over HTTP the header means nothing.
        Test strategy: the same GET with an https and an http base URL (the scheme the server
        reports), and with the setting at 0.
        Success criteria: the header with the configured max-age exactly when expected.
        """
        client = await make_client(hsts_max_age_seconds=max_age)

        response = await client.get(f"{scheme}://testserver/v1/health")

        assert response.headers.get("Strict-Transport-Security") == expected

    @pytest.mark.covers("HTTP-03")
    @pytest.mark.parametrize(
        ("forwarded_allow_ips", "expected"),
        [("127.0.0.1", HSTS), ("10.9.8.7", None)],
        ids=["trusted-proxy", "untrusted-client"],
    )
    async def test_forwarded_proto_counts_only_from_a_trusted_proxy(
        self,
        sqlite_backend: DatabaseBackend,
        monkeypatch: pytest.MonkeyPatch,
        forwarded_allow_ips: str,
        expected: str | None,
    ):
        """X-Forwarded-Proto: https earns HSTS only from an address in FORWARDED_ALLOW_IPS.

        Integration scope: a real uvicorn with the image's --proxy-headers and
        FORWARDED_ALLOW_IPS → the app create_app builds → SecurityHeadersMiddleware.
        Business impact: behind a TLS-terminating proxy the API must know it is on HTTPS; a
        client talking to it directly must not be able to claim so (or fake its address).
        Test strategy: uvicorn on loopback, configured as in the image; the same plain-HTTP
        request with X-Forwarded-Proto: https, once with loopback trusted, once not.
        Success criteria: HSTS from the trusted proxy; none from the untrusted client.
        """
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", forwarded_allow_ips)
        app = create_app(make_settings(sqlite_backend))

        async with served(app) as url, AsyncClient(base_url=url) as client:
            response = await client.get("/v1/health", headers={"X-Forwarded-Proto": "https"})

        assert response.status_code == 200
        assert response.headers.get("Strict-Transport-Security") == expected


class TestCompression:
    """Seam: Accept-Encoding → GZipMiddleware → response body.

    Paths: HTTP-01, HTTP-04
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    GZipMiddleware; for the event stream, the app served by a real uvicorn on loopback
    (fakes.live_server).
    Faked: the AI provider (FakeProvider) for the stream.
    """

    @pytest.mark.covers("HTTP-04")
    @pytest.mark.parametrize("path", ["/openapi.json", "/internal/openapi.json"])
    async def test_openapi_documents_are_served_gzip(self, make_client: ClientFactory, path: str):
        """The largest documents the API serves travel compressed to a client that accepts it.

        Integration scope: GET → route → GZipMiddleware → response.
        Business impact: client generators and the docs pages fetch tens of kilobytes on
        every load; gzip cuts that several times.
        Test strategy: fetch each OpenAPI document with and without Accept-Encoding: gzip.
        Success criteria: gzip only when accepted, under a third of the size, same document.
        """
        client = await make_client(api_key=OPERATOR_KEY)  # the operator document needs its key

        compressed = await client.get(path, headers={"Accept-Encoding": "gzip"})
        plain = await client.get(path, headers={"Accept-Encoding": "identity"})

        assert compressed.headers["Content-Encoding"] == "gzip"
        assert "Content-Encoding" not in plain.headers
        assert compressed.num_bytes_downloaded * 3 < plain.num_bytes_downloaded
        assert compressed.json() == plain.json()

    @pytest.mark.covers("HTTP-04")
    async def test_large_results_are_gzip_and_small_answers_are_not(
        self, make_client: ClientFactory
    ):
        """A batch of results is compressed; a tiny health answer is left alone.

        Integration scope: POST /v1/text/batch and GET /v1/health → GZipMiddleware.
        Business impact: large result pages cost less bandwidth; small hot answers (a cache
        hit, a probe) do not pay compression CPU for nothing.
        Test strategy: a 10-item batch and a health check, both accepting gzip.
        Success criteria: the batch arrives gzip and intact; health arrives uncompressed.
        """
        client = await make_client()
        items = [{"operation": "summarize", "text": f"Item {n}. " * 40} for n in range(10)]

        batch = await client.post(
            "/v1/text/batch", json={"items": items}, headers={"Accept-Encoding": "gzip"}
        )
        health = await client.get("/v1/health", headers={"Accept-Encoding": "gzip"})

        assert batch.status_code == 200
        assert batch.headers["Content-Encoding"] == "gzip"
        assert batch.json()["succeeded"] == 10
        assert "Content-Encoding" not in health.headers

    @pytest.mark.covers("HTTP-01", "HTTP-04")
    async def test_the_text_stream_is_hardened_and_never_compressed(
        self, sqlite_backend: DatabaseBackend, provider: FakeProvider
    ):
        """Server-sent events reach the client as they are written, with the security headers.

        Integration scope: POST /v1/text/stream on the app create_app builds, served by
        uvicorn → GZipMiddleware and SecurityHeadersMiddleware → a client accepting gzip.
        Business impact: a compressor holds events back until its buffer fills, so a streaming
        answer would arrive all at once at the end; a stream is a response like any other for
        content sniffing and framing.
        Test strategy: the fake model goes silent after three chunks, so whatever the client
        receives was sent before the stream's end; stream a summary accepting gzip and read
        events until the first delta (the client's read timeout fails a held-back stream).
        Success criteria: `meta` then a `delta` while the provider is still silent; an event
        stream without Content-Encoding; the four security headers with the strict policy.
        """
        provider.pause_after(3)
        app = create_app(make_settings(sqlite_backend), Externals(ai_model=provider.model))
        body = {"operation": "summarize", "text": "The bridge reopened. Traffic fell. " * 40}
        headers = {"X-API-Key": PUBLIC_KEY, "Accept-Encoding": "gzip"}

        async with (
            served(app) as url,
            AsyncClient(base_url=url, headers=headers, timeout=10) as client,
            aconnect_sse(client, "POST", "/v1/text/stream", json=body) as sse,
        ):
            names = []
            async for event in sse.aiter_sse():
                names.append(event.event)
                if event.event == "delta":
                    break
            response = sse.response

        assert (names[0], names[-1]) == ("meta", "delta")
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in response.headers
        assert_hardened(response)


class TestAllowedHosts:
    """Seam: the Host header → TrustedHostMiddleware (ALLOWED_HOSTS).

    Paths: HTTP-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    Starlette's TrustedHostMiddleware from ALLOWED_HOSTS.
    Faked: nothing: the Host header is the client's to send.
    """

    @pytest.mark.covers("HTTP-05")
    @pytest.mark.parametrize(
        ("host", "status"),
        [("api.example.com", 200), ("localhost:8000", 200), ("evil.example", 400)],
        ids=["public-name", "health-check", "forged"],
    )
    async def test_only_listed_hosts_are_answered(
        self, make_client: ClientFactory, host: str, status: int
    ):
        """With ALLOWED_HOSTS set, any other Host header is refused before any route runs.

        Integration scope: Host header → TrustedHostMiddleware → route or 400.
        Business impact: DNS rebinding and Host-header poisoning need the server to answer
        for a name it does not own; the container health check (localhost) keeps working.
        Test strategy: ALLOWED_HOSTS=api.example.com,localhost; the public name, the health
        check's localhost:8000 and a forged name.
        Success criteria: 200 for the listed names (port ignored), 400 for the forged one,
        with a request id.
        """
        client = await make_client(allowed_hosts=["api.example.com", "localhost"])

        response = await client.get("/v1/health", headers={"Host": host})

        assert response.status_code == status
        assert "X-Request-ID" in response.headers

    @pytest.mark.covers("HTTP-05")
    async def test_default_answers_any_host(self, make_client: ClientFactory):
        """The default (`*`) answers whatever name a development set-up uses.

        Integration scope: Host header → TrustedHostMiddleware with the default setting.
        Business impact: a fresh clone works behind any name or address; production narrows
        it (docs/deploy.md's checklist).
        Test strategy: a GET with an arbitrary Host header under default settings.
        Success criteria: 200.
        """
        client = await make_client()

        response = await client.get("/v1/health", headers={"Host": "192.0.2.10:8000"})

        assert response.status_code == 200
