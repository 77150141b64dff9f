"""Status page → HTTP → the real backend: liveness and readiness from the public probes, and
with an operator key the breakers and the cache."""

import re

import pytest
from streamlit.testing.v1 import AppTest

TEXT = "The observatory will be open to visitors every clear night in August."


def _texts(page: AppTest) -> list[str]:
    return [element.value for element in [*page.markdown, *page.subheader, *page.caption]]


class TestStatusPage:
    """Seam: Status page → ApiClient → /healthz, /readyz and the operator routes on a live
    backend.

    Paths: UI-06
    Real: the page script under Streamlit's AppTest; ApiClient over real HTTP to uvicorn
    backend subprocesses (the local model): the everyday one on SQLite and this worker's
    redis-server, one whose provider is unreachable, one whose PostgreSQL is unreachable.
    Faked: the browser (AppTest).
    """

    @pytest.mark.covers("UI-06")
    def test_operator_key_shows_readiness_breakers_and_cache(self, backend, open_page):
        """With an operator key, the page shows every dependency, the breaker and the cache.

        Integration scope: /healthz, /readyz, /internal/resilience/breakers and
        /internal/cache/stats on a backend with SQLite and Redis or its in-memory cache.
        Business impact: an operator sees at a glance whether the service can serve, and
        whether the cache is doing its job.
        Test strategy: send one text twice (a miss, then a hit), then open the page.
        Success criteria: up and ready; database, cache and AI provider listed; the
        ai_provider breaker closed; the Redis cache with exactly one hit, one miss and one key
        (the fixture zeroes the counters before each test).
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
        assert "Backend: redis" in texts
        metrics = {metric.label: metric.value for metric in page.metric}
        assert (metrics["Hits"], metrics["Misses"], metrics["Keys"]) == ("1", "1", "1")

    @pytest.mark.covers("UI-06")
    def test_open_breaker_shows_red_and_readiness_degraded(
        self, backend_without_provider, open_page
    ):
        """An open circuit breaker is visible to the operator, and readiness says degraded.

        Integration scope: a provider failure opens the backend's breaker →
        /internal/resilience/breakers and /readyz → the page.
        Business impact: during an AI outage the operator sees which part is down, and that
        the service still answers what it can.
        Test strategy: from a closed breaker (the fixture closes it), fail one request so it
        opens, then open the page.
        Success criteria: the ai_provider breaker open with one failure; readiness degraded.
        """
        with backend_without_provider.client() as client:
            client.post("/v1/text/process", json={"operation": "sentiment", "text": TEXT})

        page = open_page("status", backend_without_provider.url).run()

        assert not page.exception
        assert page.dataframe[0].value.to_dict("records") == [
            {"breaker": "ai_provider", "state": "open", "recent failures": 1}
        ]
        assert "Readiness :orange-badge[degraded]" in _texts(page)

    @pytest.mark.covers("UI-06")
    def test_without_operator_key_shows_liveness_and_readiness(
        self, backend, open_page, read_markdown
    ):
        """Without an operator key the page shows whether the backend is up and ready.

        Integration scope: /healthz and /readyz on the live backend; no operator route.
        Business impact: anyone running the frontend sees whether the backend can serve, and
        the operator key, which can revoke accounts, need not be handed to the frontend.
        Test strategy: open the page with BACKEND_OPERATOR_KEY unset.
        Success criteria: up and ready, each dependency listed; a hint naming
        BACKEND_OPERATOR_KEY; no breaker table, no cache figures.
        """
        page = open_page("status", backend.url, operator_key=None).run()

        assert not page.exception
        assert page.success[0].value.startswith("The backend is up")
        texts = _texts(page)
        assert "Readiness :green-badge[ok]" in texts
        assert ":green-badge[ok] **database**" in texts
        assert [read_markdown(info.value) for info in page.info] == [
            "Set BACKEND_OPERATOR_KEY to see the circuit breakers and the cache."
        ]
        assert not page.dataframe
        assert not page.metric

    @pytest.mark.covers("UI-06")
    def test_database_down_shows_not_ready(self, backend_without_database, open_page):
        """A backend that cannot reach its database is shown up but not ready.

        Integration scope: /readyz answering 503 with its readiness body → ApiClient → page.
        Business impact: "up" alone would hide why every request fails with 503.
        Test strategy: a backend whose PostgreSQL URL points where nothing listens.
        Success criteria: up, readiness down with the database down; no error shown.
        """
        page = open_page("status", backend_without_database.url, operator_key=None).run()

        assert not page.exception
        assert page.success[0].value.startswith("The backend is up")
        texts = _texts(page)
        assert "Readiness :red-badge[down]" in texts
        assert ":red-badge[down] **database**" in texts
        assert not page.error
