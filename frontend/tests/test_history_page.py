"""History page → HTTP → the real backend: the caller's records as a table and two charts."""

import json
from typing import Any

import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

REPEATED = "The river flooded the lower town twice this spring."
OTHER = "A new bridge will open downstream next year."


def _process(backend, *texts: str) -> None:
    with backend.client() as client:
        for text in texts:
            body = {"operation": "summarize", "text": text}
            client.post("/v1/text/process", json=body).raise_for_status()


def _chart(page: AppTest, field: str) -> tuple[Any, dict[str, Any]]:
    """The chart that plots `field`: its data as sent to the browser, and its Vega-Lite spec."""
    for chart in page.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["encoding"]["y"]["field"] == field:
            return convert_arrow_bytes_to_pandas_df(chart.proto.data.data), spec
    raise AssertionError(f"no chart plots {field!r}")


def _chart_points(page: AppTest, field: str) -> list[float]:
    """The values a line chart plots for `field`, oldest first, read from the rendered chart."""
    points: list[float] = _chart(page, field)[0][field].tolist()
    return points


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
        _process(backend, REPEATED, REPEATED, OTHER)

        page = open_page("history", backend.url).run()

        assert not page.exception
        metrics = {metric.label: metric.value for metric in page.metric}
        assert (metrics["Requests"], metrics["Cache hit ratio"]) == ("3", "33%")
        assert page.dataframe[0].value["cached"].tolist() == [False, True, False]
        assert len(_chart_points(page, "latency (ms)")) == 3
        assert _chart_points(page, "cache hit ratio") == pytest.approx([0, 1 / 2, 1 / 3])

    @pytest.mark.covers("UI-04")
    def test_chart_time_axis_is_24_hour_utc_like_the_table(self, backend, open_page):
        """Both charts label time on a UTC scale with a 24-hour clock, as the table does.

        Integration scope: history rows with UTC timestamps → GET /v1/history → the page's
        Vega-Lite specs, which the browser renders.
        Business impact: a chart saying 12:30 beside a table saying 00:30 makes people doubt
        both.
        Test strategy: two requests, then read the x axis of each chart's spec.
        Success criteria: a UTC time scale whose hour and minute labels use %H, titled UTC; the
        hit ratio's axis runs from 0 to 100%.
        """
        _process(backend, REPEATED, OTHER)

        page = open_page("history", backend.url).run()

        assert not page.exception
        for field in ("latency (ms)", "cache hit ratio"):
            x = _chart(page, field)[1]["encoding"]["x"]
            assert x["scale"]["type"] == "utc"
            assert x["axis"]["title"] == "time (UTC)"
            assert {x["axis"]["format"][unit][:2] for unit in ("hours", "minutes")} == {"%H"}
        y = _chart(page, "cache hit ratio")[1]["encoding"]["y"]
        assert (y["scale"]["domain"], y["axis"]["format"]) == ([0, 1], "%")

    @pytest.mark.covers("UI-04")
    def test_one_request_shows_a_table_and_says_when_charts_start(self, backend, open_page):
        """A single record is a row and a sentence, not two empty charts with broken axes.

        Integration scope: one request → a history row → GET /v1/history → the page.
        Business impact: right after their first request, people open History; empty charts
        with axes reading ".829" and "0.000000" look broken.
        Test strategy: one request with the page's key, then open the page.
        Success criteria: the row in the table, the metrics, a caption saying the charts start
        with a second request, and no chart.
        """
        _process(backend, REPEATED)

        page = open_page("history", backend.url).run()

        assert not page.exception
        assert len(page.dataframe[0].value) == 1
        assert {metric.label: metric.value for metric in page.metric}["Requests"] == "1"
        assert "The charts of latency and cache hits over time start with a second request." in [
            caption.value for caption in page.caption
        ]
        assert not page.get("vega_lite_chart")

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
