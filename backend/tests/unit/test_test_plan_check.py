"""scripts/test_plan_check.py: the plan and the tests must name each other, docstrings complete.

Each test writes a small repository (a plan and two test files) to tmp_path, runs the checker as
`make test-plan-check` does, and reads its exit code and messages.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "test_plan_check.py"
INTEGRATION_FILE = "backend/tests/integration/test_cache_flow.py"
TEST_NAME = "TestCacheFlow.test_second_call_is_served_from_cache"

PLAN_HEAD = """\
# Test plan

## CACHE: Response cache
Chain: route → cache → Redis
Backends: fakeredis, redis-server, container

| Path | Critical path |
|---|---|
"""
CACHE_ROW = "| CACHE-01 | a miss is computed once, then served from the cache |\n"  # line 9
DB_ROW = "| DB-01 | a history row survives the round trip |\n"
PLAN = PLAN_HEAD + CACHE_ROW + DB_ROW

FOUR_PARTS = {
    "Integration scope": "route → cache → Redis.",
    "Business impact": "repeated questions cost nothing.",
    "Test strategy": "send the same text twice.",
    "Success criteria": "one provider call, two equal answers.",
}
MARK = 'pytest.mark.covers("CACHE-01")'
COVERS = f"@{MARK}"

CLASS_PARTS = {
    "Seam": "route → cache → Redis.",
    "Paths": "CACHE-01",
    "Real": "the app, the cache, Redis.",
    "Faked": "the AI provider.",
}

# Line numbers the assertions rely on: the class on 8, the method's marker on 16, its `def` on 17.
CLASS_LINE, MARK_LINE, DEF_LINE = 8, 16, 17
INTEGRATION_TEMPLATE = '''\
{module_docstring}
import pytest

{module_level}


{class_decorator}
class TestCacheFlow:
    """{class_parts}
    """

    {method_decorator}
    async def test_second_call_is_served_from_cache(self):
        """The provider is asked once for two identical requests.

