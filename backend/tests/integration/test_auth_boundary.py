"""API → authentication: who may call what, on both API surfaces."""

import pytest
from conftest import OPERATOR_KEY, PUBLIC_KEY, ClientFactory


class TestApiKeyBoundary:
    """Seam: HTTP request → key extraction → Authenticator → role check → route, for /v1 and
    /internal.

    Paths: AUTH-01, AUTH-02, AUTH-03, AUTH-04, AUTH-05
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the configured keys; SQLite.
    Faked: nothing: the local model answers the one request that gets through.
    """

    @pytest.mark.covers("AUTH-01")
    async def test_missing_key_on_internal_is_rejected_with_401(self, make_client: ClientFactory):
        """No key at all is refused before any route runs.

        Integration scope: middleware → security dependency → Authenticator → error mapping.
        Business impact: an unauthenticated caller must never reach operator data.
        Test strategy: call /internal/health without any key header.
        Success criteria: 401 with code `authentication_required` and a request id.
        """
        client = await make_client(api_key=None)

        response = await client.get("/internal/health")

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "authentication_required"
        assert response.json()["error"]["request_id"] == response.headers["X-Request-ID"]

    @pytest.mark.covers("AUTH-02")
    async def test_unknown_key_is_rejected_with_401(self, make_client: ClientFactory):
        """A key that matches nothing is refused, whatever it looks like.

        Integration scope: X-API-Key header → constant-time comparison → error mapping.
        Business impact: guessed or stale keys must not work.
        Test strategy: send a key that is a prefix of the real one (a timing-attack favourite).
        Success criteria: 401 with a message saying the key is not valid.
        """
        client = await make_client(api_key=OPERATOR_KEY[:-1])

        response = await client.get("/internal/health")

        assert response.status_code == 401
        assert "not valid" in response.json()["error"]["message"]

    @pytest.mark.covers("AUTH-03")
    async def test_public_key_on_internal_is_forbidden_with_403(self, make_client: ClientFactory):
        """A valid public key authenticates but does not authorize the operator API.

        Integration scope: Authenticator (role) → operator dependency → error mapping.
        Business impact: customers must not see cache, breaker or account administration.
        Test strategy: call /internal/health with the public key.
        Success criteria: 403 with code `permission_denied`.
        """
        client = await make_client(api_key=PUBLIC_KEY)

        response = await client.get("/internal/health")

        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"

    @pytest.mark.covers("AUTH-04")
    @pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
    async def test_operator_key_in_either_header_is_accepted(
        self, make_client: ClientFactory, header: str
    ):
        """Both documented header forms carry the key.

        Integration scope: HTTPBearer and APIKeyHeader extraction → Authenticator.
        Business impact: clients written for either convention work unchanged.
        Test strategy: send the operator key as `X-API-Key: k` and as `Authorization: Bearer k`.
        Success criteria: 200 from /internal/health in both forms.
        """
        client = await make_client(api_key=None)
        value = f"Bearer {OPERATOR_KEY}" if header == "Authorization" else OPERATOR_KEY

        response = await client.get("/internal/health", headers={header: value})

        assert response.status_code == 200

    @pytest.mark.covers("AUTH-05")
    async def test_liveness_needs_no_key(self, make_client: ClientFactory):
        """Liveness is open so that load balancers can probe it.

        Integration scope: public router → liveness route, with no security dependency.
        Business impact: an orchestrator without credentials can still tell the process is up.
        Test strategy: call /v1/health with no key.
        Success criteria: 200 and status `ok`.
        """
        client = await make_client(api_key=None)

        response = await client.get("/v1/health")

        assert response.status_code == 200
        assert response.json()["status"] == "ok"
