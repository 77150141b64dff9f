"""API → its OpenAPI documents and documentation pages: examples that work, assets served by
the app itself, the operator document behind the operator key."""

import base64
import re
from typing import Any

import pytest
from conftest import OPERATOR_KEY, PUBLIC_KEY, ClientFactory
from httpx import AsyncClient
from shared.text import Operation

DOCUMENTS = {"/openapi.json": PUBLIC_KEY, "/internal/openapi.json": OPERATOR_KEY}
PAGES = {"/docs": PUBLIC_KEY, "/redoc": PUBLIC_KEY, "/internal/docs": OPERATOR_KEY}
# What a page loads: script and stylesheet sources, icons, and the document Swagger UI fetches.
_REFERENCES = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|url: '([^']+)'""")

Example = tuple[str, str, str, dict[str, Any]]  # (method, path, example name, request body)


async def documented_examples(client: AsyncClient, document: str, key: str) -> list[Example]:
    """Every request-body example of one OpenAPI document."""
    spec = (await client.get(document, headers={"X-API-Key": key})).json()
    return [
        (method.upper(), path, name, example["value"])
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
        for content in operation.get("requestBody", {}).get("content", {}).values()
        for name, example in content.get("examples", {}).items()
    ]


def basic(key: str) -> dict[str, str]:
    """The key as a browser sends it after a Basic challenge: as the password."""
    return {"Authorization": "Basic " + base64.b64encode(f"operator:{key}".encode()).decode()}


class TestDocumentedExamples:
    """Seam: OpenAPI documents' request examples → the routes they document.

    Paths: DOCS-01
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    both OpenAPI documents as the app builds them; SQLite; the local model.
    Faked: nothing: the local model answers every example.
    """

    @pytest.mark.covers("DOCS-01")
    async def test_every_request_example_of_both_documents_succeeds(
        self, make_client: ClientFactory
    ):
        """ "Try it out" with any documented example works as it is.

        Integration scope: both OpenAPI documents (hand-written examples) → auth → request
        contracts → routes → the local model and SQLite.
        Business impact: the generated example of `/v1/text/process` used to send every
        option and `"question": "string"` with `summarize`, a 422 on a newcomer's first try.
        Test strategy: read every request-body example from both documents and send each one,
        with the key each document is for; check that every body-taking route has one and
        the text routes one per operation.
        Success criteria: every example answers 2xx; every route with a body has an example;
        `/v1/text/process` and `/v1/text/stream` have an example of each operation.
        """
        client = await make_client(api_key=None)
        examples = [
            (example, key)
            for document, key in DOCUMENTS.items()
            for example in await documented_examples(client, document, key)
        ]

        outcomes = {
            f"{method} {path} [{name}]": (
                await client.request(method, path, json=body, headers={"X-API-Key": key})
            ).status_code
            for (method, path, name, body), key in examples
        }

        routes = {(method, path) for (method, path, _, _), _ in examples}
        text_routes = ("/v1/text/process", "/v1/text/stream")
        operations = {
            (path, body["operation"]) for (_, path, _, body), _ in examples if path in text_routes
        }
        assert {example: status for example, status in outcomes.items() if status >= 300} == {}
        assert routes == {
            ("POST", "/v1/text/process"),
            ("POST", "/v1/text/stream"),
            ("POST", "/v1/text/batch"),
            ("POST", "/v1/jobs"),
            ("POST", "/v1/auth/register"),
            ("POST", "/internal/cache/invalidate"),
        }
        assert operations == {(path, operation) for path in text_routes for operation in Operation}


