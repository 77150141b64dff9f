"""Account: register for a key (shown once) or paste one, then see usage and limits, or rotate."""

import streamlit as st
from shared.accounts import AccountInfo
from streamlit_app.api_client import ApiError
from streamlit_app.literal import escape_markdown, show_text
from streamlit_app.session import (
    forget_key,
    key_hint,
    open_client,
    session_config,
    use_key,
    uses_own_key,
)
from streamlit_app.ui import run_page, show_error

UNTIL_RELOAD = "until this tab reloads: keep a copy, and paste it here again after a reload."


def _show_new_key(api_key: str, why: str) -> None:
    """The key leaves the backend once: show it in this run only, and use it from now on."""
    use_key(api_key)
    st.success(escape_markdown(why))
    st.code(api_key, language=None)
    st.warning(
        "Copy this key now: it is shown once, and only its hash is stored. This session uses it "
        f"(Process, Batch and History act as this account) {UNTIL_RELOAD}"
    )


def _register() -> None:
    st.subheader("Register")
    with st.form("register", clear_on_submit=True):
        email = st.text_input("E-mail", key="email")
        display_name = st.text_input("Display name", key="display_name")
        submitted = st.form_submit_button(
            "Create account and key", type="primary", key="create_account"
        )
    if not submitted:
        return
    try:
        with open_client() as client:
            registered = client.register(email.strip(), display_name.strip())
    except ApiError as error:  # shown here, so the account above still renders
        show_error(error)
    else:
        welcome = f"Welcome, {registered.account.display_name}: your key is ready."
        _show_new_key(registered.api_key, welcome)


def _paste() -> None:
    st.subheader("Use a key you have")
    with st.form("paste", clear_on_submit=True):
        pasted = st.text_input("API key", type="password", key="pasted_key")
        submitted = st.form_submit_button("Use this key", key="use_pasted_key")
    if not submitted:
        return
    api_key = pasted.strip()
    if not api_key:
        st.warning("Paste a key first.")
        return
    try:
        with open_client(api_key) as client:
            client.me()
    except ApiError as error:
        if error.status == 401:
            st.error(
                "The backend did not accept this key: check that you pasted all of it. A key "
                "stops working once it is rotated or its account is revoked.",
                icon=":material/error:",
            )
            return
        if error.status != 404:  # 404: a valid key without an account (one of API_KEYS)
            show_error(error)
            return
    use_key(api_key)
    st.success(f"This session now uses {escape_markdown(key_hint(api_key))} {UNTIL_RELOAD}")


def _show_account(account: AccountInfo) -> None:
    show_text(f"{account.display_name} ({account.email})")
    st.caption(
        f"Key {escape_markdown(account.key_prefix or '?')}… · "
        f"tier {escape_markdown(account.limits.tier)}"
    )
    requests, hits, calls, limit = st.columns(4)
    requests.metric("Requests", account.usage.requests)
    hits.metric("Cache hits", account.usage.cache_hits)
    calls.metric("Provider calls", account.usage.provider_calls)
    limit.metric("Limit", f"{account.limits.requests_per_minute} / min")
    if st.button("Rotate key", key="rotate", help="A new key; the current one stops working."):
        with open_client() as client:
            rotated = client.rotate_key()
        _show_new_key(rotated.api_key, "A new key replaces the old one, which no longer works.")


def _account() -> None:
    st.subheader("Your account")
    if uses_own_key():
        st.caption(f"This session uses your own key {UNTIL_RELOAD}")
        if st.button("Go back to the configured key", key="forget_key"):
            forget_key()
            st.rerun()
    else:
        st.caption("This session uses the key from BACKEND_API_KEY.")
    try:
        with open_client() as client:
            account = client.me()
    except ApiError as error:
        if error.status != 404:
            raise
        st.info("This key has no account: paste your own key or register below.")
        return
    _show_account(account)


def render() -> None:
    st.title("Account")
    st.caption(
        f"Your own API key for the backend at {session_config().backend_url}: register once, "
        "then follow your usage against your tier's limits."
    )
    account = st.container()
    st.divider()
    # Pasting and registering run first, so the account above already shows the new key's.
    paste, register = st.columns(2, gap="large")
    with paste:
        _paste()
    with register:
        _register()
    with account:
        _account()


run_page(render)
