"""Status: is the backend up, and how are its dependencies."""

import streamlit as st
from streamlit_app.api_client import ApiClient, ApiError
from streamlit_app.config import load_config

st.title("Status")
config = load_config()
client = ApiClient(config)
try:
    live = client.liveness()
except ApiError as error:
    st.error(error.user_message)
    st.stop()
st.success(f"Backend {config.backend_url} is up (version {live.version}).")

try:
    ready = client.readiness()
except ApiError as error:
    st.info(error.user_message)
else:
    icons = {"ok": "🟢", "degraded": "🟠", "down": "🔴"}
    st.subheader(f"Readiness: {icons[ready.status]} {ready.status}")
    for dependency in ready.dependencies:
        st.write(f"{icons[dependency.status]} **{dependency.name}**: {dependency.detail or 'ok'}")
finally:
    client.close()
