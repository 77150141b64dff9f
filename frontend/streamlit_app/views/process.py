"""Process: one text, one operation, the result with its badges and latency.

Summaries and answers are streamed (/v1/text/stream): their text shows as the model writes it,
literally (model output is text, not Markdown), and the result replaces it once complete. The
other operations' results are only useful whole, so they come from /v1/text/process.
"""

from contextlib import closing

import streamlit as st
from shared.text import (
    MAX_QUESTION_LENGTH,
    MAX_TEXT_LENGTH,
    OPTIONS_BY_OPERATION,
    TEXT_FIELDS,
    Operation,
    StreamDelta,
    StreamMeta,
    TextProcessResponse,
)
from streamlit_app.api_client import ApiClient, ApiError
from streamlit_app.samples import SAMPLES
from streamlit_app.session import open_client
from streamlit_app.ui import (
    OPERATION_LABELS,
    OPERATIONS,
    badges,
    duration,
    run_page,
    show_error,
    show_result,
)

# name: (label, default, maximum); the backend enforces the same bounds.
OPTION_INPUTS = {
    "max_sentences": ("Sentences in the summary", 3, 20),
    "max_points": ("Points to extract", 5, 20),
    "max_questions": ("Questions to write", 3, 10),
}


def _load_sample() -> None:
    sample = SAMPLES.get(st.session_state.sample or "")
    if sample is not None:
        st.session_state.text = sample.text
        st.session_state.question = sample.question


def _form() -> tuple[Operation, str, dict[str, int], str | None, bool]:
    operation: Operation = st.radio(
        "Operation",
        OPERATIONS,
        format_func=OPERATION_LABELS.__getitem__,
        horizontal=True,
        key="operation",
    )
    st.pills("Try a sample", list(SAMPLES), key="sample", on_change=_load_sample)
    text = st.text_area(
        "Text",
        key="text",
        height=180,
        max_chars=MAX_TEXT_LENGTH,
        placeholder="Paste an article, a review, an e-mail...",
    )
    question = None
    if operation is Operation.QA:
        question = st.text_input(
            "Question", key="question", max_chars=MAX_QUESTION_LENGTH, placeholder="Ask..."
        )
    options = {
        name: int(st.number_input(label, min_value=1, max_value=maximum, value=default, key=name))
        for name, (label, default, maximum) in OPTION_INPUTS.items()
        if name in OPTIONS_BY_OPERATION[operation]
    }
    skip_cache = st.checkbox(
        "Skip the cache", key="skip_cache", help="Ask the model again even if the answer is cached."
    )
    return operation, text, options, question or None, skip_cache


def _streamed(
    client: ApiClient,
    operation: Operation,
    text: str,
    options: dict[str, int],
    question: str | None,
    skip_cache: bool,
) -> TextProcessResponse:
    """Show the answer as it arrives; return the complete response once it has."""
    live = st.empty()
    with live.container():
        badge_slot, text_slot = st.empty(), st.empty()
        written = ""
        events = client.stream(
            operation, text, options=options, question=question, skip_cache=skip_cache
        )
        with closing(events):
            for event in events:
                if isinstance(event, StreamMeta):
                    badge_slot.markdown(badges(event))
                elif isinstance(event, StreamDelta):
                    written += event.text
                    text_slot.text(written)
                else:
                    live.empty()  # the complete result is shown in its place
                    return event
    raise ApiError("The answer stopped before it was complete. Try again in a moment.")


def render() -> None:
    st.title("Process a text")
    st.caption(
        "Pick an operation, paste a text or try a sample, and see what the model makes of it."
    )
    form, output = st.columns([3, 2], gap="large")
    with form:
        operation, text, options, question, skip_cache = _form()
        clicked = st.button("Process", type="primary", key="process")

    with output:
        if clicked:
            st.session_state.pop("process_response", None)
            if not text.strip():
                st.warning("Paste a text first, or try a sample.")
                return
            try:
                with open_client() as client:
                    if operation in TEXT_FIELDS:
                        answer = _streamed(client, operation, text, options, question, skip_cache)
                    else:
                        with st.spinner("Processing..."):
                            answer = client.process(
                                operation,
                                text,
                                options=options,
                                question=question,
                                skip_cache=skip_cache,
                            )
                    st.session_state.process_response = answer
            except ApiError as error:  # shown beside the form, where the result would be
                show_error(error)
                return
        response = st.session_state.get("process_response")
        if response is None:
            st.caption("The result appears here.")
            return
        st.subheader(f"Result: {OPERATION_LABELS[response.operation]}")
        st.metric(
            "Latency",
            duration(response.processing_time_ms),
            delta="from the cache, no model call" if response.cached else None,
            delta_color="off",
            delta_arrow="off",
        )
        show_result(response)


run_page(render)