class TestPublicDocumentLayout:
    """Seam: the API's routers, some listed flat for speed → the public OpenAPI document.

    Paths: DOCS-04
    Real: the app from create_app in its lifespan, over in-process HTTP; the document as the
    app builds it from its routes.
    Faked: nothing.
    """

    @pytest.mark.covers("DOCS-04")
    async def test_document_lists_paths_in_reading_order_and_keyed_routes_document_401_503(
        self, make_client: ClientFactory
    ):
        """The routes listed flat, outside any included router, read as the included ones did.

        Integration scope: app.api.v1's flat routes and included routers → FastAPI's OpenAPI
        generation → `/openapi.json`.
        Business impact: the busiest routes are listed flat, with their full paths, because
        FastAPI walks included routers anew on every request. Listed in another order, the
        document a newcomer reads first would reshuffle; declared without the responses their
        router was included with, keyed routes would stop documenting their 401 and 503.
        Test strategy: read the public document; compare its paths, in order, with the API's
        reading order, and collect the keyed operations missing a 401 or a 503.
        Success criteria: probes, liveness, text, history, jobs, accounts, in that order; every
        operation with a security requirement documents 401 and 503.
        """
        client = await make_client(api_key=None)

        spec = (await client.get("/openapi.json")).json()

        keyed_without_errors = [
            f"{method.upper()} {path}"
            for path, methods in spec["paths"].items()
            for method, operation in methods.items()
            if operation.get("security") and not {"401", "503"} <= operation["responses"].keys()
        ]
        assert list(spec["paths"]) == [
            "/healthz",
            "/readyz",
            "/v1/health",
            "/v1/text/operations",
            "/v1/text/process",
            "/v1/text/stream",
            "/v1/text/batch",
            "/v1/history",
            "/v1/jobs",
            "/v1/jobs/{job_id}",
            "/v1/jobs/{job_id}/results",
            "/v1/auth/register",
            "/v1/auth/me",
            "/v1/auth/keys/rotate",
        ]
        assert keyed_without_errors == []


class TestDocumentationPages:
    """Seam: /docs, /redoc, /internal/docs → the app's own static assets.

    Paths: DOCS-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the pages' HTML and the static assets fastapi-offline installs.
    Faked: nothing.
    """

    @pytest.mark.covers("DOCS-02")
    @pytest.mark.parametrize(("page", "key"), PAGES.items(), ids=PAGES.keys())
    async def test_page_loads_only_assets_the_app_serves(
        self, make_client: ClientFactory, page: str, key: str
    ):
        """The documentation works offline: nothing is fetched from a CDN.

        Integration scope: the docs routes → HTML → the static mount of the installed assets.
        Business impact: offline or behind a strict proxy `/docs` was a blank page, because
        Swagger UI's script and styles came from a CDN.
        Test strategy: fetch the page, collect every URL it loads (scripts, stylesheets, icon,
        the document), then fetch each one from the same app.
        Success criteria: the page references at least its script, and only paths on this
        server; each answers 200 with a body.
        """
        client = await make_client(api_key=key)

        html = (await client.get(page)).text
        references = [src or url for src, url in _REFERENCES.findall(html)]
        fetched = {ref: await client.get(ref) for ref in references}

        assert any(ref.endswith(".js") for ref in references)
        assert [ref for ref in references if not ref.startswith("/")] == []
        assert {ref: (r.status_code, bool(r.content)) for ref, r in fetched.items()} == {
            ref: (200, True) for ref in references
        }


class TestOperatorDocumentation:
    """Seam: /internal/openapi.json and /internal/docs → operator authentication.

    Paths: DOCS-03
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the operator key check and its Basic challenge.
    Faked: nothing.
    """

    @pytest.mark.covers("DOCS-03")
    @pytest.mark.parametrize("path", ["/internal/openapi.json", "/internal/docs"])
    async def test_operator_document_needs_the_operator_key_and_a_browser_is_asked_for_it(
        self, make_client: ClientFactory, path: str
    ):
        """The operator API's map is shown to operators only, and a browser can get in.

        Integration scope: docs routes → key extraction (X-API-Key, Bearer, Basic password)
        → Authenticator → operator check.
        Business impact: the operator document lists every operator route and its inputs;
        it answered anyone. A browser cannot send an X-API-Key header when it opens a page,
        so without a challenge an operator could not read the page at all.
        Test strategy: request the path with no key, with the public key, and with the
        operator key as X-API-Key and as the Basic password a browser sends.
        Success criteria: no key → 401 `authentication_required` with a Basic challenge;
        public key → 403; operator key → 200 both ways.
        """
        client = await make_client(api_key=None)

        anonymous = await client.get(path)
        public = await client.get(path, headers={"X-API-Key": PUBLIC_KEY})
        operator = await client.get(path, headers={"X-API-Key": OPERATOR_KEY})
        browser = await client.get(path, headers=basic(OPERATOR_KEY))

        assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (
            401,
            "authentication_required",
        )
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert public.status_code == 403
        assert (operator.status_code, browser.status_code) == (200, 200)
