"""`python -m MODULE ARGS` as a process forked from one that has imported the app already.

A process of ours spends 1.5 to 2.5 s of CPU importing the stack (pydantic-ai, SQLAlchemy,
taskiq, FastAPI, redis) before it does anything; the tests that start job workers and the
frontend's backends would pay it some thirty times a run, on two cores. The standard library's
forkserver (`multiprocessing`, start method "forkserver") imports `PRELOAD` once per test
process, in a server process with no threads and no event loop, and forks each process from
it: a real process of its own (its pid, its signals; SIGKILL kills it) that runs the module as
`python -m` would (`runpy`), with the environment, folder and output given, started in
milliseconds. Gunicorn's `--preload` does the same for the same reason.

What a fork does not prove is the command line's own start (interpreter, imports): the tests
of `make run`, `make run-backend` and `uvicorn --workers` (test_dev_servers.py,
test_worker_processes.py) and one job worker test start the real commands.
"""

import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

# What these processes import before they serve: the app and its command line, and what they
# import lazily on their way to the first request (migrations, uvicorn's protocols, SQLite).
PRELOAD = [
    "app.cli",
    "app.main",
    "app.worker",
    "aiosqlite",
    "alembic.command",
    "alembic.runtime.migration",
    "uvicorn.main",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.websockets_impl",
]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


class ForkedProcess:
    """A forked process with the part of `subprocess.Popen`'s interface the tests use."""

    def __init__(self, process: multiprocessing.process.BaseProcess, args: list[str]) -> None:
        self._process = process
        self.args = args

    @property
    def pid(self) -> int:
        assert self._process.pid is not None  # started in __init__'s caller
        return self._process.pid

    def poll(self) -> int | None:
        """None while it runs; then its exit status, or minus the signal that ended it."""
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        status = self._process.exitcode
        if status is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return status

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run_module(module: str, args: list[str], env: dict[str, str], folder: str, log: str) -> None:
    """In the forked child: what a fresh `python -m MODULE ARGS` would have had, then it."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(folder)  # no developer's .env reaches it
    with open(log, "ab", buffering=0) as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def python_m(
    module: str, args: list[str], *, env: dict[str, str], folder: Path, log: Path
) -> ForkedProcess:
    """Start `python -m MODULE ARGS` from `folder`, its output appended to `log`."""
    process = _CONTEXT.Process(
        target=_run_module, args=(module, args, dict(env), str(folder), str(log)), name=module
    )
    process.start()
    return ForkedProcess(process, [sys.executable, "-m", module, *args])
