"""Account page → HTTP → the real backend: register, a key shown once, usage and limits."""

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

EMAIL = "ada@example.com"
TEXT = "The harbour reopened after the storm, and the ferries run again."
UNTIL_RELOAD = "until this tab reloads: keep a copy, and paste it here again after a reload."


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


def _paste(page: AppTest, api_key: str) -> AppTest:
    page.text_input(key="pasted_key").input(api_key)
    return page.button(key="use_pasted_key").click().run()


def _sidebar(page: AppTest, read_markdown: Callable[[str], str]) -> str:
    """The sidebar's sentence about the key in use (after the backend's address)."""
    [_, key] = page.sidebar.caption
    return read_markdown(key.value)


def _all_text(page: AppTest) -> list[str]:
    kinds = ("markdown", "text", "code", "success", "info", "warning", "error", "metric")
    return [str(getattr(element, "value", "")) for kind in kinds for element in page.get(kind)]


class TestAccountPage:
    """Seam: Account page → ApiClient → /v1/auth/register, /me and /keys/rotate (live backend).

    Paths: UI-02, UI-05, UI-08, UI-09
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
        assert f"Ada ({EMAIL})" in [text.value for text in page.text]
        page.run()
        assert not page.code
        assert f"This session uses your own key {UNTIL_RELOAD}" in [c.value for c in page.caption]

    @pytest.mark.covers("UI-08")
    def test_display_name_is_shown_as_text(self, backend, open_page, read_markdown):
        """A display name is the person's own text: shown as typed, never rendered.

        Integration scope: register form → POST /v1/auth/register → the stored display name →
        the welcome message and GET /v1/auth/me → the account section.
        Business impact: names are shown back to people (and, in a shared deployment, to
        operators); Markdown in one must not fetch an image or pose as a link.
        Test strategy: register with a name made of an image, a heading, a link and a tag.
        Success criteria: the welcome reads with the name verbatim and renders no element;
        the account section shows the name as plain text.
        """
        name = "![x](http://127.0.0.1:9/beacon.png) # Ada [home](http://x.org) <b>b</b>"
        page = open_page("account", backend.url).run()

        _register(page, name=name)

        assert not page.exception
        [welcome] = [read_markdown(message.value) for message in page.success]
        assert welcome == f"Welcome, {name}: your key is ready."
        assert f"{name} ({EMAIL})" in [text.value for text in page.text]

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
    def test_email_taken_is_explained_beside_the_form(self, backend, open_page, read_markdown):
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
        assert [read_markdown(error.value) for error in page.error] == [
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
            "This key has no account: paste your own key or register below."
        ]

    @pytest.mark.covers("UI-09")
    def test_pasted_key_is_checked_then_used(self, backend, open_page, read_markdown):
        """A key registered earlier can be pasted: the backend checks it, the session uses it.

        Integration scope: paste form → GET /v1/auth/me with the pasted key → the session's
        key → GET /v1/auth/me again for the account section.
        Business impact: a key registered in an earlier session (or before a reload) reaches
        its account again without editing any setting.
        Test strategy: register through the API, open the page with the configured key,
        paste the registered key.
        Success criteria: a success naming the key's start, never the whole key; the account
        section shows Ada's account under the pasted key.
        """
        key = _registered_key(backend)
        page = open_page("account", backend.url).run()

        _paste(page, key)

        assert not page.exception
        [success] = [read_markdown(message.value) for message in page.success]
        assert success == f"This session now uses {key[:10]}… {UNTIL_RELOAD}"
        assert f"Ada ({EMAIL})" in [text.value for text in page.text]
        assert not any(key in text for text in _all_text(page))

    @pytest.mark.covers("UI-09")
    def test_pasted_key_the_backend_refuses_is_not_used(self, backend, open_page, read_markdown):
        """A wrong key gets a clear refusal, and the session keeps the key it had.

        Integration scope: paste form → GET /v1/auth/me → 401 → the page.
        Business impact: a truncated paste must not silently break every other page.
        Test strategy: paste a key the backend never issued.
        Success criteria: an error saying the key was refused and what to check; the session
        still on the configured key, whose (missing) account the page explains.
        """
        page = open_page("account", backend.url).run()

        _paste(page, "sk_not-a-key-the-backend-issued")

        assert not page.exception
        [error] = [read_markdown(message.value) for message in page.error]
        assert error.startswith("The backend did not accept this key: check that you pasted")
        assert "This session uses the key from BACKEND_API_KEY." in [
            caption.value for caption in page.caption
        ]

    @pytest.mark.covers("UI-09")
    def test_key_in_use_shows_on_every_page_and_a_reload_says_it_is_gone(
        self, backend, open_page, read_markdown
    ):
        """The sidebar names the key in use by its start; a new session is back on the
        configured key and says so.

        Integration scope: the whole app (navigation, sidebar) → paste on the Account page →
        another page in the same session → a new session, as a reload or an opened URL starts.
        Business impact: people always know whose account they act as, and a reload never
        silently moves them to another account.
        Test strategy: AppTest of main.py: paste a registered key on the Account page, switch
        to Process; then open the app again.
        Success criteria: the pasted key's start (never the key) in the sidebar on both pages;
        in the new session, the configured key's start and a sentence saying that a pasted key
        lasts until a reload.
        """
        key = _registered_key(backend)
        app = open_page("main", backend.url).run()
        app.switch_page("views/account.py").run()

        _paste(app, key)
        on_account = _sidebar(app, read_markdown)
        on_process = _sidebar(app.switch_page("views/process.py").run(), read_markdown)
        reloaded = _sidebar(open_page("main", backend.url).run(), read_markdown)

        assert not app.exception
        yours = (
            f"Key in use: {key[:10]}…, yours until this tab reloads, then the configured key again."
        )
        assert on_account == on_process == yours
        assert reloaded == (
            f"Key in use: {backend.public_key[:6]}… from BACKEND_API_KEY. A key you paste or "
            "register on the Account page is used until this tab reloads."
        )
