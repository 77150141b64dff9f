"""The security boundary, exhaustively: every route's keys, oversized bodies, hostile headers,
hostile texts, and what reaches Redis."""

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from itertools import cycle
from typing import Any

import pytest
from app.infrastructure.ai.provider import INSTRUCTIONS
from app.main import create_app
from conftest import (
    OPERATOR_KEY,
    PUBLIC_KEY,
    ClientFactory,
    DatabaseBackend,
    RedisBackend,
    make_settings,
)
from fakes.corpus import CORPUS, Sample
from fakes.providers import FakeProvider
from fastapi.routing import iter_route_contexts
from httpx import AsyncClient, Response
from redis.asyncio import Redis
from shared.text import Operation

Route = tuple[str, str]  # (method, path template)


def route_table() -> list[Route]:
    """Every method and path the app serves (HEAD aside), read from a freshly built app.

    Built at import to parametrize the tests: create_app opens nothing until its lifespan runs.
    """
    app = create_app(make_settings(DatabaseBackend("route-table", "sqlite+aiosqlite://")))
    return sorted(
        (method, context.path)
        for context in iter_route_contexts(app.routes)
        if context.path is not None
        for method in context.methods or ()
        if method != "HEAD"
    )


ROUTES = route_table()
# Deliberately reachable without a key: the probes, sign-up, and the public API's documentation
# (the operator API's document and page need the operator key, like the rest of /internal).
PUBLIC_ROUTES: list[Route] = [
    ("GET", "/docs"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/readyz"),
    ("GET", "/redoc"),
    ("POST", "/v1/auth/register"),
    ("GET", "/v1/health"),
]
PROTECTED_ROUTES = [route for route in ROUTES if route not in PUBLIC_ROUTES]


def route_id(route: Route) -> str:
    return " ".join(route)


def concrete(path: str) -> str:
    """The path with each `{parameter}` filled in: authentication comes before any lookup."""
    return re.sub(r"\{[^}]+\}", "1", path)


def verdict(response: Response) -> str:
    """What the request's credentials earned: refused (401/403), or let through to the route."""
    if response.status_code in (401, 403) or response.status_code >= 500:
        return str(response.status_code)
    return "let through"


async def revoked_key(client: AsyncClient) -> str:
    """A key issued through the API, then revoked by an operator through the API."""
    registered = await client.post(
        "/v1/auth/register", json={"email": "mallory@example.com", "display_name": "Mallory"}
    )
    account_id = registered.json()["account"]["id"]
    revoked = await client.post(
        f"/internal/accounts/{account_id}/revoke", headers={"X-API-Key": OPERATOR_KEY}
    )
    assert (registered.status_code, revoked.status_code) == (201, 200)
    key: str = registered.json()["api_key"]
    return key


class TestAuthenticationMatrix:
    """Seam: every route in the app's route table → key extraction → Authenticator → role.

    Paths: SEC-01
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the route table read from the app itself; SQLite with a revoked key.
    Faked: nothing.
    """

    @pytest.mark.covers("SEC-01")
    def test_every_deliberately_public_route_exists(self):
        """The short list of routes that need no key names routes the app really serves.

        Integration scope: the app factory's whole route table (both routers, docs routes).
        Business impact: this list is the one place where openness is decided; every other
        route, including one added tomorrow, is held to the key checks below.
        Test strategy: compare the list with the route table read from a fresh app.
        Success criteria: no listed route is missing (a renamed public route updates it).
        """
        missing = [route for route in PUBLIC_ROUTES if route not in ROUTES]

        assert missing == []

    @pytest.mark.covers("SEC-01")
    @pytest.mark.parametrize("route", PUBLIC_ROUTES, ids=route_id)
    async def test_public_route_answers_without_a_key(
        self, make_client: ClientFactory, route: Route
    ):
        """Liveness, sign-up and the documentation are reachable with no credentials.

        Integration scope: HTTP request without key headers → middleware → route.
        Business impact: probes, new customers and API readers need no key; a key check
        slipped onto these breaks sign-up and health checks.
        Test strategy: call each deliberately public route without any key (no body).
        Success criteria: neither 401 nor 403, and no 5xx.
        """
        client = await make_client(api_key=None)
        method, path = route

        response = await client.request(method, concrete(path))

        assert verdict(response) == "let through"

    @pytest.mark.covers("SEC-01")
    @pytest.mark.parametrize("route", PROTECTED_ROUTES, ids=route_id)
    async def test_every_bad_key_is_refused_and_the_operator_key_passes(
        self, make_client: ClientFactory, route: Route
    ):
        """Each protected route refuses missing, unknown and revoked keys; roles hold.

        Integration scope: X-API-Key → Authenticator (settings keys, then issued keys in the
        database) → operator check on /internal → route.
        Business impact: one route without its check exposes the provider bill or the
        operator API; a revoked customer must be locked out everywhere, not only where the
        revocation was tested.
        Test strategy: on a fresh app, issue a key through the API and revoke it through the
        operator API, then call the route with no key, an unknown key, the revoked key, the
        public key and the operator key (no body: authentication comes first).
        Success criteria: 401, 401, 401; the public key gets 403 on /internal and through on
        /v1; the operator key gets through; never a 5xx.
        """
        client = await make_client(api_key=None)
        method, path = route
        credentials = {
            "no key": None,
            "unknown key": "sk_" + "unknown" * 6,
            "revoked key": await revoked_key(client),
            "public key": PUBLIC_KEY,
            "operator key": OPERATOR_KEY,
        }

        verdicts = {
            name: verdict(
                await client.request(
                    method, concrete(path), headers={"X-API-Key": key} if key else {}
                )
            )
            for name, key in credentials.items()
        }

        internal = path.startswith("/internal/")
        assert verdicts == {
            "no key": "401",
            "unknown key": "401",
            "revoked key": "401",
            "public key": "403" if internal else "let through",
            "operator key": "let through",
        }


@dataclass
class MeteredBody:
    """A request body streamed in chunks that counts how many chunks the server pulled."""

    chunk_size: int
    chunk_count: int
    chunks_read: int = 0

    @property
    def size(self) -> int:
        return self.chunk_size * self.chunk_count

    async def stream(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunk_count):
            self.chunks_read += 1
            yield b"x" * self.chunk_size


class TestOversizedBody:
    """Seam: BodySizeLimitMiddleware → the ASGI receive channel, before any route reads it.

    Paths: SEC-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP.
    Faked: the client's body (a metered stream counting the chunks pulled), the AI provider
    (FakeProvider, to show no call was made).
    """

    @pytest.mark.covers("SEC-02")
    async def test_declared_oversized_body_refused_413_before_reading_any_of_it(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """A Content-Length over the limit is answered at once; the body is never pulled.

        Integration scope: Content-Length header → middleware → 413 error body, with the
        body's chunks metered where the server would read them from the socket.
        Business impact: a client announcing gigabytes must not make the server read (or
        buffer) them; the refusal costs the server nothing.
        Test strategy: announce a 10 MiB body in 64 KiB chunks to an app with a 1 KiB limit.
        Success criteria: 413 `payload_too_large`, zero chunks pulled, no provider call.
        """
        client = await make_client(model=provider.model, max_body_bytes=1024)
        body = MeteredBody(chunk_size=64 * 1024, chunk_count=160)

        response = await client.post(
            "/v1/text/process",
            content=body.stream(),
            headers={"Content-Length": str(body.size), "Content-Type": "application/json"},
        )

        assert (response.status_code, response.json()["error"]["code"]) == (
            413,
            "payload_too_large",
        )
        assert body.chunks_read == 0
        assert provider.calls == 0

    @pytest.mark.covers("SEC-02")
    async def test_streamed_oversized_body_reading_stops_at_the_first_chunk_past_the_limit(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """A chunked body with no length is read only until it passes the limit.

        Integration scope: ASGI receive → the middleware's byte count → 413 error body.
        Business impact: streaming must not be a way around the limit: an endless upload is
        cut off after the limit, not read to its end.
        Test strategy: stream 1 MiB in 400-byte chunks (no Content-Length) to a 1 KiB limit.
        Success criteria: 413, and exactly 3 chunks pulled (1,200 bytes: the first count
        over 1,024) out of 2,560; no provider call.
        """
        client = await make_client(model=provider.model, max_body_bytes=1024)
        body = MeteredBody(chunk_size=400, chunk_count=2560)

        response = await client.post(
            "/v1/text/process", content=body.stream(), headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 413
        assert body.chunks_read == 3
        assert provider.calls == 0


INJECTED = b"X-Injected: yes"

UNSAFE_REQUEST_IDS = {
    "crlf_then_header": b"trace-1\r\n" + INJECTED,
    "lf_then_cookie": b"trace-2\nSet-Cookie: session=stolen",
    "nul": b"trace\x00-3",
    "non_ascii_utf8": "trace-é-ид-🙂".encode(),
    "spaces_log_forging": b"ok 200 GET /internal/accounts",
    "one_char_too_long": b"a" * 65,
    "sixteen_kib": b"a" * 16 * 1024,
}

# Key headers that must neither crash the key checks nor come back: (header, value).
UNSAFE_CREDENTIALS = {
    "api_key_crlf": ("X-API-Key", PUBLIC_KEY.encode() + b"\r\n" + INJECTED),
    "api_key_nul": ("X-API-Key", PUBLIC_KEY.encode() + b"\x00"),
    "api_key_non_ascii": ("X-API-Key", "clé-ключ-🔑".encode()),
    "api_key_latin1": ("X-API-Key", "sk_caf\xe9".encode("latin-1")),
    "api_key_64_kib": ("X-API-Key", b"sk_" + b"k" * 64 * 1024),
    "api_key_sql": ("X-API-Key", b"sk_' OR '1'='1' --"),
    "bearer_crlf": ("Authorization", b"Bearer " + PUBLIC_KEY.encode() + b"\r\n" + INJECTED),
    "bearer_64_kib": ("Authorization", b"Bearer " + b"k" * 64 * 1024),
}

UNSAFE_CACHE_CONTROLS = {
    "crlf_then_header": b"no-cache\r\n" + INJECTED,
    "nul": b"no-cache\x00",
    "latin1": "no-cäche".encode("latin-1"),
    "utf8": "max-age=0, ключ".encode(),
    "sixty_four_kib": b"no-store, " + b"x" * 64 * 1024,
}


def reflected(response: Response, value: bytes) -> bool:
    """Whether any part of `value` longer than a word comes back in the headers or body."""
    raw = b"\n".join([*(k + b": " + v for k, v in response.headers.raw), response.content])
    fragments = [part for part in re.split(rb"[\r\n\x00]+", value) if len(part) > 6]
    return any(fragment in raw for fragment in fragments) or b"x-injected" in raw.lower()


class TestHeaderInjection:
    """Seam: raw request headers → request-id middleware, key extraction, Cache-Control → response
    headers and error body.

    Paths: SEC-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP.
    Faked: the AI provider (FakeProvider).
    """

    @pytest.mark.covers("SEC-03")
    @pytest.mark.parametrize("value", UNSAFE_REQUEST_IDS.values(), ids=UNSAFE_REQUEST_IDS.keys())
    async def test_unsafe_request_id_replaced_never_echoed(
        self, make_client: ClientFactory, value: bytes
    ):
        """A caller's request id that could split headers or forge logs is replaced.

        Integration scope: X-Request-ID → RequestContextMiddleware → response header and the
        error body's request_id (the id the logs carry too).
        Business impact: an echoed CR/LF lets a caller add headers (cookies) to our
        response; an echoed id with spaces forges log lines operators trust in an incident.
        Test strategy: send each unsafe id to a route that fails with 401, so the id shows
        up both in a header and in the error body.
        Success criteria: 401 (never 5xx); the response id is a fresh 32-hex id, the same in
        header and body; no part of the unsafe value and no injected header comes back.
        """
        client = await make_client(api_key=None)

        response = await client.get("/v1/text/operations", headers={b"X-Request-ID": value})

        request_id = response.headers["X-Request-ID"]
        assert response.status_code == 401
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        assert response.json()["error"]["request_id"] == request_id
        assert not reflected(response, value)

    @pytest.mark.covers("SEC-03")
    @pytest.mark.parametrize(
        ("header", "value"), UNSAFE_CREDENTIALS.values(), ids=UNSAFE_CREDENTIALS.keys()
    )
    async def test_malformed_key_header_refused_without_echo(
        self, make_client: ClientFactory, header: str, value: bytes
    ):
        """Keys with control characters, foreign scripts or huge sizes are simply wrong keys.

        Integration scope: X-API-Key / Authorization → security dependencies → constant-time
        comparison and the issued-key lookup in the database → error mapping.
        Business impact: a key header that crashes the comparison or the lookup is a 500 any
        anonymous caller can trigger; an echoed key leaks into logs and proxies.
        Test strategy: a valid key with CR/LF or NUL appended (it must not match), non-ASCII
        and Latin-1 keys, 64 KiB keys, SQL in an `sk_` key.
        Success criteria: 401, with neither the value nor an injected header in the response.
        """
        client = await make_client(api_key=None)

        response = await client.get("/v1/text/operations", headers={header.encode(): value})

        assert response.status_code == 401
        assert not reflected(response, value)

    @pytest.mark.covers("SEC-03")
    @pytest.mark.parametrize(
        "value", UNSAFE_CACHE_CONTROLS.values(), ids=UNSAFE_CACHE_CONTROLS.keys()
    )
    async def test_hostile_cache_control_is_harmless(
        self, make_client: ClientFactory, provider: FakeProvider, value: bytes
    ):
        """Cache-Control is read for `no-cache` only; anything else in it is ignored.

        Integration scope: Cache-Control header → text route → cache read decision → response.
        Business impact: the one header our route interprets must not crash it or be
        reflected into the response.
        Test strategy: process a text with each hostile Cache-Control value.
        Success criteria: 200 with the answer, and no part of the value in the response.
        """
        client = await make_client(model=provider.model)

        response = await client.post(
            "/v1/text/process",
            json={"operation": "summarize", "text": "The dam held. The village stayed dry."},
            headers={b"Cache-Control": value},
        )

        assert response.status_code == 200
        assert not reflected(response, value)


class TestPromptInjectionCorpus:
    """Seam: POST /v1/text/process → request model → cleaning → prompt → provider boundary.

    Paths: SEC-04
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the fixed instructions.
    Faked: the AI provider (FakeProvider recording each document and its instructions).
    """

    @pytest.mark.covers("SEC-04")
    @pytest.mark.parametrize("sample", CORPUS, ids=[sample.name for sample in CORPUS])
    async def test_sample_reaches_provider_as_data_under_fixed_instructions(
        self, make_client: ClientFactory, provider: FakeProvider, sample: Sample
    ):
        """Injection attempts and tricky text travel as data; the instructions never change.

        Integration scope: request contract → clean_text → ProviderRequest JSON document →
        pydantic-ai agent → the fake model, where instructions and the user message arrive.
        Business impact: a text that rewrites the instructions or the document's fields
        turns our service into the attacker's model; a text mangled by sanitizing gives
        answers about another text.
        Test strategy: summarize each corpus sample (named attack or tricky benign input)
        and read what the provider received.
        Success criteria: 200; exactly one provider call whose document is
        summarize/default options/no question with the text exactly as sent (control
        characters removed, CRLF as LF), under the fixed summarize instructions.
        """
        client = await make_client(model=provider.model)

        response = await client.post(
            "/v1/text/process", json={"operation": "summarize", "text": sample.text}
        )

        assert response.status_code == 200
        assert provider.documents == [
            {
                "operation": "summarize",
                "options": {"max_sentences": 3},
                "question": None,
                "text": sample.expected,
            }
        ]
        assert provider.instructions == [INSTRUCTIONS[Operation.SUMMARIZE]]


def corpus_request(sample: Sample, operation: Operation) -> dict[str, Any]:
    question = {"question": "What is this text about?"} if operation is Operation.QA else {}
    return {"operation": operation.value, "text": sample.text, **question}


def is_json(raw: bytes | str | None) -> bool:
    if raw is None:
        return False
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


async def stored_values(redis: Redis) -> list[tuple[str, bytes | str | None]]:
    """Every value under the cache prefix: whole strings, and hashes field by field."""
    stored: list[tuple[str, bytes | str | None]] = []
    async for key in redis.scan_iter(match="llm:cache:*"):
        if await redis.type(key) == b"hash":
            stored += [(key.decode(), value) for value in (await redis.hgetall(key)).values()]
        else:
            stored.append((key.decode(), await redis.get(key)))
    return stored


class TestCachedValuesAreJson:
    """Seam: answers to the corpus → ResponseCache → Redis, read back by an outside client.

    Paths: SEC-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the local model; the cache on fakeredis, a redis-server and a container, inspected with the
    test's own client.
    Faked: nothing.
    """

    @pytest.mark.covers("SEC-05")
    async def test_every_cached_value_is_json(
        self, make_client: ClientFactory, redis_backend: RedisBackend, redis_inspector: Redis
    ):
        """Whatever users send, Redis holds only JSON, never pickles or raw bytes.

        Integration scope: corpus texts → local model answers of all five result types →
        ResponseCache → Redis, inspected with a separate client.
        Business impact: a pickled value in a shared Redis runs code in every process that
        reads it; values other tools cannot parse make the cache opaque to operators.
        Test strategy: process every corpus sample, cycling through the five operations,
        then scan every key under the cache prefix: strings are read whole, hashes field by
        field, on fakeredis, a real Redis and a container.
        Success criteria: every request 200; every value parses as JSON; one answer key per
        answer that was not served from the cache.
        """
        client = await make_client(redis=redis_backend)

        responses = [
            await client.post("/v1/text/process", json=corpus_request(sample, operation))
            for sample, operation in zip(CORPUS, cycle(Operation), strict=False)
        ]
        stored = await stored_values(redis_inspector)

        fresh_answers = sum(not response.json()["cached"] for response in responses)
        answer_keys = {key for key, _ in stored if key != "llm:cache:__stats__"}
        assert {response.status_code for response in responses} == {200}
        assert [key for key, raw in stored if not is_json(raw)] == []
        assert len(answer_keys) == fresh_answers
