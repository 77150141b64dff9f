"""`make install` on a Python that refuses installs into itself (PEP 668, as Debian's does).

The interpreter, its virtual environments' pip and uv are fakes (small scripts that record how
they were called): they stand where the outside world stands, so the real Makefile runs against
them in milliseconds, without the network, and shows which commands it chose.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Found upward, as `make test-mutation` runs this from a copy in backend/mutants/.
ROOT = next(p for p in Path(__file__).resolve().parents if (p / ".ci" / "run").is_file())
MAKE = shutil.which("make")

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not on PATH")

# Each fake appends {"tool", "args", "env"} to $FAKE_LOG, one JSON object per line.
RECORD = """\
#!{python}
import json, os, sys
from pathlib import Path

TOOL = {tool!r}
args = sys.argv[1:]
NAMES = ("UV_PYTHON", "UV_PYTHON_DOWNLOADS", "UV_COMPILE_BYTECODE")
env = {{name: os.environ.get(name) for name in NAMES}}
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"tool": TOOL, "args": args, "env": env}}) + "\\n")
"""
SYSTEM_PYTHON = """
if args[:3] == ["-m", "pip", "install"]:
    sys.exit("error: externally-managed-environment")
if args[:2] == ["-m", "venv"]:
    bin_dir = Path(args[-1]) / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "python").write_text(os.environ["FAKE_VENV_PYTHON"])
    (bin_dir / "python").chmod(0o755)
    sys.exit(0)
sys.exit(f"No module named {args[1] if args[:1] == ['-m'] else args}")
"""
VENV_PYTHON = """
if args[:3] != ["-m", "pip", "install"]:
    sys.exit(f"unexpected: {args}")
uv = Path(sys.argv[0]).parent / "uv"
uv.write_text(os.environ["FAKE_UV"])
uv.chmod(0o755)
"""


class FakeTools:
    """A PATH holding only a fake `python3` (and, if asked, a fake `uv`), and their call log."""

    def __init__(self, folder: Path, *, uv_on_path: bool) -> None:
        self.bin = folder / "bin"
        self.bin.mkdir()
        self.log = folder / "calls.jsonl"
        self.log.touch()
        self.tools_dir = folder / "tools"
        self.scripts = {
            "python3": self._script("python3", SYSTEM_PYTHON),
            "venv-python": self._script("venv-python", VENV_PYTHON),
            "uv": self._script("uv", ""),
        }
        self._install(self.bin / "python3", self.scripts["python3"])
        if uv_on_path:
            self._install(self.bin / "uv", self.scripts["uv"])

    def make_install(self) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": str(self.bin),
            "HOME": str(self.bin.parent),
            "FAKE_LOG": str(self.log),
            "FAKE_VENV_PYTHON": self.scripts["venv-python"],
            "FAKE_UV": self.scripts["uv"],
        }
        # TOOLS: the private environment goes to tmp_path, not to the repository's .tools/.
        command = [str(MAKE), "-C", str(ROOT), "install", f"TOOLS={self.tools_dir}"]
        return subprocess.run(  # noqa: S603 - our own argv
            command, env=env, capture_output=True, text=True, check=False, timeout=20
        )

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def _script(self, tool: str, body: str) -> str:
        return RECORD.format(python=sys.executable, tool=tool) + body

    @staticmethod
    def _install(path: Path, script: str) -> None:
        path.write_text(script)
        path.chmod(0o755)


UV_ENV = {"UV_PYTHON": "python3", "UV_PYTHON_DOWNLOADS": "never", "UV_COMPILE_BYTECODE": "1"}


class TestInstall:
    @pytest.mark.covers("DEV-01")
    def test_externally_managed_python_gets_uv_in_a_private_environment(self, tmp_path: Path):
        tools = FakeTools(tmp_path, uv_on_path=False)

        result = tools.make_install()

        calls = tools.calls()
        assert result.returncode == 0, result.stderr
        assert [(call["tool"], call["args"][:3]) for call in calls] == [
            ("python3", ["-m", "venv", "--clear"]),
            ("venv-python", ["-m", "pip", "install"]),
            ("uv", ["sync", "--frozen"]),
        ]
        pip_args = calls[1]["args"]
        assert "--require-hashes" in pip_args
        assert pip_args[-2:] == ["-r", "scripts/uv-requirements.txt"]
        assert calls[2]["env"] == UV_ENV

    @pytest.mark.covers("DEV-01")
    def test_second_install_reuses_the_private_uv(self, tmp_path: Path):
        tools = FakeTools(tmp_path, uv_on_path=False)
        assert tools.make_install().returncode == 0

        result = tools.make_install()

        assert result.returncode == 0, result.stderr
        assert [call["tool"] for call in tools.calls()] == ["python3", "venv-python", "uv", "uv"]

    @pytest.mark.covers("DEV-01")
    def test_uv_on_path_is_used_as_it_is(self, tmp_path: Path):
        tools = FakeTools(tmp_path, uv_on_path=True)

        result = tools.make_install()

        assert result.returncode == 0, result.stderr
        assert [(call["tool"], call["args"]) for call in tools.calls()] == [
            ("uv", ["sync", "--frozen"])
        ]
        assert not tools.tools_dir.exists()
