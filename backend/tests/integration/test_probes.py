"""Probes → readiness: `/healthz` and `/readyz` answer without a key, and mean what an
orchestrator needs them to mean; the AI provider's readiness follows what it really does."""

import asyncio
from collections.abc import Iterator

import pytest
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend
from fakes.openai_server import OpenAICompatibleServer, openai_compatible_server
from fakes.providers import FakeProvider
from fakes.services import free_port
from fakes.tcp_proxy import TcpProxy
from httpx import AsyncClient
from pydantic_ai import models
from shared.health import ReadinessResponse
from sqlalchemy.engine import make_url

OPERATOR = {"X-API-Key": OPERATOR_KEY}
TEXT = {"operation": "sentiment", "text": "The harbour reopened after the storm."}
on_postgresql = pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)


def statuses(body: ReadinessResponse) -> dict[str, str]:
    return {dep.name: dep.status for dep in body.dependencies}


async def readyz(client: AsyncClient) -> tuple[int, ReadinessResponse]:
    response = await client.get("/readyz")
    return response.status_code, ReadinessResponse.model_validate(response.json())


async def provider_detail(client: AsyncClient) -> str:
    body = ReadinessResponse.model_validate(
        (await client.get("/internal/health", headers=OPERATOR)).json()
    )
    (provider,) = (dep for dep in body.dependencies if dep.name == "ai_provider")
    return f"{provider.status}: {provider.detail}"


class TestProbes:
    """Seam: /healthz and /readyz, no key → health service → database, cache and provider.

    Paths: OBS-01
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    SQLite and the worker's PostgreSQL database, for a cut a loopback TCP proxy to it; a refused
    Redis port and a refused PostgreSQL port.
    Faked: nothing: every outage is a real refused or cut connection.
    """

    @pytest.mark.covers("OBS-01")
    async def test_all_up_ready_without_key_and_without_details(
        self, make_client: ClientFactory, database_backend: DatabaseBackend
    ):
        """With every dependency up, both probes answer 200 to a caller without a key.

        Integration scope: /healthz and /readyz → check_readiness → Database.ping, cache, breaker.
        Business impact: an orchestrator or load balancer has no key; it must still be able
        to tell whether to send traffic here.
        Test strategy: no key at all; ask both probes on each database tier.
        Success criteria: 200 and 200; readiness ok for the three dependencies, and no detail
        (model names, hosts) given away to an anonymous caller.
        """
        client = await make_client(database=database_backend, api_key=None)

        live = await client.get("/healthz")
        code, body = await readyz(client)

        assert live.status_code == 200
        assert code == 200
        assert body.status == "ok"
        assert statuses(body) == {"database": "ok", "cache": "ok", "ai_provider": "ok"}
        assert all(dep.detail == "" for dep in body.dependencies)

    @pytest.mark.covers("OBS-01")
    async def test_redis_down_ready_but_degraded(self, make_client: ClientFactory):
        """Redis unreachable: still ready (answers come from memory), and says it is degraded.

        Integration scope: /readyz → ResponseCache.ping against a Redis that refuses connections.
        Business impact: pulling every instance out of rotation because Redis is down would
        turn a slower service into no service.
        Test strategy: point REDIS_URL at a loopback port where nothing listens.
        Success criteria: /readyz 200 with `degraded` and the cache degraded; /healthz 200.
        """
        client = await make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0", api_key=None)

        code, body = await readyz(client)
        live = await client.get("/healthz")

        assert (code, body.status) == (200, "degraded")
        assert statuses(body) == {"database": "ok", "cache": "degraded", "ai_provider": "ok"}
        assert live.status_code == 200

    @pytest.mark.covers("OBS-01")
    async def test_database_unreachable_not_ready_while_alive(self, make_client: ClientFactory):
        """No database at all: not ready (503), yet alive, so it is not restarted for nothing.

        Integration scope: /readyz and /healthz → Database.ping on a PostgreSQL URL where
        nothing listens (connection refused).
        Business impact: an instance that cannot record history or check issued keys must
        get no traffic, but restarting it would not bring the database back.
        Test strategy: DATABASE_URL at a free loopback port; no migration at start.
        Success criteria: /readyz 503 with the database down; /healthz 200.
        """
        url = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
        client = await make_client(database=DatabaseBackend("unreachable", url), api_key=None)

        code, body = await readyz(client)
        live = await client.get("/healthz")

        assert (code, body.status) == (503, "down")
        assert statuses(body)["database"] == "down"
        assert live.status_code == 200

    @on_postgresql
    @pytest.mark.covers("OBS-01")
    async def test_postgres_cut_then_back_not_ready_then_ready(
        self, make_client: ClientFactory, database_backend: DatabaseBackend
    ):
        """A PostgreSQL that drops away mid-life: 503 while it is gone, 200 once it is back.

        Integration scope: /readyz → Database.ping → asyncpg → a loopback proxy to the real
        PostgreSQL, which the test cuts and restores.
        Business impact: readiness must follow the database both ways, or instances stay out
        of rotation after the database returns.
        Test strategy: ready through the proxy, cut it, ask, restore it, ask again.
        Success criteria: 200, then 503 `down`, then 200 `ok`; /healthz 200 throughout.
        """
        host, port = make_url(database_backend.url).host, make_url(database_backend.url).port
        async with TcpProxy(host or "127.0.0.1", port or 5432) as proxy:
            proxied = make_url(database_backend.url).set(host="127.0.0.1", port=proxy.port)
            client = await make_client(
                database=DatabaseBackend("proxied", proxied.render_as_string(hide_password=False)),
                api_key=None,
            )
            before, _ = await readyz(client)
            await proxy.cut()
            during, body = await readyz(client)
            live = await client.get("/healthz")
            await proxy.restore()
            after, _ = await readyz(client)

        assert (before, during, after) == (200, 503, 200)
        assert body.status == "down"
        assert live.status_code == 200


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAICompatibleServer]:
    """The loopback provider; model requests are allowed for this test only, to it alone."""
    monkeypatch.setattr(models, "ALLOW_MODEL_REQUESTS", True)
    with openai_compatible_server() as server:
        yield server


