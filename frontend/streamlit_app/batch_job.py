"""A batch job on the Batch page: submitted, followed until it ends, read back, cancelled.

The job's id is kept in the page's address (`?job=<id>`), so a reload, a second tab or a link
finds the job again; the id is no secret, since any other key is told the job does not exist.
While the job runs, a fragment asks the backend for its counts every POLL_SECONDS and redraws
only the progress bar; when the job has ended, the whole page reruns once to show the results.
"""

from datetime import UTC, datetime

import streamlit as st
from shared.jobs import FINISHED_JOB_STATUSES, JobInfo, JobStatus
from shared.text import Operation

from streamlit_app.api_client import ApiError
from streamlit_app.batch_results import job_rows, show_results
from streamlit_app.literal import escape_markdown
from streamlit_app.session import open_client
from streamlit_app.ui import OPERATION_LABELS, duration, show_error

JOB_PARAM = "job"
POLL_SECONDS = 1.0
# Queued this long with no item started: say why a job may not be moving.
WAITING_HINT_SECONDS = 10.0
RECENT_JOBS = 10
_TEXTS = "batch_job_texts"  # {job_id: texts} of the job submitted in this session
_ROWS = "batch_job_rows"  # (job_id, rows) of the ended job on screen


def submit(operation: Operation, items: list[tuple[str | None, str]], question: str | None) -> None:
    """Submit the job and follow it from now on."""
    with open_client() as client:
        accepted = client.submit_job(operation, items, question=question)
    # The API gives results without their texts: this session keeps them for its table.
    st.session_state[_TEXTS] = {accepted.job_id: [text for _, text in items]}
    st.session_state.pop(_ROWS, None)
    st.query_params[JOB_PARAM] = accepted.job_id


def followed() -> str | None:
    return st.query_params.get(JOB_PARAM) or None


def forget() -> None:
    """Follow no job: new inputs, or a batch run without one."""
    st.query_params.pop(JOB_PARAM, None)
    st.session_state.pop(_ROWS, None)


def _ended(info: JobInfo) -> bool:
    """Ended and settled: a cancelled job's running items finish first."""
    return info.status in FINISHED_JOB_STATUSES and info.pending == 0


def follow(job_id: str) -> None:
    st.subheader("Job")
    try:
        with open_client() as client:
            info = client.job(job_id)
    except ApiError as error:
        if error.status not in (404, 422):  # 422: an id no job can have (too long)
            raise
        st.error(
            f"Job {escape_markdown(job_id)} was not found. A job can be read only with the key "
            "that submitted it (a key pasted on Account lasts until the tab reloads).",
            icon=":material/error:",
        )
        return
    if _ended(info):
        _show_ended(info)
    else:
        _progress(job_id)


def _counts(info: JobInfo) -> str:
    failed = f" ({info.failed} failed)" if info.failed else ""
    return f"{info.done + info.failed} of {info.total} done{failed}"


@st.fragment(run_every=POLL_SECONDS)
def _progress(job_id: str) -> None:
    try:
        with open_client() as client:
            info = client.job(job_id)
            bar = st.empty()
            if info.status is not JobStatus.CANCELLED and st.button(
                "Cancel job", key="batch_cancel_job", icon=":material/cancel:"
            ):
                info = client.cancel_job(job_id)
    except ApiError as error:
        show_error(error)  # shown until the next poll, which may succeed
        return
    if _ended(info):
        st.rerun()  # the whole page, once: the results replace the bar
    bar.progress((info.done + info.failed) / info.total, text=_counts(info))
    label = OPERATION_LABELS[info.operation]
    st.caption(
        f"{label} job {info.job_id}, {info.status.value}. This page's address keeps the job: "
        "reload it or come back later to see how it is doing. Each text counts toward your "
        "key's requests per minute as it runs: over the limit, texts wait rather than fail."
    )
    if info.status is JobStatus.CANCELLED:
        st.warning(
            f"Cancelled: the {info.pending} item(s) already running will finish; the rest "
            "will not run.",
            icon=":material/cancel:",
        )
    elif info.started_at is None:
        waited = (datetime.now(UTC) - info.created_at).total_seconds()
        if waited > WAITING_HINT_SECONDS:
            st.info(
                f"No item has started in {waited:.0f} s: the workers are busy with other jobs, "
                "or none is running (a backend with REDIS_URL needs `make worker`).",
                icon=":material/hourglass_top:",
            )


def _show_ended(info: JobInfo) -> None:
    took = ""
    if info.finished_at is not None:
        took = f" in {duration((info.finished_at - info.created_at).total_seconds() * 1000)}"
    if info.status is JobStatus.COMPLETED:
        st.success(
            f"The job finished{took}: {info.done} done, {info.failed} failed.",
            icon=":material/check_circle:",
        )
    elif info.status is JobStatus.FAILED:
        st.error(
            f"Every item of the job failed ({info.failed}): the table says why.",
            icon=":material/error:",
        )
    else:
        st.warning(
            f"The job was cancelled: {info.done} done, {info.failed} failed, {info.cancelled} "
            "not run.",
            icon=":material/cancel:",
        )
    kept = st.session_state.get(_ROWS)
    if kept is None or kept[0] != info.job_id:
        with open_client() as client:
            items = client.job_results(info.job_id)
        texts = st.session_state.get(_TEXTS, {}).get(info.job_id)
        kept = (info.job_id, job_rows(items, texts))
        st.session_state[_ROWS] = kept
    show_results(kept[1], file_stem=f"job-{info.job_id}")


def show_recent() -> None:
    """The caller's latest jobs, each one click away from being followed again."""
    with st.expander("Your recent jobs", icon=":material/history:"):
        try:
            with open_client() as client:
                recent = client.jobs(page_size=RECENT_JOBS).items
        except ApiError as error:
            st.caption(escape_markdown(error.user_message))
            return
        if not recent:
            st.caption("None yet.")
        for info in recent:
            label = (
                f"{info.created_at:%Y-%m-%d %H:%M} UTC · {OPERATION_LABELS[info.operation]} · "
                f"{info.status.value} · {_counts(info)}"
            )
            if st.button(label, key=f"batch_open_{info.job_id}", type="tertiary"):
                st.session_state.pop(_ROWS, None)
                st.query_params[JOB_PARAM] = info.job_id
                st.rerun()