{parts}
        """
'''

UNIT_TEST = '''\
def test_row_round_trip():
    """Covers: DB-01"""
'''


DEFAULT_SLOTS = {
    "module_docstring": '"""Route → cache → Redis."""',
    "module_level": "",
    "class_decorator": "",
    "method_decorator": COVERS,
}


def integration_test(
    parts: dict[str, str] = FOUR_PARTS, class_parts: dict[str, str] = CLASS_PARTS, /, **slots: str
) -> str:
    """The integration test file, with some template slots or docstring parts changed.

    The class docstring always spans six lines (a part left out leaves an empty line), so that
    the test's line numbers stay put.
    """
    lines = "\n".join(f"        {label}: {text}" for label, text in parts.items())
    class_lines = [f"{label}: {text}" for label, text in class_parts.items()]
    class_lines += [""] * (len(CLASS_PARTS) - len(class_lines))
    class_doc = class_lines[0] + "\n\n" + "\n".join(f"    {line}" for line in class_lines[1:])
    return INTEGRATION_TEMPLATE.format(
        **{**DEFAULT_SLOTS, **slots}, parts=lines, class_parts=class_doc
    )


def write_repo(root: Path, *, plan: str = PLAN, integration: str | None = None) -> Path:
    files = {
        "TEST_PLAN.md": plan,
        INTEGRATION_FILE: integration if integration is not None else integration_test(),
        "backend/tests/unit/test_history.py": UNIT_TEST,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own script, no shell
        [sys.executable, str(SCRIPT), "--root", str(root)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )


class TestPlanAgainstTests:
    def test_consistent_repo_passes_with_summary(self, tmp_path: Path):
        repo = write_repo(tmp_path)

        result = run_check(repo)

        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == (
            "TEST_PLAN.md: 2 paths, 2 tests, all covered; "
            "no seam matrix yet: Backends: lines not compared (run make test, every tier)"
        )

    def test_plan_entry_removed_fails_naming_the_test(self, tmp_path: Path):
        repo = write_repo(tmp_path, plan=PLAN_HEAD + DB_ROW)

        result = run_check(repo)

        assert result.returncode == 1
        assert (
            f"{INTEGRATION_FILE}:{MARK_LINE}: {TEST_NAME} covers CACHE-01, "
            "which TEST_PLAN.md does not list"
        ) in result.stderr.splitlines()

    def test_path_without_test_fails_naming_the_plan_line(self, tmp_path: Path):
        repo = write_repo(tmp_path, plan=PLAN + "| CACHE-02 | a stale entry is served |\n")

        result = run_check(repo)

        assert result.returncode == 1
        assert "TEST_PLAN.md:11: CACHE-02 has no test" in result.stderr

    def test_duplicate_or_malformed_plan_ids_fail(self, tmp_path: Path):
        repo = write_repo(tmp_path, plan=PLAN + CACHE_ROW + "| cache-3 | lower case |\n")

        result = run_check(repo)

        assert result.returncode == 1
        assert "TEST_PLAN.md:11: CACHE-01 is listed twice (first at line 9)" in result.stderr
        assert "TEST_PLAN.md:12: 'cache-3' is not a path ID like CACHE-01" in result.stderr

    def test_missing_plan_fails(self, tmp_path: Path):
        repo = write_repo(tmp_path)
        (repo / "TEST_PLAN.md").unlink()

        result = run_check(repo)

        assert result.returncode == 1
        assert "TEST_PLAN.md: not found" in result.stderr


class TestIntegrationDocstrings:
    @pytest.mark.parametrize("part", list(FOUR_PARTS))
    def test_docstring_part_removed_fails_naming_the_part(self, tmp_path: Path, part: str):
        parts = {label: text for label, text in FOUR_PARTS.items() if label != part}
        repo = write_repo(tmp_path, integration=integration_test(parts))

        result = run_check(repo)

        assert result.returncode == 1
        assert result.stderr.splitlines()[0] == (
            f"{INTEGRATION_FILE}:{DEF_LINE}: {TEST_NAME} docstring lacks {part}"
        )

    def test_part_label_without_text_fails(self, tmp_path: Path):
        parts = {**FOUR_PARTS, "Test strategy": ""}
        repo = write_repo(tmp_path, integration=integration_test(parts))

        result = run_check(repo)

        assert result.returncode == 1
        assert "docstring lacks Test strategy" in result.stderr

    def test_integration_test_naming_no_path_fails(self, tmp_path: Path):
        repo = write_repo(
            tmp_path,
            plan=PLAN_HEAD + DB_ROW,
            integration=integration_test(method_decorator=""),
        )

        result = run_check(repo)

        assert result.returncode == 1
        assert f"{INTEGRATION_FILE}:{DEF_LINE}: {TEST_NAME} names no critical path" in result.stderr


class TestCitationForms:
    @pytest.mark.parametrize(
        "form",
        [
            pytest.param({"class_decorator": COVERS}, id="class-decorator"),
            pytest.param({"module_level": f"pytestmark = [{MARK}]"}, id="module-pytestmark"),
            pytest.param(
                {
                    "module_level": "covers = pytest.mark.covers",
                    "method_decorator": '@covers("CACHE-01")',
                },
                id="alias",
            ),
            pytest.param(
                {"module_docstring": '"""Route → cache → Redis.\n\nCovers: CACHE-01\n"""'},
                id="module-docstring-tag",
            ),
            pytest.param(
                {
                    "method_decorator": (
                        f'@pytest.mark.parametrize("n", [pytest.param(1, marks={MARK})])'
                    )
                },
                id="parametrize-case",
            ),
        ],
    )
    def test_marker_form_names_the_path(self, tmp_path: Path, form: dict[str, str]):
        repo = write_repo(
            tmp_path, integration=integration_test(**{"method_decorator": "", **form})
        )

        result = run_check(repo)

        assert result.returncode == 0, result.stderr

    def test_non_literal_marker_argument_fails(self, tmp_path: Path):
        integration = integration_test(
            module_level='PATH = "CACHE-01"', method_decorator="@pytest.mark.covers(PATH)"
        )
        repo = write_repo(tmp_path, integration=integration)

        result = run_check(repo)

        assert result.returncode == 1
        assert f"{INTEGRATION_FILE}:{MARK_LINE}: covers() takes string literals, got `PATH`" in (
            result.stderr
        )


class TestClassDocstrings:
    @pytest.mark.parametrize("part", list(CLASS_PARTS))
    def test_class_part_removed_fails_naming_the_part(self, tmp_path: Path, part: str):
        class_parts = {label: text for label, text in CLASS_PARTS.items() if label != part}
        repo = write_repo(tmp_path, integration=integration_test(FOUR_PARTS, class_parts))

        result = run_check(repo)

        assert result.returncode == 1
        assert result.stderr.splitlines()[0] == (
            f"{INTEGRATION_FILE}:{CLASS_LINE}: TestCacheFlow docstring lacks {part}"
        )

    def test_paths_differing_from_what_the_tests_cover_fail_naming_both_sides(self, tmp_path: Path):
        class_parts = {**CLASS_PARTS, "Paths": "DB-01"}
        repo = write_repo(tmp_path, integration=integration_test(FOUR_PARTS, class_parts))

        result = run_check(repo)

        assert result.returncode == 1
        assert result.stderr.splitlines()[0] == (
            f"{INTEGRATION_FILE}:{CLASS_LINE}: TestCacheFlow docstring Paths: missing CACHE-01; "
            "not covered by its tests DB-01"
        )


def write_matrix(repo: Path, cells: dict[str, dict[str, str]], *, complete: bool = True) -> None:
    """A seam matrix as `make test` leaves it, newer than the plan and the tests."""
    counts = {"passed": {"passed": 1, "failed": 0}, "failed": {"passed": 0, "failed": 1}}
    document = {
        "complete": complete,
        "paths": {
            path: {tier: counts[outcome] for tier, outcome in tiers.items()}
            for path, tiers in cells.items()
        },
    }
    matrix = repo / "reports" / "seam-matrix.json"
    matrix.parent.mkdir(exist_ok=True)
    matrix.write_text(json.dumps(document), encoding="utf-8")
    newest = max(path.stat().st_mtime for path in repo.rglob("*.py"))
    os.utime(matrix, (newest + 10, newest + 10))


ALL_REDIS_TIERS = {"fakeredis": "passed", "redis-server": "passed", "container": "passed"}


class TestBackendsAgainstTheLastRun:
    """The plan's CACHE seam says `Backends: fakeredis, redis-server, container` (line 5)."""

    def test_tiers_proven_as_listed_pass(self, tmp_path: Path):
        repo = write_repo(tmp_path)
        write_matrix(repo, {"CACHE-01": ALL_REDIS_TIERS})

        result = run_check(repo)

        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(
            "Backends: lines of 1 seams match the last run's seam matrix"
        )

    def test_listed_tier_not_proven_fails_at_the_backends_line(self, tmp_path: Path):
        repo = write_repo(tmp_path)
        write_matrix(repo, {"CACHE-01": {**ALL_REDIS_TIERS, "container": "failed"}})

        result = run_check(repo)

        assert result.returncode == 1
        assert result.stderr.splitlines()[0] == (
            "TEST_PLAN.md:5: CACHE Backends: container, fakeredis, redis-server, but the last "
            "run proved its paths on fakeredis, redis-server"
        )

    def test_tier_proven_but_not_listed_fails(self, tmp_path: Path):
        repo = write_repo(tmp_path)
        write_matrix(repo, {"CACHE-01": {**ALL_REDIS_TIERS, "default": "passed"}})

        result = run_check(repo)

        assert result.returncode == 1
        assert "the last run proved its paths on container, default, fakeredis" in result.stderr

    def test_run_without_every_tier_is_not_compared(self, tmp_path: Path):
        repo = write_repo(tmp_path)
        write_matrix(repo, {"CACHE-01": {"fakeredis": "passed"}}, complete=False)

        result = run_check(repo)

        assert result.returncode == 0, result.stderr
        assert "last run did not have every tier: Backends: lines not compared" in result.stdout

    def test_matrix_older_than_the_tests_is_not_compared(self, tmp_path: Path):
        repo = write_repo(tmp_path)
        write_matrix(repo, {"CACHE-01": {"fakeredis": "passed"}})
        (repo / INTEGRATION_FILE).touch()
        os.utime(repo / INTEGRATION_FILE, (time.time() + 3600, time.time() + 3600))

        result = run_check(repo)

        assert result.returncode == 0, result.stderr
        assert "seam matrix older than the plan or the tests" in result.stdout
