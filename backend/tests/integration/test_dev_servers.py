"""`make run` and `make run-backend` as a newcomer meets them: real servers, real signals.

Each test runs the Makefile target in a process group of its own, on free loopback ports, with
SQLite in tmp_path. Every process it starts inherits an environment variable with a tag unique
to the test, so the test finds them all in /proc (Linux) whatever their parent, including any a
stop would leave behind, and kills whatever is left when it ends.
"""

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fakes.services import free_port

# Found upward, as `make test-mutation` runs this from a copy in backend/mutants/.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / ".ci" / "run").is_file())
MAKE = shutil.which("make")
TAG_VARIABLE = "DEV_SERVERS_TEST_TAG"
STARTUP_SECONDS = 60  # both servers on a busy 2-core machine take up to ~20 s
STOP_SECONDS = 15  # the launcher's grace period is 5 s
BAD_SETTING_SECONDS = 30
# A process whose parent has just ended may end a moment after `make`: multiprocessing's resource
# tracker, which uvicorn's reloader starts, ends when it reads the end of its pipe.
SETTLE_SECONDS = 2
# A clean stop prints a few lines per server; the shell-trap loop printed thousands.
MAX_STOP_LINES = 20

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="finds the servers' processes in /proc"),
    pytest.mark.skipif(MAKE is None, reason="make is not on PATH"),
]


