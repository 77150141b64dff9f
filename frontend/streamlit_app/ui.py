"""What every page shares: the error guard, and how a result is shown."""

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
    st.error(error.user_message, icon=":material/error:")


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
    return f"{cache}{degraded} :gray-badge[model: {response.model}]"


def show_result(response: TextProcessResponse) -> None:
    st.markdown(badges(response))
    if response.degraded:
        st.caption("The AI provider is unavailable: this is an earlier answer kept in the cache.")
    result = response.result
    if isinstance(result, SummaryResult):
        st.text(result.summary)  # the model's text, shown as written: never read as Markdown
    elif isinstance(result, SentimentResult):
        icon = SENTIMENT_ICONS[result.sentiment]
        st.markdown(f"### {icon} {result.sentiment.capitalize()}")
        st.progress((result.score + 1) / 2, text=f"Score {result.score:+.2f} (from -1 to +1)")
        st.caption(f"Confidence {result.confidence:.0%}")
    elif isinstance(result, KeyPointsResult | QuestionsResult):
        lines = result.key_points if isinstance(result, KeyPointsResult) else result.questions
        st.markdown("\n".join(f"- {line}" for line in lines) or "_Nothing found._")
    elif isinstance(result, AnswerResult):
        st.text(result.answer)
        if result.evidence:
            st.caption("Evidence")
            st.text(result.evidence)
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
