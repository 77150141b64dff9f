"""Batch page → HTTP → the real backend: progress, per-item results, downloads; jobs."""

import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from http import HTTPStatus
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

TEXTS = [
    "The team shipped the release on time and the customers are delighted.",
    "The meeting moved to Thursday because the room was double-booked.",
    "Prices rose by four percent in March, mostly because of energy.",
    "The museum reopens in May with a new wing for modern art.",
    "Rain is expected all weekend, so the market moves indoors.",
    "The library now lends tools as well as books.",
    "Our support queue is longer than usual; expect replies within two days.",
]


def _table(page: AppTest) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = page.dataframe[0].value.to_dict("records")
    return rows


class TestBatchPage:
    """Seam: Batch page → ApiClient → POST /v1/text/batch in chunks on a live backend.

    Paths: UI-03, UI-08
    Real: the page script under Streamlit's AppTest; ApiClient over real HTTP to a uvicorn
    backend subprocess (SQLite, the local model) on this worker's redis-server.
    Faked: the browser (AppTest), the uploaded files (made in the test).
    """

    @pytest.mark.covers("UI-03")
    def test_typed_texts_complete_with_a_row_each_and_downloads(self, backend, open_page):
        """Seven typed texts go out in chunks; the bar completes and every text gets a row.

        Integration scope: Batch page → ApiClient → the batch endpoint, two chunks (5 + 2) →
        the backend's processing and history.
        Business impact: people process many texts at once and take the results away.
        Test strategy: type seven texts, one per line, choose Sentiment, run the batch; then
        ask the backend's history how many requests it recorded.
        Success criteria: the bar at 100% ("7 of 7 done"), seven `ok` rows in input order,
        CSV and JSON download buttons, and seven requests in the backend's history.
        """
        page = open_page("batch", backend.url).run()
        page.radio(key="batch_operation").set_value("sentiment").run()
        page.text_area(key="batch_texts").input("\n".join(TEXTS)).run()

        page.button(key="run_batch").click().run()

        assert not page.exception
        assert (page.progress[0].value, page.progress[0].text) == (100, "7 of 7 done")
        rows = _table(page)
        assert [row["text"] for row in rows] == TEXTS
        assert {row["status"] for row in rows} == {"ok"}
        assert [button.label for button in page.get("download_button")] == [
            "Download CSV",
            "Download JSON",
        ]
        with backend.client() as client:
            assert client.get("/v1/history").json()["total"] == len(TEXTS)

    @pytest.mark.covers("UI-03")
    @pytest.mark.parametrize(
        ("upload", "expected", "ids"),
        [
            (
                ("texts.txt", b"First text.\n\nSecond text.\n", "text/plain"),
                ["First", "Second"],
                [None, None],
            ),
            (
                ("texts.csv", b'id,text\n1,"First, with a comma."\n2,Second text.\n', "text/csv"),
                ["First, with a comma.", "Second text."],
                ["1", "2"],
            ),
        ],
        ids=["txt", "csv"],
    )
    def test_uploaded_file_gives_one_row_per_text(
        self,
        backend,
        open_page,
        upload: tuple[str, bytes, str],
        expected: list[str],
        ids: list[str | None],
    ):
        """An uploaded .txt (one text per line) or .csv (a `text` column) becomes the batch.

        Integration scope: file upload → the page's parsing → the batch endpoint → the table.
        Business impact: texts kept in a file or a spreadsheet need no copying and pasting.
        Test strategy: upload a small file of each kind and run a Summarize batch.
        Success criteria: one `ok` row per text, blank lines skipped, a quoted comma kept, a
        CSV's `id` column beside its results.
        """
        page = open_page("batch", backend.url).run()
        page.file_uploader(key="batch_file").set_value(upload).run()

        page.button(key="run_batch").click().run()

        assert not page.exception
        rows = _table(page)
        assert len(rows) == len(expected)
        assert all(
            str(row["text"]).startswith(text) for row, text in zip(rows, expected, strict=True)
        )
        assert [row.get("id") for row in rows] == ids
        assert {row["status"] for row in rows} == {"ok"}

    @pytest.mark.covers("UI-03")
    def test_new_bad_file_clears_the_previous_results(self, backend, open_page, read_markdown):
        """Results belong to the texts they came from: a new file that fails leaves none behind.

        Integration scope: Batch page → the batch endpoint → the results table; then a new
        upload the page cannot read.
        Business impact: a table left under the new file's error reads as that file's results.
        Test strategy: run a typed batch, then upload a file that is not UTF-8.
        Success criteria: the error naming the file, and no results table or downloads.
        """
        page = open_page("batch", backend.url).run()
        page.text_area(key="batch_texts").input("\n".join(TEXTS[:2])).run()
        page.button(key="run_batch").click().run()
        assert len(_table(page)) == 2

        page.file_uploader(key="batch_file").set_value(("notes.txt", b"\xff\xfe\x00", "text/plain"))
        page.run()

        assert not page.exception
        assert [read_markdown(error.value) for error in page.error] == [
            "notes.txt is not UTF-8 text: save it as UTF-8 and upload it again."
        ]
        assert not page.dataframe
        assert not page.get("download_button")

    @pytest.mark.covers("UI-08")
    def test_column_names_in_an_error_are_shown_as_text(self, backend, open_page, read_markdown):
        """An error that quotes the uploaded file shows its Markdown literally.

        Integration scope: file upload → the page's CSV reading → the error it shows.
        Business impact: a file's contents are outside input; rendered as Markdown, a header
        can fetch an image from any server or show a link posing as something else.
        Test strategy: upload a CSV without a `text` column whose headers are an image, a
        heading, a link and an HTML tag.
        Success criteria: the error reads with every header verbatim and renders no image,
        link, heading or tag.
        """
        headers = [
            "![x](http://127.0.0.1:9/beacon.png)",
            "# Title",
            "[a](http://x.org)",
            "<b>b</b>",
        ]
        upload = ("bad.csv", (",".join(headers) + "\n1,2,3,4\n").encode(), "text/csv")
        page = open_page("batch", backend.url).run()

        page.file_uploader(key="batch_file").set_value(upload).run()

        assert not page.exception
        assert [read_markdown(error.value) for error in page.error] == [
            f"bad.csv has no text column (its columns: {', '.join(headers)})."
        ]


