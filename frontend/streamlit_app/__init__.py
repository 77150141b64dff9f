"""The Streamlit frontend: pages on the public API, reached only over HTTP."""
