"""Real services for the tests: Redis server processes, the Docker API, server subprocesses;
private servers a fault test may stop, freeze or kill (`RedisServerProcess`, `PostgresCluster`).

Where one is missing, `unavailable(reason)` skips the test with that reason, or fails it under
REQUIRE_REAL_SERVICES=1, where a missing service is an error in CI.
"""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from preloaded import ForkedProcess, python_m

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


def port_no_one_else_gets() -> int:
    """A free port below the OS's ephemeral range (32768 and up by default), which it never
    hands out by itself: no other process can take it while a test holds its server down."""
    for port in random.sample(range(20_000, 32_768), 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port between 20000 and 32767")


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


@contextmanager
def frozen(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """The process stopped (SIGSTOP) inside the block: its sockets still accept connections
    and take bytes, but nothing answers, as with a hung server or a silent network."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def postgres_bindir() -> Path | None:
    """Where `initdb` and `pg_ctl` are: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    if found := shutil.which("initdb"):
        return Path(found).parent
    versions = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    newest = max(versions, key=lambda path: int(path.parent.parent.name), default=None)
    return None if newest is None else newest.parent


class PostgresCluster:
    """A private PostgreSQL cluster on a loopback port, which a test may hold in recovery,
    promote, stop or kill, without touching anyone else's server.

    PostgreSQL refuses to run as root: as root, every command runs as the `postgres` user.
    """

    def __init__(self, bindir: Path, folder: Path, port: int) -> None:
        self.bindir = bindir
        self.folder = folder  # the socket goes here; the cluster itself in folder/data
        self.port = port

    @classmethod
    def initialize(cls, bindir: Path, port: int) -> "PostgresCluster":
        cluster = cls(bindir, _folder_for_postgres(), port)
        cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust")
        return cluster

    def copy(self, port: int) -> "PostgresCluster":
        """A copy of this (stopped) cluster, in a folder of its own: cheaper than initdb."""
        copy = PostgresCluster(self.bindir, _folder_for_postgres(), port)
        _as_postgres(["cp", "-a", str(self.data), str(copy.data)])
        return copy

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def start(self, *, in_recovery: bool = False) -> None:
        """Start and wait until it runs. `in_recovery`: a standby with no primary and no hot
        standby, refusing every connection with 57P03 until `promote()`."""
        options = [
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
            "-c fsync=off -c full_page_writes=off",  # a test's data need not survive power loss
        ]
        if in_recovery:
            _as_postgres(["touch", str(self.data / "standby.signal")])
            options.append("-c hot_standby=off")
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", " ".join(options), "start")

    def promote(self) -> None:
        """Out of recovery: from now on it accepts connections and writes."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def kill(self) -> None:
        """SIGKILL to the postmaster, as the OOM killer does, and wait until it is gone (its
        backends notice and exit), so that `start()` may follow at once."""
        pid = self.postmaster_pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postmaster {pid} survived SIGKILL for 10 s")
            time.sleep(0.01)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def close(self) -> None:
        """Stop for good and remove the cluster's folder."""
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        _as_postgres([str(self.bindir / program), *args], check=check)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _folder_for_postgres() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="postgres-test-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    return folder


def _as_postgres(command: list[str], *, check: bool = True) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if check and completed.returncode != 0:
        raise RuntimeError(f"{command} failed: {completed.stdout}{completed.stderr}")


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
    preloaded: bool = False,
) -> Iterator[subprocess.Popen[bytes] | ForkedProcess]:
    """A server subprocess, run from `folder` (so no developer's `.env` reaches it) with its
    output in `folder/server.log`, yielded once `health_url` answers 200 and stopped after.

    `preloaded`: `command` is `[python, "-m", module, ...]`, forked from the process that
    imported the app once (`preloaded`) instead of executed: the same server, without seconds
    of imports.
    """
    log = folder / "server.log"
    process: subprocess.Popen[bytes] | ForkedProcess
    if preloaded:
        assert command[:2] == [sys.executable, "-m"], command
        process = python_m(command[2], command[3:], env=env, folder=folder, log=log)
    else:
        with log.open("wb") as output:
            process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT
            )
    try:
        deadline = time.monotonic() + startup_seconds
        # One client for every poll: each new one builds a TLS context (~20 ms of CPU).
        with httpx.Client(timeout=1) as client:
            while not _answers(client, health_url):
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


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False
