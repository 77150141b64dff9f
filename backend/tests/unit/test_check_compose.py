"""`make check-compose`: Docker Compose's own validation, hadolint, COPY sources vs .dockerignore.

Each test copies the compose file, the Dockerfiles and what they COPY to tmp_path, breaks one
thing, and runs the make target on the copy with the real, pinned tools, as CI does.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

# The repository: the first parent holding the compose file (mutmut runs tests from a copy).
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "docker-compose.yml").is_file())
# What the compose file builds from: the Dockerfiles and every COPY source.
CONTEXT = [
    "docker-compose.yml",
    ".dockerignore",
    "pyproject.toml",
    "uv.lock",
    "backend/Dockerfile",
    "backend/pyproject.toml",
    "backend/app",
    "frontend/Dockerfile",
    "frontend/pyproject.toml",
    "frontend/streamlit_app",
    "shared/pyproject.toml",
    "shared/shared",
]


def check_compose(*projects: str | Path) -> subprocess.CompletedProcess[str]:
    listed = " ".join(str(project) for project in projects)
    return subprocess.run(  # noqa: S603 - our own make target, arguments from the test
        ["make", "--no-print-directory", "-C", str(ROOT), "check-compose"]
        + ([f"COMPOSE_PROJECTS={listed}"] if listed else []),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """A copy of the compose project that the test may break; returns its compose file."""
    ignore = shutil.ignore_patterns("__pycache__")
    for name in CONTEXT:
        source, target = ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copyfile(source, target)
    return tmp_path / "docker-compose.yml"


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


class TestCheckCompose:
    def test_repository_projects_pass(self):
        result = check_compose()

        assert result.returncode == 0, result.stderr
        assert "docker-compose.yml:docker-compose.dev.yml: valid" in result.stdout

    def test_unbroken_copy_passes(self, stack: Path):
        result = check_compose(stack)

        assert result.returncode == 0, result.stderr

    @pytest.mark.parametrize(
        ("old", "new", "complaint"),
        [
            ("start_period: 20s", "start_period: 20 seconds", "start_period"),
            ("      redis:\n        condition:", "      cache:\n        condition:", "cache"),
            ('    ports:\n      - "8000', '    replica: 2\n    ports:\n      - "8000', "replica"),
            ("${ENVIRONMENT:-development}", "${ENVIRONMENT:?set ENVIRONMENT}", "set ENVIRONMENT"),
        ],
        ids=["bad-duration", "undefined-dependency", "unknown-key", "required-variable-unset"],
    )
    def test_broken_compose_file_fails_with_composes_message(
        self, stack: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, complaint: str
    ):
        monkeypatch.delenv("ENVIRONMENT", raising=False)
        replace(stack, old, new)

        result = check_compose(stack)

        assert result.returncode != 0
        assert complaint in result.stderr

    def test_dockerfile_lint_error_fails_naming_the_rule(self, stack: Path):
        dockerfile = stack.parent / "backend/Dockerfile"
        replace(dockerfile, "WORKDIR /app\n", "WORKDIR /app\nRUN cd /tmp\n")

        result = check_compose(stack)

        assert result.returncode != 0
        assert "backend/Dockerfile" in result.stderr
        assert "DL3003" in result.stderr  # "use WORKDIR to switch to a directory"

    def test_copy_of_a_path_the_dockerignore_excludes_fails(self, stack: Path):
        (stack.parent / "backend/tests").mkdir()
        (stack.parent / "backend/tests/test_x.py").write_text("", encoding="utf-8")
        (stack.parent / ".dockerignore").write_text("backend/tests\n", encoding="utf-8")
        replace(
            stack.parent / "backend/Dockerfile",
            "COPY backend/app backend/app\n",
            "COPY backend/app backend/app\nCOPY backend/tests backend/tests\n",
        )

        result = check_compose(stack)

        assert result.returncode != 0
        assert "'backend/tests' is excluded by .dockerignore" in result.stderr

    def test_copy_of_a_missing_path_fails(self, stack: Path):
        shutil.rmtree(stack.parent / "frontend/streamlit_app")

        result = check_compose(stack)

        assert result.returncode != 0
        assert "'frontend/streamlit_app' is not in the context" in result.stderr
