"""Process page → /v1/text/stream on a live backend: the text shows as it arrives."""

import pytest
from fakes.openai_server import OpenAICompatibleServer
from shared.text import Operation
from streamlit.testing.v1 import AppTest

SAMPLE = "Product review"
SUMMARY = "I bought the Aurora desk lamp last month and I love it."


def _summarize(page: AppTest) -> AppTest:
    page.pills(key="sample").set_value(SAMPLE).run()
    page.radio(key="operation").set_value(Operation.SUMMARIZE).run()
    return page.button(key="process").click().run()


class TestProcessPageStreaming:
    """Seam: Process page → ApiClient.stream (httpx-sse) → POST /v1/text/stream → provider.

    Paths: STREAM-09
    Real: the page script under Streamlit's AppTest; ApiClient.stream (httpx-sse) over real HTTP
    to uvicorn backend subprocesses: the everyday one (SQLite, the local model, this worker's
    redis-server) and one whose provider is the loopback OpenAI-compatible server.
    Faked: the browser (AppTest), the AI provider (the loopback server, told to break off).
    """

    @pytest.mark.covers("STREAM-09")
    def test_words_received_stay_on_the_page_when_the_stream_breaks(
        self, provider_backend, loopback_provider: OpenAICompatibleServer, open_page
    ):
        """Text is rendered as it arrives: a stream broken mid-answer still shows its words.

        Integration scope: the page, the API client's event reader, a backend subprocess whose
        provider (the loopback OpenAI-compatible server) breaks off every stream after four
        chunks.
        Business impact: people see the answer being written; when the provider fails
        mid-answer they see how far it got and why it stopped, not a blank result.
        Test strategy: summarize a sample; the stream sends meta and a few deltas, then
        `error`; read the page once the run ends.
        Success criteria: the badges from meta; literal text that is the start of the summary
        and not all of it; the provider's error; no result heading, no exception.
        """
        loopback_provider.cut_after(4)
        page = open_page("process", provider_backend.url).run()

        _summarize(page)

        assert not page.exception
        assert ":blue-badge[fresh]" in page.markdown[0].value
        (written,) = [element.value for element in page.text]
        assert written
        assert SUMMARY.startswith(written)
        assert written != SUMMARY
        (error,) = [element.value for element in page.error]
        assert error.startswith("The AI provider failed")
        assert not page.subheader

    @pytest.mark.covers("STREAM-09")
    def test_completed_stream_is_replaced_by_the_result(self, backend, open_page):
        """Once `done` arrives the streamed text gives way to the result, shown as text.

        Integration scope: the page and the live backend's local model, streaming word by word.
        Business impact: the result a person keeps is the complete one, with its latency.
        Test strategy: summarize a sample; read the page once the run ends.
        Success criteria: the result heading, latency, the `fresh` badge and the summary as a
        literal text element, shown once.
        """
        page = open_page("process", backend.url).run()

        _summarize(page)

        assert not page.exception
        assert page.subheader[-1].value == "Result: Summarize"
        assert page.metric[0].label == "Latency"
        assert ":blue-badge[fresh]" in page.markdown[0].value
        texts = [element.value for element in page.text]
        assert len(texts) == 1
        assert texts[0].startswith(SUMMARY)
