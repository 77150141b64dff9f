"""Account: register for a key (shown once), then see usage and limits, or rotate the key."""

import streamlit as st
from streamlit_app.api_client import ApiError
from streamlit_app.session import forget_key, open_client, session_config, use_key, uses_own_key
from streamlit_app.ui import run_page, show_error


def _show_new_key(api_key: str, why: str) -> None:
    """The key leaves the backend once: show it in this run only, and use it from now on."""
    use_key(api_key)
    st.success(why)
    st.code(api_key, language=None)
    st.warning(
        "Copy this key now: it is shown once, and only its hash is stored. This browser "
        "session uses it from now on (Process, Batch and History act as this account)."
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


def _account() -> None:
    st.subheader("Your account")
    if uses_own_key():
        st.caption("This session uses the key registered here.")
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
        st.info("The configured key has no account: register below for your own key.")
        return
    st.markdown(
        f"**{account.display_name}** ({account.email}) · key `{account.key_prefix or '?'}…` · "
        f":blue-badge[tier: {account.limits.tier}]"
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


def render() -> None:
    st.title("Account")
    st.caption(
        f"Your own API key for the backend at {session_config().backend_url}: register once, "
        "then follow your usage against your tier's limits."
    )
    account = st.container()
    st.divider()
    # Registration runs first, so the account above already shows the new key's account.
    _register()
    with account:
        _account()


run_page(render)
