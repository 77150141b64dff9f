"""Which key this browser session calls with: the configured one, or the person's own.

A key registered or pasted on the Account page replaces BACKEND_API_KEY for this session only,
so a person can process, batch and read their own history without editing any file. It is kept
in this session's server-side state and nowhere else: a reload, or a page opened by its URL,
starts a new session on the configured key, and the sidebar says so on every page. README.md
("Your own key in the UI") gives the reasons.
"""

from dataclasses import replace

import streamlit as st

from streamlit_app.api_client import ApiClient
from streamlit_app.config import FrontendConfig, load_config
from streamlit_app.literal import escape_markdown

_SESSION_KEY = "session_api_key"
# The length of the backend's own key_prefix (sk_ and 7 characters), so both hints match.
KEY_HINT_LENGTH = 10


def session_config() -> FrontendConfig:
    config = load_config()
    own_key: str | None = st.session_state.get(_SESSION_KEY)
    return replace(config, api_key=own_key) if own_key else config


def open_client(api_key: str | None = None) -> ApiClient:
    """A client with this session's key, or with `api_key` to try a key before using it."""
    config = session_config()
    return ApiClient(replace(config, api_key=api_key) if api_key else config)


def use_key(api_key: str) -> None:
    st.session_state[_SESSION_KEY] = api_key


def forget_key() -> None:
    st.session_state.pop(_SESSION_KEY, None)


def uses_own_key() -> bool:
    return _SESSION_KEY in st.session_state


def key_hint(api_key: str) -> str:
    """Enough of a key to recognise it, too little to use it: never more than a third of it."""
    return api_key[: min(KEY_HINT_LENGTH, len(api_key) // 3)] + "…"


def key_in_use() -> str:
    """A sentence (Markdown) naming the key this session calls with, for every page."""
    api_key = session_config().api_key
    if api_key is None:
        return "Key in use: none. Set BACKEND_API_KEY, or paste or register one on Account."
    hint = escape_markdown(key_hint(api_key))
    if uses_own_key():
        return f"Key in use: {hint}, yours until this tab reloads, then the configured key again."
    return (
        f"Key in use: {hint} from BACKEND_API_KEY. A key you paste or register on the Account "
        "page is used until this tab reloads."
    )