# More texts than the page sends to the batch endpoint (20): the page makes them a job.
JOB_TEXTS = [
    f"Ticket {n}: the night train was late again, and its buffet was shut." for n in range(24)
]
DEADLINE_SECONDS = 30.0  # a bound, not a target: these jobs end within seconds
ENDED = re.compile(r"The job finished in [^:]+: (\d+) done, (\d+) failed\.")
CANCELLED = re.compile(r"The job was cancelled: (\d+) done, (\d+) failed, (\d+) not run\.")


def _until(page: AppTest, seen: Callable[[AppTest], bool]) -> AppTest:
    """Rerun the page (its fragment polls the job) until `seen` holds; fails past the deadline."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not seen(page.run()):
        assert not page.exception
        if time.monotonic() > deadline:
            shown = [getattr(element, "value", element.type) for element in page.main]
            pytest.fail(f"the page never got there; it shows {shown[6:]}")
        time.sleep(0.05)
    return page


def _groups(pattern: re.Pattern[str], text: str) -> tuple[str, ...]:
    match = pattern.fullmatch(text)
    assert match is not None, f"{text!r} does not match {pattern.pattern!r}"
    return match.groups()


def _download_labels(page: AppTest) -> list[str]:
    buttons: Sequence[Any] = page.get("download_button")
    return [button.label for button in buttons]


def _processed(backend) -> int:
    """Texts the backend processed for the test key: its history without streams, whose rows
    a browser that left a stream of an earlier test can add late."""
    with backend.client() as client:
        records = client.get("/v1/history", params={"page_size": 100}).json()["items"]
    return sum(not record["streamed"] for record in records)


def _results(page: AppTest) -> bool:
    return bool(page.dataframe)


def _job_texts(count: int) -> bytes:
    return "\n".join(JOB_TEXTS[:count]).encode()


def _submit(backend, count: int) -> str:
    """A job submitted through the API with the configured key; items carry ids ticket-<n>."""
    items = [{"id": f"ticket-{n}", "text": text} for n, text in enumerate(JOB_TEXTS[:count])]
    with backend.client() as client:
        answer = client.post("/v1/jobs", json={"operation": "sentiment", "items": items})
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["job_id"]
    return job_id


class TestBatchJob:
    """Seam: Batch page → ApiClient → /v1/jobs (submit, poll, cancel, results) on a live backend.

    Paths: UI-10, UI-08
    Real: the page script under Streamlit's AppTest; ApiClient over real HTTP to a uvicorn
    backend subprocess with no Redis, as `make run` starts it: SQLite, its embedded job worker
    on the in-memory queue, the loopback OpenAI-compatible provider over HTTP; for a job no
    worker takes, the everyday backend on this worker's redis-server, which runs no worker.
    Faked: the browser (AppTest, which reruns the page where a browser's timer reruns its
    polling fragment), the AI provider (the loopback server, told how long to take), the
    uploaded file (made in the test).
    """

    @pytest.mark.covers("UI-10")
    def test_upload_above_the_batch_limit_runs_as_a_job_with_a_real_progress_bar(
        self, provider_backend, loopback_provider, open_page
    ):
        """A 24-line file becomes one job; the bar follows its counts to the results.

        Integration scope: upload → POST /v1/jobs → the embedded worker and the provider →
        GET /v1/jobs/{id} polled by the page → the NDJSON results → the table and downloads.
        Business impact: large uploads must not hold a request open or be cut at 200 texts;
        the person sees real progress and gets every result.
        Test strategy: the provider answers 8 calls and holds the later ones (the embedded
        worker's four) until released; upload, run, rerun the page until the bar reads 8 of
        24; release; rerun until the results appear, noting the bar.
        Success criteria: the job's id in the address; a bar below 100% with a Cancel button
        first, then at 8 of 24 while the provider holds; counts that never go back; then 24
        `ok` rows in input order, both downloads, and 24 requests in the backend's history.
        """
        loopback_provider.hold_after(8)
        page = open_page("batch", provider_backend.url).run()
        page.file_uploader(key="batch_file").set_value(
            ("tickets.txt", _job_texts(24), "text/plain")
        )
        page.run()
        assert "24 text(s) ready, to run as a job." in [caption.value for caption in page.caption]

        page.button(key="run_batch").click().run()

        assert not page.exception
        with provider_backend.client() as client:
            (listed,) = client.get("/v1/jobs").json()["items"]
        assert page.query_params["job"] == listed["job_id"]
        assert page.progress[0].value < 100
        assert page.button(key="batch_cancel_job").label == "Cancel job"
        counts: list[int] = []

        def noting_counts(page: AppTest) -> bool:
            counts.extend(int(bar.text.split()[0]) for bar in page.progress)
            return _results(page)

        page = _until(page, lambda page: noting_counts(page) or counts[-1:] == [8])
        loopback_provider.release()
        page = _until(page, noting_counts)
        assert 8 in counts  # where the bar stood while the provider held
        assert counts == sorted(counts)
        assert _groups(ENDED, page.success[0].value) == ("24", "0")
        rows = _table(page)
        assert [row["text"] for row in rows] == JOB_TEXTS
        assert {row["status"] for row in rows} == {"ok"}
        assert _download_labels(page) == ["Download CSV", "Download JSON"]
        assert _processed(provider_backend) == len(JOB_TEXTS)

    @pytest.mark.covers("UI-10")
    def test_reload_with_the_job_in_the_address_follows_it_again(
        self, provider_backend, loopback_provider, open_page
    ):
        """A new session opened on `?job=<id>` (a reload, a link) follows the running job.

        Integration scope: the page's address → GET /v1/jobs/{id} → the bar → the results,
        in a session that never submitted the job.
        Business impact: a job of thousands of texts outlives a browser tab; losing sight of
        it on a reload would mean submitting (and paying for) it twice.
        Test strategy: submit four texts with ids through the API while the provider holds
        every call; open the Batch page with the job's id in its address; run it; release
        the calls; rerun it.
        Success criteria: a bar at "0 of 4 done" naming the job, then the results with the
        items' ids (the API keeps no texts, so there is no text column).
        """
        loopback_provider.hold_after(0)
        job_id = _submit(provider_backend, 4)
        page = open_page("batch", provider_backend.url)
        page.query_params["job"] = job_id

        page.run()
        loopback_provider.release()

        assert not page.exception
        assert (page.progress[0].value, page.progress[0].text) == (0, "0 of 4 done")
        assert job_id in page.caption[-1].value
        page = _until(page, _results)
        assert _groups(ENDED, page.success[0].value) == ("4", "0")
        rows = _table(page)
        assert [row["id"] for row in rows] == [f"ticket-{n}" for n in range(4)]
        assert "text" not in rows[0]

    @pytest.mark.covers("UI-10")
    def test_cancel_stops_the_texts_not_started(
        self, provider_backend, loopback_provider, open_page
    ):
        """Cancel: the texts being processed finish, the others never run, the page says so.

        Integration scope: the Cancel button → DELETE /v1/jobs/{id} → the worker skipping
        the cancelled items → the page's final status and table.
        Business impact: a job started on the wrong file must stop costing money at once.
        Test strategy: the provider holds every call; run 24 typed texts as a job and cancel
        it straight away; release the calls; rerun the page until the job has settled.
        Success criteria: a warning that the running items will finish; then the cancelled
        job's counts as the API gives them, at least one text not run, a `cancelled` row per
        text not run, and as many requests in the history as texts done.
        """
        loopback_provider.hold_after(0)
        page = open_page("batch", provider_backend.url).run()
        page.text_area(key="batch_texts").input("\n".join(JOB_TEXTS)).run()
        page.button(key="run_batch").click().run()

        page.button(key="batch_cancel_job").click().run()
        loopback_provider.release()

        assert not page.exception
        assert page.warning[0].value.startswith("Cancelled: the ")
        page = _until(page, _results)
        with provider_backend.client() as client:
            info = client.get(f"/v1/jobs/{page.query_params['job']}").json()
        done, failed, not_run = map(int, _groups(CANCELLED, page.warning[0].value))
        assert (info["status"], done, failed, not_run) == (
            "cancelled",
            info["done"],
            info["failed"],
            info["cancelled"],
        )
        assert not_run >= 1
        assert [row["status"] for row in _table(page)].count("cancelled") == not_run
        assert _processed(provider_backend) == done

    @pytest.mark.covers("UI-10")
    def test_job_whose_every_text_failed_says_so_with_each_error(
        self, provider_backend, loopback_provider, open_page
    ):
        """A job that ended in failure says so, and the table gives each text's error.

        Integration scope: the provider refusing every request (400) → each job item failing
        alone with its error → the job's `failed` status → the page that opens it.
        Business impact: a failed job must not look like an empty success; the reason is
        what the person needs to fix it.
        Test strategy: the provider answers 400 to everything; submit four texts through the
        API (fewer failures than open the circuit breaker, whose open state makes items wait
        rather than fail) and open the job's address once it has ended.
        Success criteria: "Every item of the job failed (4)", and four rows whose status is
        the error's code and whose result is the backend's message.
        """
        loopback_provider.fail(HTTPStatus.BAD_REQUEST)
        job_id = _submit(provider_backend, 4)
        page = open_page("batch", provider_backend.url)
        page.query_params["job"] = job_id

        page = _until(page, _results)

        assert [error.value for error in page.error] == [
            "Every item of the job failed (4): the table says why."
        ]
        rows = _table(page)
        assert {row["status"] for row in rows} == {"provider_error"}
        assert {row["result"] for row in rows} == {"The AI provider answered HTTP 400."}

    @pytest.mark.covers("UI-10")
    def test_recent_jobs_open_a_job_again(self, provider_backend, open_page):
        """The list of the caller's jobs brings one back when its address is lost.

        Integration scope: GET /v1/jobs → the page's list → a click → the job followed.
        Business impact: a tab closed while a job ran must not lose the job.
        Test strategy: submit a job through the API and wait for it to end; open the Batch
        page with no job in its address and pick the job from the list.
        Success criteria: the job listed with its operation, status and counts; after the
        click its id is in the address and its results are shown.
        """
        job_id = _submit(provider_backend, 4)
        page = _until(
            open_page("batch", provider_backend.url),
            lambda page: "completed" in page.button(key=f"batch_open_{job_id}").label,
        )

        assert (
            " · Sentiment · completed · 4 of 4 done"
            in page.button(key=f"batch_open_{job_id}").label
        )
        page.button(key=f"batch_open_{job_id}").click().run()

        assert page.query_params["job"] == job_id
        assert len(_table(page)) == 4

    @pytest.mark.covers("UI-10")
    def test_job_of_another_key_is_not_found(self, provider_backend, open_page, read_markdown):
        """A job id in the address is no way into another key's job.

        Integration scope: the page's address → GET /v1/jobs/{id} with a different key →
        404 → the page's message.
        Business impact: a shared link must not show one account's results to another.
        Test strategy: submit a job with the configured key; register a second account and
        open the job's address with its key.
        Success criteria: a message that the job was not found and why a key may differ;
        no progress bar, no results.
        """
        job_id = _submit(provider_backend, 4)
        with provider_backend.client(api_key=None) as client:
            body = {"email": "grace@example.com", "display_name": "Grace"}
            other_key = client.post("/v1/auth/register", json=body).json()["api_key"]
        page = open_page("batch", provider_backend.url, api_key=other_key)
        page.query_params["job"] = job_id

        page.run()

        assert not page.exception
        assert [read_markdown(error.value) for error in page.error] == [
            f"Job {job_id} was not found. A job can be read only with the key that submitted "
            "it (a key pasted on Account lasts until the tab reloads)."
        ]
        assert not page.progress
        assert not page.dataframe

    @pytest.mark.covers("UI-08")
    def test_job_id_in_the_address_is_shown_as_text(
        self, provider_backend, open_page, read_markdown
    ):
        """An address made to inject Markdown shows its `job` parameter literally.

        Integration scope: the page's address → GET /v1/jobs/{id} (404) → the message that
        quotes the id.
        Business impact: a link is outside input; rendered as Markdown, it could show an
        image fetched from any server or a link posing as something else.
        Test strategy: open the Batch page with `?job=` set to a Markdown image.
        Success criteria: the message quotes it verbatim and renders no image or link.
        """
        hostile = "![x](http://127.0.0.1:9/b.png)"
        page = open_page("batch", provider_backend.url)
        page.query_params["job"] = hostile

        page.run()

        assert not page.exception
        assert read_markdown(page.error[0].value).startswith(f"Job {hostile} was not found.")

    @pytest.mark.covers("UI-10")
    def test_backend_down_at_submission_says_so(self, open_page, closed_url: str, read_markdown):
        """A job that cannot be submitted leaves a sentence, not a trace or a phantom job.

        Integration scope: the page → POST /v1/jobs → a connection refused on loopback.
        Business impact: the person must know the texts were not sent.
        Test strategy: point the page at a closed port and run 21 texts.
        Success criteria: the not-reachable message; no job in the address, no bar.
        """
        page = open_page("batch", closed_url).run()
        page.text_area(key="batch_texts").input("\n".join(JOB_TEXTS[:21])).run()

        page.button(key="run_batch").click().run()

        assert not page.exception
        assert any("is not reachable. Is it running?" in read_markdown(e.value) for e in page.error)
        assert "job" not in page.query_params
        assert not page.progress

    @pytest.mark.covers("UI-10")
    def test_job_no_worker_takes_says_what_may_be_missing(self, backend, open_page):
        """A job nobody works on does not leave the person watching a bar that never moves.

        Integration scope: the page → GET /v1/jobs/{id} on the everyday backend, which has
        REDIS_URL and so no worker of its own → the page's waiting hint.
        Business impact: a deployment without `make worker` accepts jobs that never run; the
        page is where someone first notices, and it should say what to check.
        Test strategy: submit a job through the API (it stays queued: no worker runs); date
        it a minute back in the backend's database, as if submitted a minute ago; open it.
        Success criteria: the bar at "0 of 4 done", the job queued, and a hint naming
        `make worker`.
        """
        job_id = _submit(backend, 4)
        with closing(sqlite3.connect(backend.database)) as connection, connection:
            connection.execute(
                "UPDATE jobs SET created_at = datetime(created_at, '-60 seconds') WHERE id = ?",
                (job_id,),
            )
        page = open_page("batch", backend.url)
        page.query_params["job"] = job_id

        page.run()

        assert not page.exception
        assert (page.progress[0].value, page.progress[0].text) == (0, "0 of 4 done")
        assert f"Sentiment job {job_id}, queued." in page.caption[-1].value
        (hint,) = page.info
        assert hint.value.startswith("No item has started in 6")
        assert "none is running (a backend with REDIS_URL needs `make worker`)." in hint.value

    @pytest.mark.covers("UI-10")
    def test_invalid_job_is_refused_with_the_backend_reason(
        self, provider_backend, open_page, read_markdown
    ):
        """A job the backend refuses (422) says why, and leaves nothing to follow.

        Integration scope: the page → POST /v1/jobs → the shared contract's validation in the
        backend → the error body → the page.
        Business impact: a job is refused whole; the person must learn what to change before
        sending thousands of texts again.
        Test strategy: choose Q&A, give 21 texts and no question, and run.
        Success criteria: "The request was not valid" with the backend's reason; no job in the
        address, no job in the backend.
        """
        page = open_page("batch", provider_backend.url).run()
        page.radio(key="batch_operation").set_value("qa").run()
        page.text_area(key="batch_texts").input("\n".join(JOB_TEXTS[:21])).run()

        page.button(key="run_batch").click().run()

        assert not page.exception
        assert [read_markdown(error.value) for error in page.error] == [
            "The request was not valid: question: Field required."
        ]
        assert "job" not in page.query_params
        with provider_backend.client() as client:
            assert client.get("/v1/jobs").json()["total"] == 0
