"""API → readiness: each dependency reported as ok, degraded or down."""

import pytest
from conftest import OPERATOR_KEY, ClientFactory, DatabaseBackend, RedisBackend
from fakes.services import free_port
from shared.health import ReadinessResponse


class TestReadiness:
    """Seam: /internal/health → health service → database ping and cache ping.

    Paths: HEALTH-01, HEALTH-02
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    every Redis tier and both databases; for the outage, a real refused connection.
    Faked: nothing: the local model is the provider.
    """

    @pytest.mark.covers("HEALTH-01")
    async def test_all_dependencies_up_reports_ok(
        self,
        make_client: ClientFactory,
        database_backend: DatabaseBackend,
        redis_backend: RedisBackend,
    ):
        """With every dependency answering, readiness is ok on every tier.

        Integration scope: readiness route → Database.ping and ResponseCache.ping on real tiers.
        Business impact: an orchestrator routes traffic only to instances that can serve it.
        Test strategy: build the app on each database and Redis tier and ask for readiness.
        Success criteria: 200, overall `ok`, and `database` and `cache` both listed as ok.
        """
        client = await make_client(
            database=database_backend, redis=redis_backend, api_key=OPERATOR_KEY
        )

        response = await client.get("/internal/health")

        body = ReadinessResponse.model_validate(response.json())
        assert response.status_code == 200
        assert body.status == "ok"
        assert {dep.name: dep.status for dep in body.dependencies} == {
            "database": "ok",
            "cache": "ok",
            "ai_provider": "ok",
        }

    @pytest.mark.covers("HEALTH-02")
    async def test_redis_unreachable_reports_cache_degraded(self, make_client: ClientFactory):
        """An unreachable Redis degrades readiness instead of failing it.

        Integration scope: readiness route → ResponseCache.ping against a Redis that is gone.
        Business impact: the service still answers from memory, so it should stay in rotation
        while telling operators something is wrong.
        Test strategy: point the app's real Redis client at a loopback port where nothing
        listens (connection refused, as when the server is down).
        Success criteria: overall `degraded`, cache `degraded`, database still `ok`.
        """
        client = await make_client(
            redis_url=f"redis://127.0.0.1:{free_port()}/0", api_key=OPERATOR_KEY
        )

        response = await client.get("/internal/health")

        body = ReadinessResponse.model_validate(response.json())
        statuses = {dep.name: dep.status for dep in body.dependencies}
        assert body.status == "degraded"
        assert statuses == {"database": "ok", "cache": "degraded", "ai_provider": "ok"}
