"""Run commands side by side (`make run`: the backend and the frontend) and stop them together.

Each command runs in a process group of its own, so a signal meant for `make run` (Ctrl-C, a
SIGTERM to its process or to its process group, a closed terminal) reaches this launcher alone,
which passes it on once to every process of every command: uvicorn's reloader and its worker,
Streamlit. A shell's `trap 'kill 0'` did the same by signalling its own group, itself included,
so each SIGTERM re-ran the trap: thousands of Streamlit "Stopping..." lines and a crash.

When one command ends on its own, the others are stopped too, and its exit status is ours.
A command still running GRACE_SECONDS after the stop is killed, and so is anything a command
leaves behind. Stopped by a signal, the launcher ends by that same signal, as the shell and
`make` expect of a program they interrupted.

Usage: python scripts/run_together.py "COMMAND ARGS..." "COMMAND ARGS..."
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time

GRACE_SECONDS = 5.0
# What a stop signal becomes for the commands: a closed terminal (SIGHUP) stops them as SIGTERM.
FORWARDED = {
    signal.SIGINT: signal.SIGINT,
    signal.SIGTERM: signal.SIGTERM,
    signal.SIGHUP: signal.SIGTERM,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commands", nargs="+", help="a command line, quoted as one argument")
    args = parser.parse_args(argv)

    # Signals arrive as bytes on a pipe, so one blocking read waits for a stop signal or for a
    # command's end (SIGCHLD) alike, and nothing but Python's own bookkeeping runs in a handler.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for signum in (*FORWARDED, signal.SIGCHLD):
        signal.signal(signum, lambda *_: None)

    children = {
        command: subprocess.Popen(shlex.split(command), process_group=0)  # noqa: S603 - make's lines
        for command in args.commands
    }
    reason = _wait_for_stop(wake_read, list(children.values()))
    if isinstance(reason, signal.Signals):
        _stop(children, FORWARDED[reason])
        signal.signal(reason, signal.SIG_DFL)
        os.kill(os.getpid(), reason)
        return 128 + reason  # the shell's status for it, had the signal not ended us already
    code = reason.returncode  # read before the others are stopped
    _stop(children, signal.SIGTERM)
    return code if code >= 0 else 128 - code


def _wait_for_stop(
    wake_read: int, children: list[subprocess.Popen[bytes]]
) -> signal.Signals | subprocess.Popen[bytes]:
    """The stop signal received, or the command that ended first."""
    while True:
        for child in children:
            if child.poll() is not None:
                return child
        for signum in os.read(wake_read, 64):
            if signum in FORWARDED:
                return signal.Signals(signum)


def _stop(children: dict[str, subprocess.Popen[bytes]], signum: signal.Signals) -> None:
    """Signal every group, wait for every command, kill one that outlives the grace period."""
    for child in children.values():
        _signal_group(child.pid, signum)
    deadline = time.monotonic() + GRACE_SECONDS
    for line, child in children.items():
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(
                f"{line!r} still ran {GRACE_SECONDS:.0f} s after {signum.name}: killed",
                file=sys.stderr,
            )
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()
    # A process a command left behind, its parent gone, would run on unseen: none may.
    for child in children.values():
        _signal_group(child.pid, signal.SIGKILL)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # that group has ended already
        os.killpg(pgid, signum)


if __name__ == "__main__":
    sys.exit(main())
