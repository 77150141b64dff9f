"""History page → HTTP → the real backend: the caller's records as a table and two charts."""

import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

REPEATED = "The river flooded the lower town twice this spring."
OTHER = "A new bridge will open downstream next year."


def _chart_points(page: AppTest, field: str) -> list[float]:
    """The values a line chart plots for `field`, oldest first, read from the rendered chart."""
    for chart in page.get("vega_lite_chart"):
        for dataset in chart.proto.datasets:
            frame = convert_arrow_bytes_to_pandas_df(dataset.data.data)
            if field in frame.columns:
                points: list[float] = frame[field].tolist()
                return points
    raise AssertionError(f"no chart plots {field!r}")


class TestHistoryPage:
    """Seam: History page → ApiClient → GET /v1/history (paged) on a live backend.

    Paths: UI-04
    Real: the page script under Streamlit's AppTest; ApiClient over real HTTP to a uvicorn
    backend subprocess (SQLite, the local model) on this worker's redis-server.
    Faked: the browser (AppTest).
    """

    @pytest.mark.covers("UI-04")
    def test_processed_requests_show_in_table_and_charts(self, backend, open_page):
        """Three requests, one of them a cache hit, appear as rows, metrics and chart points.

        Integration scope: requests through the real API → history rows in SQLite → GET
        /v1/history → the page's table, metrics and charts.
        Business impact: people see what they used, how fast it was and how often the cache
        saved a model call.
        Test strategy: send a text twice and another once with the page's key, then open the
        page.
        Success criteria: 3 requests and a 33% hit ratio; rows newest first with the hit in
        the middle; three latency points; the rolling hit ratio 0, 1/2, 1/3.
        """
        with backend.client() as client:
            for text in (REPEATED, REPEATED, OTHER):
                body = {"operation": "summarize", "text": text}
                client.post("/v1/text/process", json=body).raise_for_status()

        page = open_page("history", backend.url).run()

        assert not page.exception
        metrics = {metric.label: metric.value for metric in page.metric}
        assert (metrics["Requests"], metrics["Cache hit ratio"]) == ("3", "33%")
        assert page.dataframe[0].value["cached"].tolist() == [False, True, False]
        assert len(_chart_points(page, "latency (ms)")) == 3
        assert _chart_points(page, "cache hit ratio") == pytest.approx([0, 1 / 2, 1 / 3])

    @pytest.mark.covers("UI-04")
    def test_no_requests_yet_points_to_the_process_page(self, backend, open_page):
        """A key with no history gets a pointer instead of an empty table and blank charts.

        Integration scope: History page → GET /v1/history with empty tables.
        Business impact: a first visit explains itself rather than looking broken.
        Test strategy: open the page on the emptied backend.
        Success criteria: one info message naming the Process page; no table, no chart.
        """
        page = open_page("history", backend.url).run()

        assert not page.exception
        assert [info.value for info in page.info] == [
            "No requests yet: process a text on the Process page and come back."
        ]
        assert not page.dataframe
        assert not page.get("vega_lite_chart")
