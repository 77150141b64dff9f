"""API → the app's metrics: what an operator's dashboards and alerts read from a scrape."""

import pytest
from conftest import OPERATOR_KEY, ClientFactory
from fakes.providers import FakeProvider
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

OPERATOR = {"X-API-Key": OPERATOR_KEY}
TEXT = {"operation": "sentiment", "text": "The new bridge opened a month early."}


async def scrape(client: AsyncClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of a scrape (with the operator key as a bearer token), by name and labels."""
    response = await client.get(
        "/internal/metrics", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}
    )
    assert response.status_code == 200
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


class TestRequestMetrics:
    """Seam: RequestContextMiddleware → the router's choice → Prometheus labels.

    Paths: OBS-08
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    prometheus_client's registry read through /internal/metrics.
    Faked: nothing.
    """

    @pytest.mark.covers("OBS-08")
    async def test_each_request_is_counted_under_its_full_route_template(
        self, make_client: ClientFactory
    ):
        """A dashboard can tell every route apart, the probes, the docs and their assets included.

        Integration scope: routers with prefixes, plain routes, a static mount → middleware →
        `http_requests_total` on `/internal/metrics`.
        Business impact: `/v1/health` (liveness) and `/internal/health` (readiness) shared
        the label `/health`, so a readiness alert could fire on liveness traffic; `/docs`
        and `/openapi.json` were counted as `unmatched`, like scanners' 404s.
        Test strategy: one request to each kind of route (prefixed, with a path parameter,
        plain, mounted, the probes) and to an unknown path; then read the counters.
        Success criteria: each request is counted once under its full template, the unknown
        path under `unmatched`.
        """
        client = await make_client(api_key=OPERATOR_KEY)
        paths = {
            "/v1/health": "/v1/health",
            "/internal/health": "/internal/health",
            "/healthz": "/healthz",
            "/readyz": "/readyz",
            "/internal/accounts/7/revoke": "/internal/accounts/{account_id}/revoke",
            "/docs": "/docs",
            "/openapi.json": "/openapi.json",
            "/docs-assets/swagger-ui.css": "/docs-assets/{path}",
            "/no/such/route": "unmatched",
        }
        for path in paths:
            method = "POST" if path.endswith("/revoke") else "GET"
            await client.request(method, path)

        requests = (await scrape(client))["http_requests_total"]

        counted: dict[str, float] = {}
        for labels, value in requests.items():
            route = dict(labels)["route"]
            counted[route] = counted.get(route, 0.0) + value
        assert {template: counted.get(template) for template in paths.values()} == {
            template: 1.0 for template in paths.values()
        }


class TestAppMetrics:
    """Seam: middleware, cache, breaker, provider and rate limiter → Metrics → /internal/metrics.

    Paths: OBS-07
    Real: the app from create_app in its lifespan, every layer of ours, over in-process HTTP;
    the breaker and rate limiter in memory; prometheus_client's registry read through
    /internal/metrics.
    Faked: the AI provider (FakeProvider failing, then succeeding).
    """

    @pytest.mark.covers("OBS-07")
    async def test_breaker_state_and_provider_latency_follow_an_outage(
        self, make_client: ClientFactory, provider: FakeProvider
    ):
        """The breaker's state is a gauge an alert can watch, and each call is timed.

        Integration scope: provider failure → CircuitBreaker on_transition → breaker_state;
        ResilientProvider → provider_call_duration_seconds by outcome.
        Business impact: "the AI provider is down" should page someone from one metric, and
        provider latency is the first suspect when requests slow down.
        Test strategy: threshold 1; a good call, a failing one (opens), an operator reset.
        Success criteria: state 0, then 2, then 0; one timed call per outcome; cache lookups
        counted by outcome; process and GC metrics present.
        """
        client = await make_client(
            model=provider.model, breaker_failure_threshold=1, ai_max_attempts=1
        )
        at_start = await scrape(client)
        await client.post("/v1/text/process", json=TEXT)
        provider.fail()
        await client.post("/v1/text/process", json={**TEXT, "text": "Another text entirely."})
        during = await scrape(client)
        await client.post("/internal/resilience/breakers/ai_provider/reset", headers=OPERATOR)
        after = await scrape(client)

        state = (("breaker", "ai_provider"),)
        assert [m["breaker_state"][state] for m in (at_start, during, after)] == [0.0, 2.0, 0.0]
        timed = during["provider_call_duration_seconds_count"]
        assert timed == {(("outcome", "ok"),): 1.0, (("outcome", "provider_error"),): 1.0}
        assert during["cache_lookups_total"][(("outcome", "miss"),)] == 2.0
        assert during["process_resident_memory_bytes"][()] > 0
        assert during["python_gc_collections_total"][(("generation", "0"),)] >= 0

    @pytest.mark.covers("OBS-07")
    async def test_rate_limit_refusals_counted_by_limit(self, make_client: ClientFactory):
        """Each 429 is counted under the limit that refused it.

        Integration scope: charge_rate_limit and charge_registration → RateLimiter → Metrics.
        Business impact: refusals that climb mean a tier is too tight or a client misbehaves;
        neither shows in request counts alone.
        Test strategy: a tier of 1 request a minute and 1 registration a minute; go over both.
        Success criteria: two 429s; rate_limit_refusals_total 1 for the key's tier (pro) and
        1 for registration.
        """
        client = await make_client(
            rate_limit_tiers={"free": 1, "pro": 1}, registrations_per_minute=1
        )
        for _ in range(2):
            limited = await client.post("/v1/text/process", json=TEXT)
        for n in range(2):
            body = {"email": f"user{n}@example.com", "display_name": "User"}
            refused = await client.post("/v1/auth/register", json=body)

        refusals = (await scrape(client))["rate_limit_refusals_total"]

        assert (limited.status_code, refused.status_code) == (429, 429)
        assert refusals == {(("limit", "pro"),): 1.0, (("limit", "registration"),): 1.0}
