"""uvicorn as a subprocess on loopback: started, timed to its first answer, sampled, stopped."""

import http.client
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_START_TIMEOUT_SECONDS = 30.0


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    startup_seconds: float
    log: Path  # what uvicorn and the app wrote

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def request(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        status, raw, _ = self.exchange(method, path, body, headers)
        return status, raw

    def exchange(
        self, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        """One request's status, body and response headers (names in lower case)."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            answered = {name.lower(): value for name, value in response.getheaders()}
            return response.status, response.read(), answered
        finally:
            connection.close()


@contextmanager
def serve(
    factory: str, *, workers: int, probe_path: str, env: dict[str, str], scratch: Path
) -> Iterator[Server]:
    """`uvicorn --factory` on a free port; start-up is timed from spawn to the first 200 on
    `probe_path`. Its output goes to a log file in `scratch`, shown if it fails to start."""
    port = _free_port()
    command = [
        sys.executable, "-m", "uvicorn", factory, "--factory",
        "--app-dir", str(REPO),
        "--host", HOST, "--port", str(port),
        "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    log = scratch / f"{factory.rpartition(':')[2]}-{workers}w.log"
    with log.open("wb") as log_file:
        started = time.perf_counter()
        # cwd is a scratch folder so that a developer's .env cannot change what is measured.
        process = subprocess.Popen(  # noqa: S603 - our own command line
            command, cwd=scratch, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_answering(process, port, probe_path, log)
            yield Server(process, port, time.perf_counter() - started, log)
        finally:
            _stop(process)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_answering(
    process: subprocess.Popen[bytes], port: int, path: str, log: Path
) -> None:
    deadline = time.perf_counter() + _START_TIMEOUT_SECONDS
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{log.read_text()}")
        connection = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass  # not listening yet
        finally:
            connection.close()
        time.sleep(0.005)
    raise RuntimeError(
        f"uvicorn did not answer within {_START_TIMEOUT_SECONDS:g}s:\n{log.read_text()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown, workers included
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
