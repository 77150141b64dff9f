"""A real browser on the real app: headless Chromium → Streamlit → the backend, over HTTP.

Chromium is Debian's (`make install-e2e`), driven by the playwright package with
executable_path, so nothing is downloaded at run time. Without either, the test skips (and fails
under REQUIRE_REAL_SERVICES=1, as in CI).
"""

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
SCREENSHOT = ROOT / "artifacts" / "e2e" / "process.png"
SCREENSHOT_STREAMING = ROOT / "artifacts" / "e2e" / "process-streaming.png"
STARTUP_SECONDS = 30
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
def streamlit_for(backend, folder: Path) -> Iterator[str]:
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
    with streamlit_for(live_backend, tmp_path_factory.mktemp("streamlit")) as url:
        yield url


@pytest.fixture(scope="module")
def streamlit_on_provider(
    provider_backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Streamlit on the backend whose provider is the loopback server the test steers."""
    with streamlit_for(provider_backend, tmp_path_factory.mktemp("streamlit-provider")) as url:
        yield url


@contextmanager
def browser_page(chromium: Path, profile: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # A persistent context on an empty folder: the fresh --user-data-dir, owned here.
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
    """Seam: Chromium → Streamlit server → ApiClient → the live backend."""

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
        with browser_page(chromium, tmp_path / "profile") as page:
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
        with browser_page(chromium, tmp_path / "profile") as page:
            page.goto(streamlit_on_provider, wait_until="networkidle")
            page.get_by_label("Text", exact=True).fill(TEXT)
            page.get_by_role("button", name="Process").click()
            streamed = page.get_by_test_id("stText")  # st.text: what the page writes literally
            streamed.filter(has_text="The city council approved").wait_for(timeout=15_000)
            page.screenshot(path=str(SCREENSHOT_STREAMING), full_page=True)

            assert "cycling plan" not in streamed.inner_text()  # words not yet sent
            assert page.get_by_text("Result: Summarize").count() == 0
        loopback_provider.answer()
