"""Batch: many texts, a progress bar that follows the backend, per-item results, downloads."""

import csv
import io
import json
from typing import Any

import streamlit as st
from shared.text import MAX_QUESTION_LENGTH, BatchItemResult, Operation
from streamlit.runtime.uploaded_file_manager import UploadedFile
from streamlit_app.api_client import ApiError
from streamlit_app.literal import escape_markdown
from streamlit_app.session import open_client
from streamlit_app.ui import OPERATION_LABELS, OPERATIONS, one_line, run_page

# Small chunks to the batch endpoint, so the bar moves as items complete.
CHUNK_SIZE = 5
MAX_ITEMS = 200


def _lines(content: str) -> list[str]:
    return [line.strip() for line in content.splitlines() if line.strip()]


def _read_upload(upload: UploadedFile) -> list[str]:
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
    return [row["text"].strip() for row in reader if (row["text"] or "").strip()]


def _row(number: int, text: str, item: BatchItemResult) -> dict[str, Any]:
    if item.response is not None:
        return {
            "#": number,
            "text": text,
            "status": "ok",
            "result": one_line(item.response),
            "cached": item.response.cached,
            "latency_ms": round(item.response.processing_time_ms, 1),
        }
    error = item.error
    return {
        "#": number,
        "text": text,
        "status": error.code if error else "error",
        "result": error.message if error else "",
        "cached": False,
        "latency_ms": None,
    }


def _run(operation: Operation, texts: list[str], question: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    bar = st.progress(0.0, text=f"0 of {len(texts)} done")
    with open_client() as client:
        for start in range(0, len(texts), CHUNK_SIZE):
            chunk = texts[start : start + CHUNK_SIZE]
            try:
                answer = client.batch(operation, chunk, question=question)
            except ApiError as error:
                stopped = f"Stopped after {len(rows)} of {len(texts)}: {error.user_message}"
                st.error(escape_markdown(stopped), icon=":material/error:")
                break
            rows += [_row(start + it.index + 1, chunk[it.index], it) for it in answer.items]
            bar.progress(len(rows) / len(texts), text=f"{len(rows)} of {len(texts)} done")
    return rows


def _as_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _show(rows: list[dict[str, Any]]) -> None:
    failed = sum(row["status"] != "ok" for row in rows)
    st.subheader("Results")
    st.caption(f"{len(rows) - failed} succeeded, {failed} failed.")
    st.dataframe(rows, hide_index=True, width="stretch")
    left, right = st.columns(2)
    left.download_button(
        "Download CSV",
        _as_csv(rows),
        file_name="batch-results.csv",
        mime="text/csv",
        on_click="ignore",
    )
    right.download_button(
        "Download JSON",
        json.dumps(rows, indent=2, ensure_ascii=False),
        file_name="batch-results.json",
        mime="application/json",
        on_click="ignore",
    )


def _forget_results() -> None:
    """Results belong to the inputs they came from: a new file or text must not sit above them."""
    st.session_state.pop("batch_rows", None)


def render() -> None:
    st.title("Batch")
    st.caption(
        "Several texts with one operation, each with the operation's default options. Type one "
        "text per line, or upload a .txt file (one text per line) or a .csv file (a `text` "
        "column)."
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
    texts = _lines(typed) + (_read_upload(upload) if upload else [])
    if len(texts) > MAX_ITEMS:
        st.warning(f"{len(texts)} texts: only the first {MAX_ITEMS} are processed.")
        texts = texts[:MAX_ITEMS]
    st.caption(f"{len(texts)} text(s) ready.")

    # Never disabled: a text area commits on blur, so a button disabled while it was empty would
    # swallow the first click after typing.
    if st.button("Run batch", type="primary", key="run_batch"):
        if not texts:
            st.warning("Type or upload at least one text first.")
            return
        st.session_state.batch_rows = _run(operation, texts, question or None)
    if rows := st.session_state.get("batch_rows"):
        _show(rows)


run_page(render)
