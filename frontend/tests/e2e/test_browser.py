"""A real browser on the real app: headless Chromium → Streamlit → the backend, over HTTP.

Chromium is Debian's (`make install-e2e`), driven by the playwright package with
executable_path, so nothing is downloaded at run time. Without either, the test skips (and fails
under REQUIRE_REAL_SERVICES=1, as in CI).
"""

import importlib.util
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fakes.openai_server import OpenAICompatibleServer
from fakes.services import free_port, server_process, unavailable

CHROMIUM = Path("/usr/bin/chromium")
# The closed network refuses the browser's background traffic: ask for none of it.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).parents[3]
APP = ROOT / "frontend" / "streamlit_app" / "main.py"
SCREENSHOTS = ROOT / "artifacts" / "e2e"
SCREENSHOT = SCREENSHOTS / "process.png"
SCREENSHOT_STREAMING = SCREENSHOTS / "process-streaming.png"
SCREENSHOT_JOB_RUNNING = SCREENSHOTS / "batch-job-running.png"
SCREENSHOT_JOB = SCREENSHOTS / "batch-job.png"
STARTUP_SECONDS = 30
SIDEBAR = "[data-testid=stSidebar]"
TEXT = (
    "The city council approved the new cycling plan on Tuesday. Twelve kilometres of "
    "protected lanes will be built by next summer. The lanes will connect the station, the "
    "university and the old harbour. Shop owners worried about parking, but the council "
    "promised two new car parks near the market. Work starts in March."
)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium, checked before any server starts for it."""
    if not CHROMIUM.exists():
        unavailable("no /usr/bin/chromium: run `make install-e2e`")
    if importlib.util.find_spec("playwright") is None:
        unavailable("the playwright package is not installed: run `make install`")
    return CHROMIUM


@contextmanager
def _streamlit(backend, folder: Path) -> Iterator[str]:
    """`streamlit run` on a free port, configured as `make run` configures it, on `backend`."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),  # a fresh ~/.streamlit
        "BACKEND_URL": backend.url,
        "BACKEND_API_KEY": backend.public_key,
        "BACKEND_OPERATOR_KEY": backend.operator_key,
    }
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless=true",
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
    ]
    url = f"http://127.0.0.1:{port}"
    with server_process(
        command,
        health_url=f"{url}/_stcore/health",
        folder=folder,
        env=env,
        startup_seconds=STARTUP_SECONDS,
    ):
        yield url


