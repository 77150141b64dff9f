"""What every page shares: the error guard, and how a result and its latency are shown."""

import logging
from collections.abc import Callable

import streamlit as st
from shared.text import (
    AnswerResult,
    KeyPointsResult,
    Operation,
    QuestionsResult,
    SentimentResult,
    StreamMeta,
    SummaryResult,
    TextProcessResponse,
)

from streamlit_app.api_client import ApiError
from streamlit_app.literal import escape_markdown, show_text

logger = logging.getLogger(__name__)

OPERATION_LABELS = {
    Operation.SUMMARIZE: "Summarize",
    Operation.SENTIMENT: "Sentiment",
    Operation.KEY_POINTS: "Key points",
    Operation.QUESTIONS: "Questions",
    Operation.QA: "Q&A",
}
OPERATIONS: list[Operation] = list(Operation)
SENTIMENT_ICONS = {
    "positive": ":green[:material/sentiment_satisfied:]",
    "neutral": ":gray[:material/sentiment_neutral:]",
    "negative": ":red[:material/sentiment_dissatisfied:]",
}


def show_error(error: ApiError) -> None:
    # The backend's sentence can quote the request (an e-mail validator names the bad characters).
    st.error(escape_markdown(error.user_message), icon=":material/error:")


def run_page(render: Callable[[], None]) -> None:
    """Render a page; a failure becomes a short message, never a stack trace."""
    try:
        render()
    except ApiError as error:
        show_error(error)
    except Exception:
        # Streamlit's own stop and rerun signals are BaseExceptions and pass through.
        logger.exception("page failed")
        st.error(
            "Something went wrong on this page; the details are in the frontend's log.",
            icon=":material/error:",
        )


def badges(response: TextProcessResponse | StreamMeta) -> str:
    cache = ":green-badge[cached]" if response.cached else ":blue-badge[fresh]"
    degraded = " :orange-badge[degraded: stale answer]" if response.degraded else ""
    return f"{cache}{degraded} :gray-badge[model: {escape_markdown(response.model)}]"


def duration(milliseconds: float) -> str:
    """With the precision it deserves: a cache hit takes 0.19 ms, not "0 ms"."""
    if milliseconds >= 1000:
        return f"{milliseconds / 1000:.1f} s"
    if milliseconds >= 10:
        return f"{milliseconds:.0f} ms"
    return f"{milliseconds:.2g} ms" if milliseconds >= 0.01 else "< 0.01 ms"


def show_result(response: TextProcessResponse) -> None:
    st.markdown(badges(response))
    if response.degraded:
        st.caption("The AI provider is unavailable: this is an earlier answer kept in the cache.")
    # Everything the model wrote is shown as text: see literal.py for why.
    result = response.result
    if isinstance(result, SummaryResult):
        show_text(result.summary)
    elif isinstance(result, SentimentResult):
        icon = SENTIMENT_ICONS[result.sentiment]
        st.markdown(f"### {icon} {result.sentiment.capitalize()}")
        st.progress((result.score + 1) / 2, text=f"Score {result.score:+.2f} (from -1 to +1)")
        st.caption(f"Confidence {result.confidence:.0%}")
    elif isinstance(result, KeyPointsResult | QuestionsResult):
        lines = result.key_points if isinstance(result, KeyPointsResult) else result.questions
        for line in lines:
            show_text(f"• {line}")
        if not lines:
            st.caption("Nothing found.")
    elif isinstance(result, AnswerResult):
        show_text(result.answer)
        if result.evidence:
            st.caption("Evidence, quoted from the text:")
            show_text(result.evidence)
        st.caption(f"Confidence {result.confidence:.0%}")


def one_line(response: TextProcessResponse) -> str:
    """The result in one line, for tables and downloads."""
    result = response.result
    if isinstance(result, SummaryResult):
        return result.summary
    if isinstance(result, SentimentResult):
        return f"{result.sentiment} ({result.score:+.2f})"
    if isinstance(result, KeyPointsResult):
        return " • ".join(result.key_points)
    if isinstance(result, QuestionsResult):
        return " • ".join(result.questions)
    return result.answer
