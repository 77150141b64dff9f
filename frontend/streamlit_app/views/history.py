"""History: the caller's requests as a table, and latency and cache hits over time."""

from statistics import median
from typing import Any

import streamlit as st
from shared.text import HistoryRecord
from streamlit_app.session import open_client
from streamlit_app.ui import duration, run_page

MAX_RECORDS = 500
PAGE_SIZE = 100
HIT_RATIO_WINDOW = 10  # requests per point of the rolling cache hit ratio
# Vega-Lite's time axis, on a UTC scale and a 24-hour clock like the table below it; the labels
# still follow the ticks' granularity (a date at midnight, seconds when ticks are seconds apart).
TIME_AXIS = {
    "title": "time (UTC)",
    "format": {
        "hours": "%H:%M",
        "minutes": "%H:%M",
        "seconds": "%H:%M:%S",
        "milliseconds": "%H:%M:%S.%L",
    },
}


def _records() -> tuple[list[HistoryRecord], int]:
    records: list[HistoryRecord] = []
    with open_client() as client:
        page = client.history(page=1, page_size=PAGE_SIZE)
        records += page.items
        while len(records) < min(page.total, MAX_RECORDS) and page.items:
            page = client.history(page=page.page + 1, page_size=PAGE_SIZE)
            records += page.items
    return records[:MAX_RECORDS], page.total


def _timeline(records: list[HistoryRecord]) -> list[dict[str, Any]]:
    """Oldest first, with the hit ratio of the last HIT_RATIO_WINDOW requests at each point."""
    points = []
    oldest_first = sorted(records, key=lambda record: (record.created_at, record.id))
    for position, record in enumerate(oldest_first):
        window = oldest_first[max(0, position + 1 - HIT_RATIO_WINDOW) : position + 1]
        points.append(
            {
                "time": record.created_at,
                "latency (ms)": record.latency_ms,
                "cache hit ratio": sum(r.cached for r in window) / len(window),
            }
        )
    return points


def _chart(field: str, y_axis: dict[str, Any]) -> dict[str, Any]:
    """A Vega-Lite line with a dot on every request."""
    return {
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "time", "type": "temporal", "scale": {"type": "utc"}, "axis": TIME_AXIS},
            "y": {"field": field, "type": "quantitative", **y_axis},
        },
    }


def _charts(records: list[HistoryRecord]) -> None:
    if len(records) < 2:  # a line needs two points, and an axis a span of time
        st.caption("The charts of latency and cache hits over time start with a second request.")
        return
    timeline = _timeline(records)
    latency_chart, ratio_chart = st.columns(2)
    latency_chart.subheader("Latency")
    latency_chart.vega_lite_chart(timeline, _chart("latency (ms)", {}))
    ratio_chart.subheader("Cache hit ratio")
    ratio_chart.caption(f"Over the last {HIT_RATIO_WINDOW} requests at each point.")
    ratio = {"scale": {"domain": [0, 1]}, "axis": {"format": "%"}}
    ratio_chart.vega_lite_chart(timeline, _chart("cache hit ratio", ratio))


def render() -> None:
    st.title("History")
    st.caption("Requests made with this session's key, newest first. Texts are never stored.")
    records, total = _records()
    if not records:
        st.info("No requests yet: process a text on the Process page and come back.")
        return

    requests, hit_ratio, latency = st.columns(3)
    requests.metric("Requests", total)
    hit_ratio.metric("Cache hit ratio", f"{sum(r.cached for r in records) / len(records):.0%}")
    latency.metric("Median latency", duration(median(r.latency_ms for r in records)))

    _charts(records)

    st.subheader("Requests")
    if total > len(records):
        st.caption(f"The latest {len(records)} of {total}.")
    st.dataframe(
        [
            {
                "time": record.created_at,
                "operation": record.operation.value,
                "outcome": record.outcome,
                "cached": record.cached,
                "degraded": record.degraded,
                "latency (ms)": record.latency_ms,
                "model": record.model,
                "text length": record.text_length,
            }
            for record in records
        ],
        hide_index=True,
        width="stretch",
    )


run_page(render)
