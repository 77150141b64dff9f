"""Entry point: `streamlit run frontend/streamlit_app/main.py`."""

import streamlit as st

st.set_page_config(page_title="LLM Starter", page_icon="✨", layout="wide")
navigation = st.navigation([st.Page("pages/status.py", title="Status", icon="🩺")])
navigation.run()
