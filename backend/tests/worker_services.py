"""The real Redis servers of a test run: one set per test process, started once, never shared.

A pytest plugin (`-p worker_services`), so that the backend and the frontend tests see the same
fixtures. Under pytest-xdist each worker is a process with its own pytest session, and each one
gets its own Redis server and its own Redis container: a test may flush, pause or kill its Redis
without reaching another worker's tests. Isolation per worker, not serialization.

- `redis-server` tier: a private `redis-server` per process (about 30 ms to start) when the
  binary is on PATH. TEST_REDIS_URL, a Redis database the tests may wipe, is used instead by a
  serial run (`-n 0`): one database cannot be flushed by two processes at once.
- `container` tier: a testcontainers Redis per process, started in the background as soon as
  collection shows this process will run container tests, so its start-up (a second or two)
  overlaps other tests.

A missing service skips the tests that need it, with the reason, or fails them under
REQUIRE_REAL_SERVICES=1 (see `fakes.services.unavailable`).
"""

import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import TYPE_CHECKING

import pytest
from fakes.services import RedisServerProcess, docker_answers, unavailable

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

# This process's name in the run: gw0, gw1... under xdist, `main` in a serial run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
PARALLEL = "PYTEST_XDIST_WORKER" in os.environ
# Databases of a private redis-server: the frontend's backend process and the two-worker server
# run alongside the tests that flush the tier database, so each keeps to a database of its own.
TIER_DB, FRONTEND_DB, WORKERS_DB = 0, 1, 2


class Services:
    """This process's Redis server and Redis container, each started on first need."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._server: RedisServerProcess | None = None
        self._container: Future[tuple[DockerContainer, str]] | None = None
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-container")

    def redis_server_url(self, db: int = TIER_DB) -> str:
        """A real Redis for this process; skips (or fails) with the reason when there is none.

        `db` keeps the users of a private server apart; TEST_REDIS_URL names one database, which
        every caller of a serial run shares (each flushes it first).
        """
        given = os.environ.get("TEST_REDIS_URL")
        if given and not PARALLEL:
            return given
        if self._server is None:
            binary = shutil.which("redis-server")
            if binary is None:
                unavailable(
                    "no real Redis: put `redis-server` on PATH (one is started per test process)"
                    if not given
                    else "no real Redis: TEST_REDIS_URL cannot be flushed by parallel workers;"
                    " put `redis-server` on PATH (one per worker) or run serially (-n 0)"
                )
            assert binary is not None
            server = RedisServerProcess(binary)
            server.start()
            self._stack.callback(server.close)
            self._server = server
        return f"redis://127.0.0.1:{self._server.port}/{db}"

    def start_container(self) -> None:
        """Begin starting this process's Redis container in the background (idempotent)."""
        if self._container is None and docker_answers():
            # Imported here, in the main thread: importing requests (through docker) in the
            # background raced the tests' warning filters, which pytest swaps in and out around
            # each test for the whole process, and a DependencyWarning requests silences for
            # itself became an error that failed the container's start (in two runs of four).
            import testcontainers.community.redis  # noqa: F401

            self._container = self._starter.submit(self._run_container)

    def container_redis_url(self) -> str:
        """This process's Redis container; skips (or fails) when no Docker API answers."""
        self.start_container()
        if self._container is None:
            unavailable("no Docker API: start Docker, or run `make container-engine` (podman)")
        assert self._container is not None
        return self._container.result()[1]

    @staticmethod
    def _run_container() -> tuple["DockerContainer", str]:
        """The started container and its URL (each lookup of host and port asks the engine)."""
        from testcontainers.community.redis import RedisContainer

        container = RedisContainer(os.environ.get("TEST_REDIS_IMAGE", "redis:7")).start()
        host = container.get_container_host_ip()
        return container, f"redis://{host}:{container.get_exposed_port(6379)}/0"

    def close(self) -> None:
        self._starter.shutdown(wait=True)  # a container still starting is waited for
        if self._container is not None and self._container.exception() is None:
            self._container.result()[0].stop()
        self._stack.close()


_SERVICES = pytest.StashKey[Services]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SERVICES] = Services()


def pytest_unconfigure(config: pytest.Config) -> None:
    config.stash[_SERVICES].close()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the container while other tests run, if any test of this process will need it."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "container" in (params.get("redis_backend"), params.get("optional_redis")):
            config.stash[_SERVICES].start_container()
            return


@pytest.fixture(scope="session")
def services(pytestconfig: pytest.Config) -> Services:
    """This process's real Redis services (see the module docstring)."""
    return pytestconfig.stash[_SERVICES]
