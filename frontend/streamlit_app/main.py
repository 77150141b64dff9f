"""Entry point: `streamlit run frontend/streamlit_app/main.py` (`make run` sets the backend)."""

import streamlit as st

from streamlit_app.session import key_in_use, session_config

# The client settings (toolbar, error details) are in .streamlit/config.toml beside this file.
st.set_page_config(page_title="LLM Starter", page_icon=":material/auto_awesome:", layout="wide")

# The pages live in views/, not pages/: Streamlit would treat a pages/ folder as an older kind
# of multipage app whenever a browser opens a page's URL directly, bypassing this navigation.
navigation = st.navigation(
    [
        # Material icons ship with Streamlit; emoji depend on the viewer's fonts.
        st.Page("views/process.py", title="Process", icon=":material/auto_awesome:", default=True),
        st.Page("views/batch.py", title="Batch", icon=":material/library_books:"),
        st.Page("views/history.py", title="History", icon=":material/monitoring:"),
        st.Page("views/account.py", title="Account", icon=":material/key:"),
        st.Page("views/status.py", title="Status", icon=":material/health_and_safety:"),
    ]
)
navigation.run()
# After the page, which may just have changed this session's key.
st.sidebar.caption(f"Backend: {session_config().backend_url}")
st.sidebar.caption(key_in_use())
