"""Job worker processes forked from one that has imported the app already.

`python -m app.cli worker` spends 1.5 to 2.5 s of CPU importing the stack (pydantic-ai,
SQLAlchemy, taskiq, redis) before it takes an item; a test that starts two of them on a 2-core
machine waits that long, and the suite pays it some twenty times. The standard library's
forkserver (`multiprocessing`, start method "forkserver") imports `PRELOAD` once per test
process, in a server process with no threads and no event loop, then forks each worker from
it: a real process of its own (its pid, its signals, SIGKILL kills it), running the same
`app.cli.main(["worker"])` a deployment runs, started in milliseconds. Gunicorn's `--preload`
does the same for the same reason.

What the fork does not prove is the command line's own start-up (interpreter, `-m`, imports):
one job test still starts its worker as the command (`Workers.start(command=True)`).
"""

import multiprocessing
import os
import sys
from multiprocessing.context import ForkServerProcess
from pathlib import Path

PRELOAD = ["app.cli", "app.worker"]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


def _run_cli(argv: list[str], env: dict[str, str], folder: str, log: str) -> None:
    """In the forked child: the environment, folder and output a fresh process would have
    had, then the command line's own entry point."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(folder)  # no developer's .env reaches it
    with open(log, "ab", buffering=0) as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    import app.cli  # preloaded: already in sys.modules

    try:
        app.cli.main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def fork_cli(argv: list[str], env: dict[str, str], folder: Path, log: Path) -> ForkServerProcess:
    """Start `python -m app.cli ARGV` as a process forked from the preloaded server."""
    process = _CONTEXT.Process(
        target=_run_cli, args=(argv, env, str(folder), str(log)), name=f"app.cli {argv[0]}"
    )
    process.start()
    return process
