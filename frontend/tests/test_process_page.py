"""Process page → HTTP → the real backend: a result rendered for every operation."""

import re

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
    Operation.KEY_POINTS: "• Setup took two minutes.",
    Operation.QUESTIONS: "• What is the only downside?",
    Operation.QA: "The only downside is the short cable",
}
# Markdown and HTML a document (or a prompt injection in it) could carry. The local model quotes
# sentences of the text, as a real model may be made to.
IMAGE = "![beacon](http://127.0.0.1:9/beacon.png)"
LINK = "[a link](http://example.com)"
HEADING = "# A heading"
TAG = "<b>bold</b>"
HOSTILE = (
    f"{IMAGE} Pixel sentence here. {HEADING} with {LINK} and {TAG} here. Another sentence follows."
)


def _process(page: AppTest, operation: Operation) -> AppTest:
    page.radio(key="operation").set_value(operation).run()
    return page.button(key="process").click().run()


def _texts(page: AppTest) -> list[str]:
    return [element.value for element in page.markdown]


def _shown(page: AppTest) -> list[str]:
    """Markdown elements, then plain-text ones: what the result column shows, in two kinds."""
    return _texts(page) + [element.value for element in page.text]


class TestProcessPage:
    """Seam: Process page → ApiClient → POST /v1/text/process on a live backend (local model).

    Paths: UI-01, UI-08
    Real: the page script under Streamlit's AppTest; ApiClient over real HTTP to a uvicorn
    backend subprocess (SQLite, the local model) on this worker's redis-server.
    Faked: the browser (AppTest).
    """

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
        assert any(text.startswith(EXPECTED[operation]) for text in _shown(page))

    @pytest.mark.covers("UI-08")
    @pytest.mark.parametrize(
        ("operation", "pieces"),
        [
            (Operation.SUMMARIZE, [IMAGE, HEADING, LINK, TAG]),
            (Operation.KEY_POINTS, [IMAGE, HEADING, LINK, TAG]),
            (Operation.QA, [HEADING, LINK, TAG]),
        ],
    )
    def test_markdown_in_the_text_is_shown_as_text(
        self, backend, open_page, operation: Operation, pieces: list[str]
    ):
        """What the model writes is shown literally: its Markdown and HTML are never rendered.

        Integration scope: Process page → backend → the local model, which quotes the text's
        sentences in a summary, key points, or an answer with its evidence → the page.
        Business impact: a document can make a model write a Markdown image whose URL carries
        data away as soon as a browser shows it; a link can pose as something else.
        Test strategy: process a text holding an image, a heading, a link and an HTML tag.
        Success criteria: each appears verbatim in a plain-text element; no Markdown element
        of the page carries any of them.
        """
        page = open_page("process", backend.url).run()
        page.radio(key="operation").set_value(operation).run()
        page.text_area(key="text").input(HOSTILE).run()
        if operation is Operation.QA:
            page.text_input(key="question").input("What is the link?").run()

        page.button(key="process").click().run()

        assert not page.exception
        plain = "\n".join(element.value for element in page.text)
        assert all(piece in plain for piece in pieces)
        markdown = "\n".join([*_texts(page), *(caption.value for caption in page.caption)])
        assert not any(piece in markdown for piece in (IMAGE, HEADING, LINK, TAG))

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

    @pytest.mark.covers("UI-01")
    def test_cached_answer_shows_its_real_latency(self, backend, open_page):
        """A cache hit takes a fraction of a millisecond: the page says how much, and why.

        Integration scope: page → backend response cache → `processing_time_ms` of a hit →
        the page's latency metric.
        Business impact: "Latency 0 ms" reads as a broken measurement; the point of the cache
        is that a hit is fast, and the page should show it.
        Test strategy: process the same sample twice and read the second latency metric.
        Success criteria: a value that is not "0 ms" but a duration in ms, marked as an answer
        from the cache.
        """
        page = open_page("process", backend.url).run()
        page.pills(key="sample").set_value(SAMPLE).run()
        _process(page, Operation.SUMMARIZE)

        _process(page, Operation.SUMMARIZE)

        assert not page.exception
        [latency] = page.metric
        assert latency.value != "0 ms"
        assert re.fullmatch(r"(\d+(\.\d+)?|< 0\.01) ms", latency.value)
        assert latency.delta == "from the cache, no model call"
