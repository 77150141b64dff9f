"""scripts/run_together.py, the launcher behind `make run`, with small shell commands as servers.

The real servers are in backend/tests/integration/test_dev_servers.py; these cases are the
launcher's own contract, in well under a second each.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The repository: found upward, as `make test-mutation` runs this from a copy in backend/mutants/.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / ".ci" / "run").is_file())
SCRIPT = ROOT / "scripts" / "run_together.py"
DEADLINE_SECONDS = 10


def launch(*commands: str, cwd: Path) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, str(SCRIPT), *commands], cwd=cwd)  # noqa: S603


def wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path.name} never written"
        time.sleep(0.01)
    return path.read_text().strip()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class TestRunTogether:
    @pytest.mark.covers("DEV-02")
    def test_a_command_that_ends_stops_the_others_and_passes_on_its_status(self, tmp_path: Path):
        server = "sh -c 'echo $$ > server.pid; exec sleep 60'"
        failing = "sh -c 'while [ ! -s server.pid ]; do sleep 0.01; done; exit 3'"

        launcher = launch(server, failing, cwd=tmp_path)
        launcher.wait(timeout=DEADLINE_SECONDS)

        assert launcher.returncode == 3
        assert not is_running(int(wait_for_file(tmp_path / "server.pid")))

    @pytest.mark.covers("DEV-02")
    def test_sigterm_stops_each_command_gracefully_and_ends_the_launcher_by_sigterm(
        self, tmp_path: Path
    ):
        server = (
            'sh -c \'trap "echo TERM >> signals.log; exit 0" TERM;'
            " echo $$ > server.pid; while :; do sleep 0.05; done'"
        )
        launcher = launch(server, cwd=tmp_path)
        wait_for_file(tmp_path / "server.pid")

        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=DEADLINE_SECONDS)

        assert launcher.returncode == -signal.SIGTERM
        assert (tmp_path / "signals.log").read_text().splitlines() == ["TERM"]