@pytest.fixture(scope="module")
def streamlit_url(live_backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Streamlit server for the module's tests."""
    with _streamlit(live_backend, tmp_path_factory.mktemp("streamlit")) as url:
        yield url


@pytest.fixture(scope="module")
def streamlit_on_provider(
    live_provider_backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Streamlit on the backend whose provider is the loopback server the test steers."""
    with _streamlit(live_provider_backend, tmp_path_factory.mktemp("streamlit-provider")) as url:
        yield url


@pytest.fixture
def fresh_streamlit_url(live_backend, tmp_path: Path) -> Iterator[str]:
    """A Streamlit server no browser has opened yet: its first session is the test's."""
    folder = tmp_path / "streamlit"
    folder.mkdir()
    with _streamlit(live_backend, folder) as url:
        yield url


@dataclass
class Beacon:
    """An HTTP server that counts every request: the address a hostile image points to."""

    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def beacon() -> Iterator[Beacon]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Beacon(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def _browser(chromium: Path, profile: Path) -> Iterator[Any]:
    """A page in headless Debian Chromium, on a fresh profile owned by the test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(chromium),
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.mark.e2e
class TestBrowser:
    """Seam: Chromium → Streamlit server → ApiClient → the live backend.

    Paths: STREAM-09, UI-07, UI-08, UI-09, UI-10
    Real: Debian's Chromium (headless), `streamlit run` and uvicorn subprocesses, the whole
    backend with SQLite, this worker's redis-server and the local model; a loopback HTTP server
    (the beacon) that would see any fetch a pasted text's Markdown caused; for the job, the
    backend without Redis and its embedded job worker, as `make run` starts it.
    Faked: for the streaming and job tests, the AI provider (the loopback OpenAI-compatible
    server, held mid-answer, or slowed); otherwise nothing: the local model is the provider.
    """

    @pytest.mark.covers("UI-07")
    def test_submitted_text_shows_its_summary(
        self, chromium: Path, backend, streamlit_url: str, tmp_path: Path
    ):
        """A person's path through the real UI: open the app, paste a text, get a summary.

        Integration scope: Chromium rendering the Streamlit app, its websocket to the server,
        the page's HTTP call to the backend, and back to the screen.
        Business impact: proves what AppTest cannot: the page loads in a browser and a click
        shows a result (front-end assets, websocket, navigation).
        Test strategy: headless Debian Chromium via playwright; fill the Text box, click
        Process, wait for the result; save a screenshot under artifacts/e2e/.
        Success criteria: the result heading and a sentence of the text on screen, one
        request in the backend's history, and the screenshot written.
        """
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.unlink(missing_ok=True)
        with _browser(chromium, tmp_path / "profile") as page:
            page.goto(streamlit_url, wait_until="networkidle")
            page.get_by_label("Text", exact=True).fill(TEXT)
            page.get_by_role("button", name="Process").click()
            page.get_by_text("Result: Summarize").wait_for(timeout=15_000)
            page.get_by_text("The city council approved the new cycling plan").last.wait_for()
            page.screenshot(path=str(SCREENSHOT), full_page=True)

        with backend.client() as client:
            assert client.get("/v1/history").json()["total"] == 1
        assert SCREENSHOT.stat().st_size > 10_000

    @pytest.mark.covers("STREAM-09")
    def test_summary_shows_while_it_is_being_written(
        self,
        chromium: Path,
        provider_backend,
        loopback_provider: OpenAICompatibleServer,
        streamlit_on_provider: str,
        tmp_path: Path,
    ):
        """The first words of a summary are on screen while the model is still writing it.

        Integration scope: Chromium → Streamlit → the API client's event reader → a backend
        streaming from the loopback OpenAI-compatible server, which the test holds mid-answer.
        Business impact: the point of streaming is what a person sees before the answer ends;
        only a real browser shows that the page repaints as events arrive.
        Test strategy: the provider pauses after six chunks (until its client leaves); submit
        a text and wait for its first words; screenshot.
        Success criteria: the first words are on screen while no result heading is (the
        stream has not ended); the screenshot is written.
        """
        loopback_provider.pause_after(6)
        SCREENSHOT_STREAMING.parent.mkdir(parents=True, exist_ok=True)
        with _browser(chromium, tmp_path / "profile") as page:
            page.goto(streamlit_on_provider, wait_until="networkidle")
            page.get_by_label("Text", exact=True).fill(TEXT)
            page.get_by_role("button", name="Process").click()
            streamed = page.get_by_test_id("stText")  # st.text: what the page writes literally
            streamed.filter(has_text="The city council approved").wait_for(timeout=15_000)
            page.screenshot(path=str(SCREENSHOT_STREAMING), full_page=True)

            assert "cycling plan" not in streamed.inner_text()  # words not yet sent
            assert page.get_by_text("Result: Summarize").count() == 0

    @pytest.mark.covers("UI-08")
    def test_markdown_in_a_text_fetches_nothing_and_reads_as_typed(
        self, chromium: Path, backend, streamlit_url: str, beacon: Beacon, tmp_path: Path
    ):
        """A text's Markdown image, heading, link and tag reach the screen as characters.

        Integration scope: Chromium rendering the Process result (the model quoting the
        text) and the Account page's welcome (a display name), both from the live backend.
        Business impact: a Markdown image in a model's answer is fetched by the browser the
        moment it renders: a prompt injection's way to send data to any server.
        Test strategy: a local HTTP server counts requests; process a text whose image points
        at it, then register with a display name of the same kind; screenshots of both.
        Success criteria: the literal Markdown visible on both pages, no heading or link made
        of it, and not one request reached the counting server.
        """
        image = f"![x]({beacon.url}/beacon.png)"
        text = f"{image} Pixel sentence here. # A heading [a link](http://example.com) <b>b</b>."
        name = f"{image} # Ada [home](http://example.com) <b>b</b>"
        with _browser(chromium, tmp_path / "profile") as page:
            page.goto(streamlit_url, wait_until="networkidle")
            page.get_by_label("Text", exact=True).fill(text)
            page.get_by_role("button", name="Process").click()
            page.get_by_text("Result: Summarize").wait_for(timeout=15_000)
            page.get_by_text(f"{image} Pixel sentence here.").last.wait_for()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(SCREENSHOTS / "literal-process.png"), full_page=True)
            assert page.locator("h1, h2, h3").all_inner_texts() == [
                "Process a text",
                "Result: Summarize",
            ]
            assert page.get_by_role("link", name="a link").count() == 0

            page.get_by_role("link", name="Account").click()
            page.get_by_label("E-mail").fill("ada@example.com")
            page.get_by_label("Display name").fill(name)
            page.get_by_role("button", name="Create account and key").click()
            page.get_by_text(f"Welcome, {name}: your key is ready.").wait_for(timeout=15_000)
            # The sidebar comes last in a run: once it names the new key, the page is complete.
            page.locator(SIDEBAR).get_by_text(", yours until this tab reloads").wait_for()
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(SCREENSHOTS / "literal-account.png"), full_page=True)
            assert page.get_by_role("link", name="home").count() == 0

        assert beacon.requests == []

    @pytest.mark.covers("UI-07")
    def test_first_page_after_a_start_shows_no_deploy_button(
        self, chromium: Path, backend, fresh_streamlit_url: str, tmp_path: Path
    ):
        """The first visitor after a start sees the app, not Streamlit's developer toolbar.

        Integration scope: `streamlit run` of main.py with its .streamlit/config.toml, and
        Chromium opening the server's first session.
        Business impact: "Deploy" and the developer menu invite visitors to act on the app
        instead of with it.
        Test strategy: a Streamlit server no browser has opened; open the app once and wait for
        the Process page.
        Success criteria: no Deploy button and no main menu on the page.
        """
        with _browser(chromium, tmp_path / "profile") as page:
            page.goto(fresh_streamlit_url, wait_until="networkidle")
            page.get_by_text("Process a text").wait_for(timeout=15_000)

            deploy = page.get_by_test_id("stAppDeployButton").count()
            menu = page.get_by_test_id("stMainMenu").count()

        assert (deploy, menu) == (0, 0)

    @pytest.mark.covers("UI-09")
    def test_reload_says_the_session_is_back_on_the_configured_key(
        self, chromium: Path, backend, streamlit_url: str, tmp_path: Path
    ):
        """A pasted key serves until a reload; after it, the sidebar names the configured key.

        Integration scope: Chromium → the Account page's paste form → GET /v1/auth/me → the
        session's key shown in the sidebar; then a browser reload, which starts a new session.
        Business impact: a reload must never leave people unsure whose account they act as.
        Test strategy: register through the API, paste the key on the Account page, reload.
        Success criteria: before the reload the sidebar shows the key's start as yours; after,
        the configured key's start and that a pasted key lasts until a reload; never the key.
        """
        with backend.client(api_key=None) as client:
            body = {"email": "ada@example.com", "display_name": "Ada"}
            key = client.post("/v1/auth/register", json=body).json()["api_key"]
        with _browser(chromium, tmp_path / "profile") as page:
            page.goto(f"{streamlit_url}/account", wait_until="networkidle")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Use this key").click()
            page.locator(SIDEBAR).get_by_text(f"{key[:10]}…, yours").wait_for(timeout=15_000)
            before = page.locator(SIDEBAR).inner_text()

            page.reload(wait_until="networkidle")
            page.locator(SIDEBAR).get_by_text("from BACKEND_API_KEY").wait_for(timeout=15_000)
            after = page.locator(SIDEBAR).inner_text()
            page.screenshot(path=str(SCREENSHOTS / "reloaded-account.png"), full_page=True)

        assert key not in before + after
        assert f"Key in use: {backend.public_key[:6]}… from BACKEND_API_KEY." in after
        assert (
            "A key you paste or register on the Account page is used until this tab reloads."
            in after
        )

    @pytest.mark.covers("UI-10")
    def test_uploaded_file_runs_as_a_job_to_its_results_and_survives_a_reload(
        self,
        chromium: Path,
        provider_backend,
        loopback_provider: OpenAICompatibleServer,
        streamlit_on_provider: str,
        tmp_path: Path,
    ):
        """A person's path through a job: upload, watch the bar, get the table, reload.

        Integration scope: Chromium → the file upload → Streamlit → POST /v1/jobs → the
        embedded worker → the page's polling fragment (a timer in the browser) → the results.
        Business impact: only a browser shows that the bar moves by itself, with no click, and
        that the address keeps the job across a reload.
        Test strategy: the provider takes 0.3 s an answer (four at once), so 30 texts take
        about 2 s; upload them, run, wait for the bar, then for the results; reload; take
        screenshots of the running and the finished job.
        Success criteria: the bar while the job runs, "The job finished" with 30 done and the
        table after it, the job's id in the address, the same outcome after the reload, and
        the backend's own count of 30 texts done.
        """
        loopback_provider.take(0.3)
        upload = tmp_path / "tickets.txt"
        upload.write_text("\n".join(f"Ticket {n}: the lift is broken again." for n in range(30)))
        with _browser(chromium, tmp_path / "profile") as page:
            page.goto(f"{streamlit_on_provider}/batch", wait_until="networkidle")
            page.locator("input[type=file]").set_input_files(upload)
            page.get_by_text("30 text(s) ready, to run as a job.").wait_for(timeout=15_000)
            page.get_by_role("button", name="Run batch").click()
            page.get_by_test_id("stProgress").wait_for(timeout=15_000)
            page.screenshot(path=str(SCREENSHOT_JOB_RUNNING), full_page=True)
            finished = page.get_by_text("30 done, 0 failed.")
            finished.wait_for(timeout=30_000)
            # The app scrolls inside its own container: bring the table into the picture.
            page.get_by_test_id("stDataFrame").scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOT_JOB), full_page=True)
            address = page.url

            page.reload(wait_until="networkidle")
            finished.wait_for(timeout=15_000)

        with provider_backend.client() as client:
            (job,) = client.get("/v1/jobs").json()["items"]
        assert address.endswith(f"/batch?job={job['job_id']}")
        assert (job["status"], job["done"]) == ("completed", 30)
        assert SCREENSHOT_JOB.stat().st_size > 10_000
