"""Pages → HTTP → a backend that is down, refuses, limits or fails: a plain message, no trace."""

import re
from collections.abc import Callable

import pytest
from shared.text import Operation
from streamlit.testing.v1 import AppTest

TEXT = "The new library opens on Monday. It has a café and a roof garden."


def _process(page: AppTest, operation: Operation = Operation.SUMMARIZE) -> AppTest:
    page.radio(key="operation").set_value(operation).run()
    page.text_area(key="text").input(TEXT).run()
    return page.button(key="process").click().run()


def _run_batch(page: AppTest) -> AppTest:
    page.text_area(key="batch_texts").input(f"{TEXT}\nA second text.").run()
    return page.button(key="run_batch").click().run()


def _errors(page: AppTest, read_markdown: Callable[[str], str]) -> list[str]:
    return [read_markdown(element.value) for element in page.error]


# What a person does on each page before the page needs the backend.
REACH_THE_BACKEND: dict[str, Callable[[AppTest], AppTest]] = {
    "process": _process,
    "batch": _run_batch,
    "history": lambda page: page,
    "account": lambda page: page,
    "status": lambda page: page,
}


class TestErrorMessages:
    """Seam: every page → ApiClient → HTTP errors and transport failures → a page message.

    Paths: UI-02
    Real: the page script under Streamlit's AppTest; ApiClient over real HTTP to a uvicorn
    backend subprocess (SQLite, the local model): the everyday one, one whose provider is
    unreachable, one with a tiny rate limit; a closed loopback port for a backend that is down.
    Faked: the browser (AppTest).
    """

    @pytest.mark.covers("UI-02")
    @pytest.mark.parametrize("name", list(REACH_THE_BACKEND))
    def test_backend_down_shows_a_plain_message(
        self, open_page, closed_url: str, name: str, read_markdown
    ):
        """With no backend listening, each page says so in a sentence instead of crashing.

        Integration scope: each page file → ApiClient → a TCP connection refused on loopback.
        Business impact: the most common first-run mistake (backend not started) must explain
        itself, not show a Python traceback.
        Test strategy: point BACKEND_URL at a free port, render the page and do what a person
        does there (submit a text, run a batch, or just open it).
        Success criteria: an error saying the backend is not reachable; no exception element.
        """
        page = REACH_THE_BACKEND[name](open_page(name, closed_url).run())

        assert not page.exception
        assert any(
            "is not reachable. Is it running?" in error for error in _errors(page, read_markdown)
        )

    @pytest.mark.covers("UI-02")
    def test_rejected_key_explains_what_to_do(self, backend, open_page, read_markdown):
        """A key the backend refuses (401) becomes advice about which setting to check.

        Integration scope: History page → GET /v1/history → the backend's authentication.
        Business impact: a wrong BACKEND_API_KEY is a configuration slip the page can name.
        Test strategy: open the History page with a key the backend does not know.
        Success criteria: a message naming the refused key and BACKEND_API_KEY; no exception.
        """
        page = open_page("history", backend.url, api_key="not-a-key").run()

        assert not page.exception
        assert _errors(page, read_markdown) == [
            "The backend did not accept the API key: The API key is not valid. "
            "Check BACKEND_API_KEY, or register on the Account page."
        ]

    @pytest.mark.covers("UI-02")
    def test_question_missing_shows_the_backend_validation(self, backend, open_page, read_markdown):
        """The backend's 422 reaches the person as its own sentence, not as a JSON dump.

        Integration scope: Process page → POST /v1/text/process → the shared contract's
        validation in the backend → the error body → the page.
        Business impact: validation lives once, in the backend; the page must relay it clearly.
        Test strategy: choose Q&A, give a text and no question, and process.
        Success criteria: "The request was not valid" with the backend's reason; no result.
        """
        page = open_page("process", backend.url).run()

        _process(page, Operation.QA)

        assert not page.exception
        assert _errors(page, read_markdown) == [
            "The request was not valid: question: Field required."
        ]
        assert not [header for header in page.subheader if header.value.startswith("Result")]

    @pytest.mark.covers("UI-02")
    def test_rate_limit_says_when_to_retry(self, rate_limited_backend, open_page, read_markdown):
        """A 429 from the backend's rate limiter tells the person how long to wait.

        Integration scope: Process page → the backend's per-key moving-window rate limiter →
        429 with Retry-After → the page.
        Business impact: a throttled user who is told when to come back does not hammer the API.
        Test strategy: spend the key's per-minute allowance with direct requests, then
        process a text on the page with the same key.
        Success criteria: "Too many requests" with the backend's reason and "Try again in N s".
        """
        with rate_limited_backend.client() as client:
            for _ in range(rate_limited_backend.requests_per_minute):
                client.post("/v1/text/process", json={"operation": "sentiment", "text": TEXT})
        page = open_page("process", rate_limited_backend.url).run()

        _process(page)

        assert not page.exception
        [error] = _errors(page, read_markdown)
        assert error.startswith("Too many requests: Rate limit reached")
        assert re.search(r"Try again in \d+ s\.$", error)

    @pytest.mark.covers("UI-02")
    def test_provider_failure_says_try_again(
        self, backend_without_provider, open_page, read_markdown
    ):
        """A provider failure (502) is reported as the provider's, with advice to retry.

        Integration scope: Process page → backend → pydantic-ai OpenAI-compatible model → a
        connection refused on loopback → 502 provider_error → the page.
        Business impact: people can tell an AI outage from a mistake of their own.
        Test strategy: with the breaker closed (the fixture closes it), process a text.
        Success criteria: "The AI provider failed" and "Try again in a moment"; no exception.
        """
        page = open_page("process", backend_without_provider.url).run()

        _process(page)

        assert not page.exception
        [error] = _errors(page, read_markdown)
        assert error.startswith("The AI provider failed: The AI provider is unreachable")
        assert error.endswith("Try again in a moment.")

    @pytest.mark.covers("UI-02")
    def test_open_breaker_says_when_to_retry(
        self, backend_without_provider, open_page, read_markdown
    ):
        """A 503 from an open circuit breaker says when the AI service will be tried again.

        Integration scope: Process page → backend → the circuit breaker, open after one
        provider failure → 503 circuit_open with Retry-After → the page.
        Business impact: during an outage, people learn when to come back instead of retrying.
        Test strategy: from a closed breaker (the fixture closes it), fail one request directly
        so it opens, then process a text on the page.
        Success criteria: a message that the AI service is paused with "Try again in N s",
        N within the breaker's recovery time; no exception.
        """
        with backend_without_provider.client() as client:
            client.post("/v1/text/process", json={"operation": "sentiment", "text": TEXT})
        page = open_page("process", backend_without_provider.url).run()

        _process(page)

        assert not page.exception
        [error] = _errors(page, read_markdown)
        assert error.startswith("The AI service is paused after repeated failures.")
        seconds = re.search(r"Try again in (\d+) s\.$", error)
        assert seconds is not None
        assert 0 < int(seconds.group(1)) <= 600
