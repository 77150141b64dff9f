"""Status: is the backend up and ready (its public probes); with an operator key, its circuit
breakers and cache."""

import streamlit as st
from shared.health import ReadinessResponse
from streamlit_app.api_client import ApiError
from streamlit_app.literal import escape_markdown
from streamlit_app.session import open_client, session_config
from streamlit_app.ui import run_page

HEALTH_BADGES = {
    "ok": ":green-badge[ok]",
    "degraded": ":orange-badge[degraded]",
    "down": ":red-badge[down]",
}


def _readiness_view(ready: ReadinessResponse) -> None:
    st.subheader(f"Readiness {HEALTH_BADGES[ready.status]}")
    for dependency in ready.dependencies:
        # A detail can quote a driver's error message: text, not Markdown.
        detail = f": {escape_markdown(dependency.detail)}" if dependency.detail else ""
        name = escape_markdown(dependency.name)
        st.markdown(f"{HEALTH_BADGES[dependency.status]} **{name}**{detail}")


def _operator_view() -> None:
    with open_client() as client:
        breakers = client.breakers().breakers
        cache = client.cache_stats()

    st.subheader("Circuit breakers")
    st.dataframe(
        [
            {
                "breaker": breaker.name,
                "state": breaker.state.replace("_", " "),
                "recent failures": breaker.failure_count,
            }
            for breaker in breakers
        ],
        hide_index=True,
    )

    st.subheader("Cache")
    st.caption(f"Backend: {escape_markdown(cache.backend)}")
    hits, misses, ratio, keys = st.columns(4)
    hits.metric("Hits", cache.hits, help=f"{cache.stale_hits} stale hits served while degraded")
    misses.metric("Misses", cache.misses)
    ratio.metric("Hit ratio", f"{cache.hit_ratio:.0%}")
    keys.metric("Keys", cache.key_count)


def render() -> None:
    st.title("Status")
    config = session_config()
    st.caption(f"The backend at {config.backend_url}.")
    with open_client() as client:
        live = client.liveness()
        ready = client.readiness()
    st.success(f"The backend is up (version {escape_markdown(live.version)}).")
    _readiness_view(ready)
    try:
        _operator_view()
    except ApiError as error:
        st.info(escape_markdown(error.user_message))


run_page(render)