async def poll_provider_detail(client: AsyncClient, expected: str, attempts: int = 200) -> str:
    """The provider check runs in the background: ask until its verdict shows (bounded)."""
    detail = ""
    for _ in range(attempts):
        detail = await provider_detail(client)
        if expected in detail:
            break
        await asyncio.sleep(0.01)
    return detail


class TestProviderReadiness:
    """Seam: readiness → ResilientProvider (breaker outcomes, background check) → provider.

    Paths: OBS-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the breaker and the background provider check; an OpenAI-compatible server on loopback
    (fakes.openai_server) over real HTTP that accepts or refuses the key.
    Faked: the AI provider (the loopback server, or FakeProvider failing).
    """

    @pytest.mark.covers("OBS-02")
    async def test_refused_key_degrades_provider_without_spending_tokens(
        self, make_client: ClientFactory, openai_server: OpenAICompatibleServer
    ):
        """A key the provider refuses shows in readiness before any request fails.

        Integration scope: /readyz and /internal/health → ResilientProvider.check_problem →
        AIProvider.check → AsyncOpenAI GET /models over real HTTP to a loopback server.
        Business impact: a wrong AI key used to read "ok" until users' requests failed and the
        breaker opened; now the operator sees it first, and no token is paid for the check.
        Test strategy: the server accepts only another key; ask readiness until the background
        check's verdict shows (a bounded poll), then count what reached the server.
        Success criteria: provider degraded naming HTTP 401, overall 200 `degraded`; model
        listings reached the server, completions did not.
        """
        openai_server.require_key("the-right-key")
        client = await make_client(
            ai_model="openai-chat:fake-llm",
            ai_base_url=openai_server.base_url,
            ai_api_key="a-wrong-key",
            api_key=None,
        )

        detail = await poll_provider_detail(client, "HTTP 401")
        code, body = await readyz(client)

        assert (
            detail == "degraded: openai:fake-llm: the provider answered HTTP 401 to a model listing"
        )
        assert (code, body.status, statuses(body)["ai_provider"]) == (200, "degraded", "degraded")
        assert openai_server.model_listings >= 1
        assert openai_server.requests == 0

    @pytest.mark.covers("OBS-02")
    async def test_accepted_key_ready(
        self, make_client: ClientFactory, openai_server: OpenAICompatibleServer
    ):
        """A key the provider accepts keeps the provider ok once it has been checked.

        Integration scope: readiness → AIProvider.check → GET /models with the right key.
        Business impact: the check must not cry wolf, or operators learn to ignore it.
        Test strategy: the server requires the key the app has; wait for one listing.
        Success criteria: a listing reached the server; the provider ok; no completion.
        """
        openai_server.require_key("the-right-key")
        client = await make_client(
            ai_model="openai-chat:fake-llm",
            ai_base_url=openai_server.base_url,
            ai_api_key="the-right-key",
            api_key=None,
        )

        for _ in range(200):
            await readyz(client)
            if openai_server.model_listings:
                break
            await asyncio.sleep(0.01)
        code, body = await readyz(client)

        assert openai_server.model_listings >= 1
        assert (code, statuses(body)["ai_provider"]) == (200, "ok")
        assert openai_server.requests == 0

    @pytest.mark.covers("OBS-02")
    async def test_recent_failure_degrades_provider_before_breaker_opens(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """One failed call, below the breaker's threshold, already shows in readiness.

        Integration scope: /v1/text/process → breaker records a failure → readiness reads the
        breaker's failures in its window.
        Business impact: a provider that fails one request in five never opens the breaker,
        yet users see errors; readiness says so.
        Test strategy: threshold 5, one failing request, then readiness.
        Success criteria: 502 for the request; provider degraded with "1 failed call(s)";
        the circuit still closed; overall 200.
        """
        client = await make_client(model=provider.model, ai_max_attempts=1)
        provider.fail()

        failed = await client.post("/v1/text/process", json=TEXT)
        detail = await provider_detail(client)
        code, _ = await readyz(client)

        assert failed.status_code == 502
        assert detail == "degraded: function:fake-model: 1 failed call(s) in the last 60 s"
        assert code == 200