@dataclass
class MakeTarget:
    process: "subprocess.Popen[bytes]"
    output: Path
    tag: str

    def lines(self) -> list[str]:
        return self.output.read_text(errors="replace").splitlines()

    def processes_left(self) -> list[str]:
        """`pid state threads=N command` of every live process the target started (zombies
        are not live): a process that will not end is told apart by its state and threads."""
        marker = f"{TAG_VARIABLE}={self.tag}".encode()
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environment = (entry / "environ").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                threads = sum(1 for _ in (entry / "task").iterdir())
            except OSError:  # ended meanwhile, or not ours to read
                continue
            if marker in environment and state != "Z":
                left.append(f"{entry.name} {state} threads={threads} {command}")
        return left

    def processes_left_after_settling(self) -> list[str]:
        """`processes_left()`, polled until none is left or SETTLE_SECONDS have passed."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while (left := self.processes_left()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left


@contextmanager
def make_target(tmp_path: Path, target: str, **variables: str) -> Iterator[MakeTarget]:
    """`make TARGET` from the repository root, its output in a file; every process it started
    is killed on the way out, so a failing test leaves no server behind."""
    tag = uuid.uuid4().hex
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(("MAKE", "MFLAGS"))
    }
    environment |= {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        TAG_VARIABLE: tag,
        **variables,
    }
    output = tmp_path / f"make-{target}.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - our own argv
            [str(MAKE), "--no-print-directory", "-C", str(ROOT), target],
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    running = MakeTarget(process, output, tag)
    try:
        yield running
    finally:
        for line in running.processes_left():
            os.kill(int(line.split()[0]), signal.SIGKILL)
        process.kill()
        process.wait()


def wait_until_serving(running: MakeTarget, *urls: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    # One client for every poll: each new one builds a TLS context (~20 ms of CPU).
    with httpx.Client(timeout=2) as client:
        while not all(_answers(client, url) for url in urls):
            if running.process.poll() is not None or time.monotonic() > deadline:
                output = "\n".join(running.lines()[-40:])
                pytest.fail(f"make run did not serve; its output:\n{output}")
            time.sleep(0.2)


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False


def listening_addresses(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses of the sockets listening on `port`, from the kernel's own tables."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, port_hex = local.partition(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            # The kernel writes each 32-bit word of the address in host (little-endian) order.
            words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8)]
            found.add(ipaddress.ip_address(b"".join(words)))
    return found


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[MakeTarget, int, int]]:
    """`make run` on free ports, serving both: (the target, backend port, frontend port)."""
    backend_port, frontend_port = free_port(), free_port()
    with make_target(
        tmp_path, "run", BACKEND_PORT=str(backend_port), FRONTEND_PORT=str(frontend_port)
    ) as running:
        wait_until_serving(
            running,
            f"http://127.0.0.1:{backend_port}/v1/health",
            f"http://127.0.0.1:{frontend_port}/_stcore/health",
        )
        yield running, backend_port, frontend_port


class TestMakeRun:
    """Seam: make run → scripts/run_together.py → uvicorn's reloader and worker, and Streamlit.

    Paths: DEV-02, DEV-03
    Real: `make run` itself in a process group of its own: scripts/run_together.py, uvicorn's
    reloader and worker, Streamlit, on free loopback ports with SQLite in tmp_path; the signals.
    Faked: nothing.
    """

    @pytest.mark.timeout(STARTUP_SECONDS + STOP_SECONDS + 30)
    @pytest.mark.covers("DEV-02", "DEV-03")
    @pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
    def test_serves_on_loopback_then_a_stop_signal_ends_every_process_quietly(
        self, make_run: tuple[MakeTarget, int, int], stop: signal.Signals
    ):
        """A newcomer's session: both servers on loopback only, then SIGTERM (a process
        manager, `kill -TERM -PGID`) or SIGINT (Ctrl-C) ends it all.

        Integration scope: make → the launcher → each server's own process group, and the
        servers' listening sockets.
        Business impact: the frontend holds the operator key, so on a network address anyone
        nearby could use it; a stop that loops, floods the terminal or leaves a server holding
        its port makes the next `make run` fail and the newcomer hunt for processes.
        Test strategy: start `make run`, wait until both servers answer, read the kernel's table
        of listening sockets, then signal make's process group as a terminal or a process
        manager does, and look for the test's processes.
        Success criteria: both ports bound to loopback addresses only; make ends within
        STOP_SECONDS; no process of the test is left SETTLE_SECONDS later; the stop prints a
        few lines and kills nothing (each server stopped gracefully).
        """
        running, backend_port, frontend_port = make_run
        bound = {port: listening_addresses(port) for port in (backend_port, frontend_port)}
        lines_before = len(running.lines())

        os.killpg(running.process.pid, stop)

        try:
            running.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"make run still ran {STOP_SECONDS} s after {stop.name}: {running.processes_left()}"
            )
        stop_lines = running.lines()[lines_before:]
        assert all(addresses for addresses in bound.values()), bound
        assert all(address.is_loopback for addresses in bound.values() for address in addresses)
        assert running.processes_left_after_settling() == []
        assert len(stop_lines) <= MAX_STOP_LINES, stop_lines[:MAX_STOP_LINES]
        assert not [line for line in stop_lines if "killed" in line], stop_lines


class TestBadSettings:
    """Seam: environment → app.cli (check, serve) → the Makefile targets' exit status.

    Paths: DEV-04
    Real: `make run-backend` and `make run` with a bad setting in the environment: app.cli and
    make's exit status.
    Faked: nothing.
    """

    @pytest.mark.timeout(BAD_SETTING_SECONDS + 30)
    @pytest.mark.covers("DEV-04")
    @pytest.mark.parametrize(
        ("target", "variables", "expected"),
        [
            pytest.param(
                "run-backend",
                {"DATABASE_URL": "nonsense"},
                "Invalid configuration: DATABASE_URL: must start with sqlite+aiosqlite:// or "
                "postgresql+asyncpg://",
                id="run-backend-DATABASE_URL",
            ),
            pytest.param(
                "run",
                {"ENVIRONMENT": "production"},
                "Invalid configuration: API_KEYS: production needs real public keys",
                id="run-production",
            ),
        ],
    )
    def test_bad_setting_prints_one_line_naming_it_and_exits(
        self, tmp_path: Path, target: str, variables: dict[str, str], expected: str
    ):
        """A bad setting stops the start with one line naming the variable, no traceback.

        Integration scope: Makefile target → app.cli → load_settings, before uvicorn's
        reloader or Streamlit starts.
        Business impact: the README promises that a bad value names itself; a 37-line traceback
        with a reloader left running hides it and looks like a crash of the project.
        Test strategy: run the target as a user would, with one bad variable and free ports.
        Success criteria: a non-zero exit within BAD_SETTING_SECONDS; the output is that one
        line besides make's own (the command it echoes, its `***` line), nothing started.
        """
        ports = {"BACKEND_PORT": str(free_port()), "FRONTEND_PORT": str(free_port())}

        with make_target(tmp_path, target, **ports, **variables) as running:
            try:
                status = running.process.wait(timeout=BAD_SETTING_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(f"make {target} still ran {BAD_SETTING_SECONDS} s after a bad setting")
            lines = running.lines()
            left = running.processes_left_after_settling()

        assert status != 0
        ours = [line for line in lines if not line.startswith(("make: *** ", ".venv/bin/"))]
        assert ours == [expected], lines
        assert left == []


class TestMakeRunBackendJsonLogs:
    """Seam: make run-backend → app.cli serve --log-config → uvicorn's reloader and worker →
    the app's log handler.

    Paths: OBS-04
    Real: `make run-backend` with LOG_FORMAT=json on a free loopback port, SQLite in tmp_path:
    uvicorn's reloader and worker, the app's log configuration, a real request over HTTP.
    Faked: nothing.
    """

    @pytest.mark.timeout(STARTUP_SECONDS + STOP_SECONDS + 30)
    @pytest.mark.covers("OBS-04")
    def test_every_line_is_json_and_a_request_lines_share_its_id(self, tmp_path: Path):
        """With LOG_FORMAT=json, what `make run-backend` writes is JSON from the first line.

        Integration scope: the Makefile's backend command (no echo) → app.cli serve, which hands
        `--log-config` to uvicorn → the reloader's and the worker's records, and a request's.
        Business impact: a log shipper parses every line; one plain line from make or from
        uvicorn's reloader (started before any app exists) breaks the stream or is dropped.
        Test strategy: start the target with LOG_FORMAT=json on a free port, send one request
        with a known X-Request-ID, stop it with SIGTERM, parse what it wrote before the stop.
        Success criteria: every line up to the stop is a JSON object; uvicorn's start-up lines
        are among them; the request's access line carries its id, route and status.
        """
        port = free_port()
        request_id = f"make-json-{uuid.uuid4().hex[:8]}"

        with make_target(
            tmp_path, "run-backend", BACKEND_PORT=str(port), LOG_FORMAT="json"
        ) as running:
            wait_until_serving(running, f"http://127.0.0.1:{port}/healthz")
            httpx.get(f"http://127.0.0.1:{port}/v1/health", headers={"X-Request-ID": request_id})
            # The access line is written as the response ends: poll for it, then stop.
            deadline = time.monotonic() + STOP_SECONDS
            while request_id not in running.output.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            lines = running.lines()
            os.killpg(running.process.pid, signal.SIGTERM)
            try:
                running.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(
                    f"make run-backend still ran {STOP_SECONDS} s after SIGTERM: "
                    f"{running.processes_left()}; it wrote last: {running.lines()[-3:]}"
                )

        records = [json.loads(line) for line in lines]  # fails on any line that is not JSON
        assert any(record["logger"] == "uvicorn.error" for record in records), lines
        access = [record for record in records if record.get("request_id") == request_id]
        assert [(r["event"], r["route"], r["status"]) for r in access] == [
            ("request", "/v1/health", 200)
        ]
