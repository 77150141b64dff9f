"""Account page → HTTP → the real backend: register, a key shown once, usage and limits."""

import pytest
from streamlit.testing.v1 import AppTest

EMAIL = "ada@example.com"
TEXT = "The harbour reopened after the storm, and the ferries run again."


def _register(page: AppTest, email: str = EMAIL, name: str = "Ada") -> AppTest:
    page.text_input(key="email").input(email)
    page.text_input(key="display_name").input(name)
    return page.button(key="create_account").click().run()


def _registered_key(backend, email: str = EMAIL) -> str:
    with backend.client(api_key=None) as client:
        response = client.post("/v1/auth/register", json={"email": email, "display_name": "Ada"})
        response.raise_for_status()
        key: str = response.json()["api_key"]
        return key


class TestAccountPage:
    """Seam: Account page → ApiClient → /v1/auth/register, /me and /keys/rotate (live backend).

    Paths: UI-02, UI-05
    Real: the page script under Streamlit's AppTest; ApiClient over real HTTP to a uvicorn
    backend subprocess (SQLite, the local model) on this worker's redis-server.
    Faked: the browser (AppTest runs the script and stands in for the person's clicks).
    """

    @pytest.mark.covers("UI-05")
    def test_registering_shows_the_key_once_and_uses_it(self, backend, open_page):
        """The new key is shown right after registering, works, and is not shown again.

        Integration scope: register form → POST /v1/auth/register → accounts and hashed keys
        in SQLite → GET /v1/auth/me with the new key.
        Business impact: a person gets a working key without editing a config file, and the
        page does not keep a secret on screen.
        Test strategy: register on the page; check the shown key against the backend; rerun.
        Success criteria: the key is shown once and the account appears under it; the backend
        knows the key; after a rerun no key is on screen and the session still uses it.
        """
        page = open_page("account", backend.url).run()

        _register(page)

        assert not page.exception
        [shown] = [block.value for block in page.code]
        with backend.client(api_key=shown) as client:
            assert client.get("/v1/auth/me").json()["email"] == EMAIL
        assert any(f"**Ada** ({EMAIL})" in text.value for text in page.markdown)
        page.run()
        assert not page.code
        assert "This session uses the key registered here." in [c.value for c in page.caption]

    @pytest.mark.covers("UI-05")
    def test_account_shows_usage_and_limits(self, backend, open_page):
        """Usage counted by the backend (requests, cache hits, provider calls) and the tier.

        Integration scope: two text requests with a registered key → usage counters in the
        database → GET /v1/auth/me → the page's metrics.
        Business impact: people can follow what they use against what their tier allows.
        Test strategy: register and send the same text twice with the new key, then open the
        page with that key.
        Success criteria: 2 requests, 1 cache hit, 1 provider call, the per-minute limit.
        """
        key = _registered_key(backend)
        with backend.client(api_key=key) as client:
            for _ in range(2):
                body = {"operation": "summarize", "text": TEXT}
                client.post("/v1/text/process", json=body).raise_for_status()

        page = open_page("account", backend.url, api_key=key).run()

        assert not page.exception
        assert {metric.label: metric.value for metric in page.metric} == {
            "Requests": "2",
            "Cache hits": "1",
            "Provider calls": "1",
            "Limit": f"{backend.requests_per_minute} / min",
        }

    @pytest.mark.covers("UI-05")
    def test_rotating_shows_a_new_key_and_retires_the_old(self, backend, open_page):
        """Rotation shows the replacement once; the backend refuses the old key from then on.

        Integration scope: Rotate button → POST /v1/auth/keys/rotate → key rows in SQLite.
        Business impact: a leaked key can be replaced from the page in one click.
        Test strategy: register through the API, open the page with that key, rotate.
        Success criteria: a new key on screen that the backend accepts; the old key gets 401.
        """
        old_key = _registered_key(backend)
        page = open_page("account", backend.url, api_key=old_key).run()

        page.button(key="rotate").click().run()

        assert not page.exception
        [new_key] = [block.value for block in page.code]
        with backend.client(api_key=new_key) as new, backend.client(api_key=old_key) as old:
            assert new.get("/v1/auth/me").status_code == 200
            assert old.get("/v1/auth/me").status_code == 401

    @pytest.mark.covers("UI-05", "UI-02")
    def test_email_taken_is_explained_beside_the_form(self, backend, open_page):
        """A second registration with the same e-mail gets the backend's reason (409).

        Integration scope: register form → POST /v1/auth/register → the unique e-mail
        constraint → 409 → the page.
        Business impact: the person learns the address is taken instead of seeing a failure.
        Test strategy: register an e-mail through the API, then again on the page.
        Success criteria: the backend's sentence as an error, no key on screen, no exception.
        """
        _registered_key(backend)
        page = open_page("account", backend.url).run()

        _register(page)

        assert not page.exception
        assert [error.value for error in page.error] == [
            "An account with this email already exists."
        ]
        assert not page.code

    @pytest.mark.covers("UI-05")
    def test_configured_key_invites_to_register(self, backend, open_page):
        """The key from the settings has no account: the page says so and offers the form.

        Integration scope: GET /v1/auth/me with an API_KEYS key → 404 → the page.
        Business impact: on a fresh clone (`make run`, the development key) the page explains
        why there is no account yet, rather than showing an error.
        Test strategy: open the page with the configured public key.
        Success criteria: an info message pointing to registration; no error, no exception.
        """
        page = open_page("account", backend.url).run()

        assert not page.exception
        assert not page.error
        assert [info.value for info in page.info] == [
            "The configured key has no account: register below for your own key."
        ]
