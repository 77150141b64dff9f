"""Batch: many texts, a progress bar that follows the backend, per-item results, downloads.

Up to SYNC_MAX_ITEMS texts go to /v1/text/batch, a few at a time, and the results come back
with the page; more become a job (POST /v1/jobs), which the backend's workers process while the
page follows it (streamlit_app/batch_job.py). README.md ("The Batch page") gives the reasons.
"""

import csv
import io

import streamlit as st
from shared.text import MAX_QUESTION_LENGTH, Operation
from streamlit.runtime.uploaded_file_manager import UploadedFile
from streamlit_app import batch_job
from streamlit_app.api_client import ApiError
from streamlit_app.batch_results import Row, result_row, show_results
from streamlit_app.literal import escape_markdown
from streamlit_app.session import open_client
from streamlit_app.ui import OPERATION_LABELS, OPERATIONS, run_page

# Small chunks to the batch endpoint, so the bar moves as items complete.
CHUNK_SIZE = 5
# The batch endpoint's own default limit (BATCH_MAX_ITEMS): more texts than this run as a job.
SYNC_MAX_ITEMS = 20
# The jobs' default limit (JOB_MAX_ITEMS); a backend set lower refuses a larger job, and says so.
MAX_ITEMS = 10_000
Item = tuple[str | None, str]  # (the caller's id, from a CSV `id` column; the text)


def _lines(content: str) -> list[Item]:
    return [(None, line.strip()) for line in content.splitlines() if line.strip()]


def _read_upload(upload: UploadedFile) -> list[Item]:
    try:
        content = upload.getvalue().decode("utf-8-sig")  # -sig: spreadsheets often add a BOM
    except UnicodeDecodeError:
        name = escape_markdown(upload.name)
        st.error(f"{name} is not UTF-8 text: save it as UTF-8 and upload it again.")
        return []
    if not upload.name.lower().endswith(".csv"):
        return _lines(content)
    reader = csv.DictReader(io.StringIO(content))
    if "text" not in (reader.fieldnames or []):
        found = escape_markdown(", ".join(reader.fieldnames or []))
        st.error(f"{escape_markdown(upload.name)} has no `text` column (its columns: {found}).")
        return []
    return [
        ((row.get("id") or "").strip() or None, row["text"].strip())
        for row in reader
        if (row["text"] or "").strip()
    ]


def _run(operation: Operation, items: list[Item], question: str | None) -> list[Row]:
    rows: list[Row] = []
    with_ids = any(ref is not None for ref, _ in items)
    bar = st.progress(0.0, text=f"0 of {len(items)} done")
    with open_client() as client:
        for start in range(0, len(items), CHUNK_SIZE):
            chunk = items[start : start + CHUNK_SIZE]
            try:
                answer = client.batch(operation, [text for _, text in chunk], question=question)
            except ApiError as error:
                stopped = f"Stopped after {len(rows)} of {len(items)}: {error.user_message}"
                st.error(escape_markdown(stopped), icon=":material/error:")
                break
            for it in answer.items:
                ref, text = chunk[it.index]
                number = start + it.index + 1
                ref = (ref or "") if with_ids else None
                rows.append(result_row(number, text, it.response, it.error, ref=ref))
            bar.progress(len(rows) / len(items), text=f"{len(rows)} of {len(items)} done")
    return rows


def _forget_results() -> None:
    """Results belong to the inputs they came from: a new file or text must not sit above them."""
    st.session_state.pop("batch_rows", None)
    batch_job.forget()


def render() -> None:
    st.title("Batch")
    st.caption(
        "Several texts with one operation, each with the operation's default options. Type one "
        "text per line, or upload a .txt file (one text per line) or a .csv file (a `text` "
        f"column, and an optional `id` column). More than {SYNC_MAX_ITEMS} texts (up to "
        f"{MAX_ITEMS:,}) run as a job on the backend's workers: you can leave the page and "
        "come back to it."
    )
    operation: Operation = st.radio(
        "Operation",
        OPERATIONS,
        format_func=OPERATION_LABELS.__getitem__,
        horizontal=True,
        key="batch_operation",
        on_change=_forget_results,
    )
    question = None
    if operation is Operation.QA:
        question = st.text_input(
            "Question, asked of every text",
            key="batch_question",
            max_chars=MAX_QUESTION_LENGTH,
            on_change=_forget_results,
        )
    typed = st.text_area(
        "Texts, one per line", key="batch_texts", height=150, on_change=_forget_results
    )
    upload = st.file_uploader(
        "Or upload a file", type=["txt", "csv"], key="batch_file", on_change=_forget_results
    )
    items = _lines(typed) + (_read_upload(upload) if upload else [])
    if len(items) > MAX_ITEMS:
        st.warning(f"{len(items):,} texts: only the first {MAX_ITEMS:,} are processed.")
        items = items[:MAX_ITEMS]
    as_job = len(items) > SYNC_MAX_ITEMS
    st.caption(f"{len(items)} text(s) ready" + (", to run as a job." if as_job else "."))

    # Never disabled: a text area commits on blur, so a button disabled while it was empty would
    # swallow the first click after typing.
    if st.button("Run batch", type="primary", key="run_batch"):
        if not items:
            st.warning("Type or upload at least one text first.")
            return
        _forget_results()
        if as_job:
            batch_job.submit(operation, items, question or None)
        else:
            st.session_state.batch_rows = _run(operation, items, question or None)
    if job_id := batch_job.followed():
        batch_job.follow(job_id)
    elif rows := st.session_state.get("batch_rows"):
        show_results(rows)
    batch_job.show_recent()


run_page(render)
