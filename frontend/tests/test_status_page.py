"""Status page → HTTP → the real backend: health, and with an operator key breakers and cache."""

import re

import pytest
from streamlit.testing.v1 import AppTest

TEXT = "The observatory will be open to visitors every clear night in August."


def _texts(page: AppTest) -> list[str]:
    return [element.value for element in [*page.markdown, *page.subheader, *page.caption]]


class TestStatusPage:
    """Seam: Status page → ApiClient → /v1/health and the operator routes on a live backend."""

    @pytest.mark.covers("UI-06")
    def test_operator_key_shows_readiness_breakers_and_cache(self, backend, open_page):
        """With an operator key, the page shows every dependency, the breaker and the cache.

        Integration scope: /v1/health, /internal/health, /internal/resilience/breakers and
        /internal/cache/stats on a backend with SQLite and Redis or its in-memory cache.
        Business impact: an operator sees at a glance whether the service can serve, and
        whether the cache is doing its job.
        Test strategy: send one text twice (a miss, then a hit), then open the page.
        Success criteria: up and ready; database, cache and AI provider listed; the
        ai_provider breaker closed; the cache backend of this tier and at least one hit.
        """
        with backend.client() as client:
            for _ in range(2):
                body = {"operation": "sentiment", "text": TEXT}
                client.post("/v1/text/process", json=body).raise_for_status()

        page = open_page("status", backend.url).run()

        assert not page.exception
        assert page.success[0].value.startswith("The backend is up")
        texts = _texts(page)
        assert "Readiness :green-badge[ok]" in texts
        bold = [name for text in texts for name in re.findall(r"\*\*(.+?)\*\*", text)]
        listed = {name.replace("\\", "") for name in bold}  # names are escaped Markdown
        assert {"database", "cache", "ai_provider"} <= listed
        assert page.dataframe[0].value.to_dict("records") == [
            {"breaker": "ai_provider", "state": "closed", "recent failures": 0}
        ]
        assert f"Backend: {'redis' if backend.redis_url else 'memory'}" in texts
        metrics = {metric.label: metric.value for metric in page.metric}
        assert int(metrics["Hits"]) >= 1

    @pytest.mark.covers("UI-06")
    def test_open_breaker_shows_red_and_readiness_degraded(
        self, backend_without_provider, open_page
    ):
        """An open circuit breaker is visible to the operator, and readiness says degraded.

        Integration scope: a provider failure opens the backend's breaker →
        /internal/resilience/breakers and /internal/health → the page.
        Business impact: during an AI outage the operator sees which part is down, and that
        the service still answers what it can.
        Test strategy: close the breaker through the operator API, fail one request so it
        opens, then open the page.
        Success criteria: the ai_provider breaker open with one failure; readiness degraded.
        """
        with backend_without_provider.client(backend_without_provider.operator_key) as operator:
            operator.post("/internal/resilience/breakers/ai_provider/reset").raise_for_status()
        with backend_without_provider.client() as client:
            client.post("/v1/text/process", json={"operation": "sentiment", "text": TEXT})

        page = open_page("status", backend_without_provider.url).run()

        assert not page.exception
        assert page.dataframe[0].value.to_dict("records") == [
            {"breaker": "ai_provider", "state": "open", "recent failures": 1}
        ]
        assert "Readiness :orange-badge[degraded]" in _texts(page)

    @pytest.mark.covers("UI-06")
    def test_without_operator_key_shows_liveness_only(self, backend, open_page, read_markdown):
        """Without an operator key the page shows liveness and says what would show more.

        Integration scope: /v1/health on the live backend; no operator route is called.
        Business impact: the public frontend never needs, nor shows, operator information.
        Test strategy: open the page with BACKEND_OPERATOR_KEY unset.
        Success criteria: the backend reported up; a hint naming BACKEND_OPERATOR_KEY; no
        breaker table, no cache figures.
        """
        page = open_page("status", backend.url, operator_key=None).run()

        assert not page.exception
        assert page.success[0].value.startswith("The backend is up")
        assert [read_markdown(info.value) for info in page.info] == [
            "Set BACKEND_OPERATOR_KEY to see readiness, circuit breakers and the cache."
        ]
        assert not page.dataframe
        assert not page.metric
