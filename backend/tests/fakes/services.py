"""Real services for the tests: Redis server processes, the Docker API, server subprocesses.

Where one is missing, `unavailable(reason)` skips the test with that reason, or fails it under
REQUIRE_REAL_SERVICES=1, where a missing service is an error in CI.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REQUIRE_REAL_SERVICES = os.environ.get("REQUIRE_REAL_SERVICES") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail when the run promised real services."""
    if REQUIRE_REAL_SERVICES:
        pytest.fail(f"{reason} (REQUIRE_REAL_SERVICES=1 requires it)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.01)
    return False


class RedisServerProcess:
    """A private `redis-server` on a free loopback port that a test may stop and start again."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_port(self.port):
            self.stop()
            raise RuntimeError(f"redis-server did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def close(self) -> None:
        """Stop for good and remove the server's folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def docker_answers() -> bool:
    """Whether a Docker API (Docker itself, or podman's) answers `GET /_ping` at DOCKER_HOST.

    A raw request rather than the docker SDK: the SDK leaves its socket for the garbage
    collector, and the ResourceWarning would fail whichever test runs at that moment.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            sock = socket.socket()
            address = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return sock.recv(64).split(b" ")[1:2] == [b"200"]
    except (OSError, ValueError):
        return False


@contextmanager
def server_process(
    command: list[str],
    *,
    health_url: str,
    folder: Path,
    env: dict[str, str],
    startup_seconds: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess, run from `folder` (so no developer's `.env` reaches it) with its
    output in `folder/server.log`, yielded once `health_url` answers 200 and stopped after."""
    log = folder / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + startup_seconds
        while not _answers(health_url):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(
                    f"{command[:4]} did not start; its log:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
