"""Batch page → HTTP → the real backend: progress, per-item results, downloads."""

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
        ("upload", "expected"),
        [
            (("texts.txt", b"First text.\n\nSecond text.\n", "text/plain"), ["First", "Second"]),
            (
                ("texts.csv", b'id,text\n1,"First, with a comma."\n2,Second text.\n', "text/csv"),
                ["First, with a comma.", "Second text."],
            ),
        ],
        ids=["txt", "csv"],
    )
    def test_uploaded_file_gives_one_row_per_text(
        self, backend, open_page, upload: tuple[str, bytes, str], expected: list[str]
    ):
        """An uploaded .txt (one text per line) or .csv (a `text` column) becomes the batch.

        Integration scope: file upload → the page's parsing → the batch endpoint → the table.
        Business impact: texts kept in a file or a spreadsheet need no copying and pasting.
        Test strategy: upload a small file of each kind and run a Summarize batch.
        Success criteria: one `ok` row per text, blank lines skipped, a quoted comma kept.
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
