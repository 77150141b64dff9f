"""How pytest-xdist hands the tests to its workers: longest first, and the tests that share a
server a worker starts once go to one worker together.

A pytest plugin (`-p worker_schedule`). Two workers finish together only if neither is left
with a long test at the end, so each worker orders its tests by their durations in the last
run (kept in pytest's cache, `.pytest_cache`), longest first; a test without one (new, or a
first run) goes first. And some tests share a server that a worker starts once, a second or
more of CPU: spread over both workers, each would start it. `ONE_WORKER` names them, and the
scheduler gives each group to one worker as one unit, before the single tests.
"""

import os
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]  # no hints

DURATIONS = "llm-starter/test-durations"

# Node id prefix → the server its tests share (started once per worker that runs one of them).
ONE_WORKER = {
    "frontend/tests/": "the backends of frontend/tests/conftest.py, a uvicorn process each",
    "backend/tests/integration/test_worker_processes.py": "`uvicorn --workers 2`, per module",
}


class SharedServerScheduling(LoadScopeScheduling):  # type: ignore[misc]  # untyped base
    """xdist's `load`, each test a unit of its own, but a group of `ONE_WORKER` one unit.

    LoadScopeScheduling hands out the largest units first, then the others in the workers'
    collection order (longest first, see `pytest_collection_modifyitems`).
    """

    def _split_scope(self, nodeid: str) -> str:
        return next((prefix for prefix in ONE_WORKER if nodeid.startswith(prefix)), nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    """Our scheduler for xdist's default distribution (`-n N`); another `--dist` is kept."""
    if config.getoption("dist") != "load":
        return None
    return SharedServerScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker, longest first by the last run's durations (identical in every worker, as
    xdist requires); a serial run keeps the files' order."""
    cache = getattr(config, "cache", None)  # None with -p no:cacheprovider
    if "PYTEST_XDIST_WORKER" not in os.environ or cache is None:
        return
    durations: dict[str, float] = cache.get(DURATIONS, {})
    items.sort(key=lambda item: -durations.get(item.nodeid, float("inf")))


class _Recorder:
    """Each test's setup + call + teardown, as the controller (or a serial run) sees it."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        cache = getattr(session.config, "cache", None)
        if cache is not None and self.durations:
            cache.set(DURATIONS, {**cache.get(DURATIONS, {}), **self.durations})


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # a worker's reports reach the controller
        config.pluginmanager.register(_Recorder(), "worker_schedule_recorder")
