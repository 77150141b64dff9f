"""Which key this browser session calls with: the configured one, or one registered here.

A key registered on the Account page replaces BACKEND_API_KEY for this session only, so a person
can register and then process, batch and read their own history without editing any file.
"""

from dataclasses import replace

import streamlit as st

from streamlit_app.api_client import ApiClient
from streamlit_app.config import FrontendConfig, load_config

_SESSION_KEY = "session_api_key"


def session_config() -> FrontendConfig:
    config = load_config()
    own_key: str | None = st.session_state.get(_SESSION_KEY)
    return replace(config, api_key=own_key) if own_key else config


def open_client() -> ApiClient:
    return ApiClient(session_config())


def use_key(api_key: str) -> None:
    st.session_state[_SESSION_KEY] = api_key


def forget_key() -> None:
    st.session_state.pop(_SESSION_KEY, None)


def uses_own_key() -> bool:
    return _SESSION_KEY in st.session_state
