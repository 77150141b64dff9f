"""API → request metrics: every request counted under the route that served it."""

import pytest
from conftest import OPERATOR_KEY, ClientFactory
from prometheus_client.parser import text_string_to_metric_families


class TestRequestMetrics:
    """Seam: RequestContextMiddleware → the router's choice → Prometheus labels."""

    @pytest.mark.covers("OBS-01")
    async def test_each_request_is_counted_under_its_full_route_template(
        self, make_client: ClientFactory
    ):
        """A dashboard can tell every route apart, the docs and their assets included.

        Integration scope: routers with prefixes, plain routes, a static mount → middleware →
        `http_requests_total` on `/internal/metrics`.
        Business impact: `/v1/health` (liveness) and `/internal/health` (readiness) shared
        the label `/health`, so a readiness alert could fire on liveness traffic; `/docs`
        and `/openapi.json` were counted as `unmatched`, like scanners' 404s.
        Test strategy: one request to each kind of route (prefixed, with a path parameter,
        plain, mounted) and to an unknown path; then read the counters.
        Success criteria: each request is counted once under its full template, the unknown
        path under `unmatched`.
        """
        client = await make_client(api_key=OPERATOR_KEY)
        paths = {
            "/v1/health": "/v1/health",
            "/internal/health": "/internal/health",
            "/internal/accounts/7/revoke": "/internal/accounts/{account_id}/revoke",
            "/docs": "/docs",
            "/openapi.json": "/openapi.json",
            "/docs-assets/swagger-ui.css": "/docs-assets/{path}",
            "/no/such/route": "unmatched",
        }
        for path in paths:
            method = "POST" if path.endswith("/revoke") else "GET"
            await client.request(method, path)

        exposition = (await client.get("/internal/metrics")).text

        counted = {
            sample.labels["route"]: sample.value
            for family in text_string_to_metric_families(exposition)
            if family.name == "http_requests"
            for sample in family.samples
            if sample.name == "http_requests_total"
        }
        assert {template: counted.get(template) for template in paths.values()} == {
            template: 1.0 for template in paths.values()
        }
