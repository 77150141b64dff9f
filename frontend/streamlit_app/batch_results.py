"""A batch's results as the Batch page shows them: one row per text, a table, two downloads.

Rows come from the synchronous batch endpoint or from a job's results; both have the same
columns, so a download reads the same whichever way the texts went.
"""

import csv
import io
import json
from typing import Any

import streamlit as st
from shared.errors import ErrorDetail
from shared.jobs import ItemStatus, JobItemResult
from shared.text import TextProcessResponse

from streamlit_app.ui import one_line

Row = dict[str, Any]
NOT_RUN = "cancelled"


def result_row(
    number: int,
    text: str | None,
    response: TextProcessResponse | None,
    error: ErrorDetail | None,
    *,
    ref: str | None = None,
    not_run: bool = False,
) -> Row:
    """One text's row; `text` None (a job followed after a reload: the API keeps no texts) and
    `ref` None leave their columns out."""
    row: Row = {"#": number}
    if ref is not None:
        row["id"] = ref
    if text is not None:
        row["text"] = text
    if response is not None:
        return row | {
            "status": "ok",
            "result": one_line(response),
            "cached": response.cached,
            "latency_ms": round(response.processing_time_ms, 1),
        }
    if not_run:
        return row | {
            "status": NOT_RUN,
            "result": "Not run: the job was cancelled first.",
            "cached": False,
            "latency_ms": None,
        }
    return row | {
        "status": error.code if error else "error",
        "result": error.message if error else "",
        "cached": False,
        "latency_ms": None,
    }


def job_rows(items: list[JobItemResult], texts: list[str] | None) -> list[Row]:
    with_ids = any(item.id is not None for item in items)
    return [
        result_row(
            item.index + 1,
            texts[item.index] if texts and item.index < len(texts) else None,
            item.response,
            item.error,
            ref=(item.id or "") if with_ids else None,
            not_run=item.status is ItemStatus.CANCELLED,
        )
        for item in items
    ]


def _as_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def show_results(rows: list[Row], *, file_stem: str = "batch-results") -> None:
    not_run = sum(row["status"] == NOT_RUN for row in rows)
    failed = sum(row["status"] not in ("ok", NOT_RUN) for row in rows)
    st.subheader("Results")
    summary = f"{len(rows) - failed - not_run} succeeded, {failed} failed"
    st.caption(summary + (f", {not_run} not run (cancelled)." if not_run else "."))
    st.dataframe(rows, hide_index=True, width="stretch")
    left, right = st.columns(2)
    left.download_button(
        "Download CSV",
        _as_csv(rows),
        file_name=f"{file_stem}.csv",
        mime="text/csv",
        on_click="ignore",
    )
    right.download_button(
        "Download JSON",
        json.dumps(rows, indent=2, ensure_ascii=False),
        file_name=f"{file_stem}.json",
        mime="application/json",
        on_click="ignore",
    )
