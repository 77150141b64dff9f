"""Process page → HTTP → the real backend: a result rendered for every operation."""

import pytest
from shared.text import Operation
from streamlit.testing.v1 import AppTest

SAMPLE = "Product review"
FRESH = ":blue-badge[fresh]"
CACHED = ":green-badge[cached]"
# The local model is deterministic: what each operation makes of the sample's text.
EXPECTED = {
    Operation.SUMMARIZE: "I bought the Aurora desk lamp last month and I love it.",
    Operation.SENTIMENT: "### :green[:material/sentiment_satisfied:] Positive",
    Operation.KEY_POINTS: "- Setup took two minutes.",
    Operation.QUESTIONS: "- What is the only downside?",
    Operation.QA: "The only downside is the short cable",
}


def _process(page: AppTest, operation: Operation) -> AppTest:
    page.radio(key="operation").set_value(operation).run()
    return page.button(key="process").click().run()


def _texts(page: AppTest) -> list[str]:
    """Markdown first (the badges lead), then literal text (summaries and answers)."""
    return [element.value for element in page.markdown] + [element.value for element in page.text]


class TestProcessPage:
    """Seam: Process page → ApiClient → POST /v1/text/process on a live backend (local model)."""

    @pytest.mark.covers("UI-01")
    @pytest.mark.parametrize("operation", list(Operation))
    def test_sample_text_shows_the_operation_result(self, backend, open_page, operation: Operation):
        """Each operation's result is rendered in its own shape: text, label, list or answer.

        Integration scope: the page's widgets, the API client and the backend's real pipeline
        (auth, cache, local model, history) over loopback HTTP.
        Business impact: the Process page is the product's front door; a result that arrives
        but does not render is, to the person using it, no result.
        Test strategy: pick a sample text, choose the operation, click Process, read the page.
        Success criteria: the operation's result (a summary sentence, the sentiment label, a
        bullet, the question, the answer), a latency metric, a `fresh` badge, no exception.
        """
        page = open_page("process", backend.url).run()
        page.pills(key="sample").set_value(SAMPLE).run()

        _process(page, operation)

        assert not page.exception
        assert page.subheader[-1].value.startswith("Result:")
        assert page.metric[0].label == "Latency"
        assert FRESH in _texts(page)[0]
        assert any(text.startswith(EXPECTED[operation]) for text in _texts(page))

    @pytest.mark.covers("UI-01")
    def test_same_text_twice_shows_the_cached_badge(self, backend, open_page):
        """The second identical request is answered from the cache, and the page says so.

        Integration scope: page → backend response cache (Redis when TEST_REDIS_URL is set, else
        in-memory) → the `cached` flag back in the page.
        Business impact: people learn why a repeated answer is instant and costs nothing.
        Test strategy: process the same sample twice; then once more with "Skip the cache".
        Success criteria: `fresh`, then `cached`, then `fresh` again with the cache skipped.
        """
        page = open_page("process", backend.url).run()
        page.pills(key="sample").set_value(SAMPLE).run()

        first = _texts(_process(page, Operation.SUMMARIZE))[0]
        second = _texts(_process(page, Operation.SUMMARIZE))[0]
        page.checkbox(key="skip_cache").check().run()
        skipped = _texts(_process(page, Operation.SUMMARIZE))[0]

        assert FRESH in first
        assert CACHED in second
        assert FRESH in skipped
