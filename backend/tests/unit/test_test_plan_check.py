"""scripts/test_plan_check.py: the plan and the tests must name each other, docstrings complete.

Each test writes a small repository (a plan and two test files) to tmp_path, runs the checker as
`make test-plan-check` does, and reads its exit code and messages.
"""

import subprocess
import sys
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

# Line numbers the assertions rely on: the method's marker on 9, its `def` on 10.
INTEGRATION_TEMPLATE = '''\
{module_docstring}
import pytest

{module_level}


{class_decorator}
class TestCacheFlow:
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


def integration_test(parts: dict[str, str] = FOUR_PARTS, /, **slots: str) -> str:
    """The integration test file, with some template slots or docstring parts changed."""
    lines = "\n".join(f"        {label}: {text}" for label, text in parts.items())
    return INTEGRATION_TEMPLATE.format(**{**DEFAULT_SLOTS, **slots}, parts=lines)


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
        assert result.stdout.strip() == "TEST_PLAN.md: 2 paths, 2 tests, all covered"

    def test_plan_entry_removed_fails_naming_the_test(self, tmp_path: Path):
        repo = write_repo(tmp_path, plan=PLAN_HEAD + DB_ROW)

        result = run_check(repo)

        assert result.returncode == 1
        assert (
            f"{INTEGRATION_FILE}:9: {TEST_NAME} covers CACHE-01, which TEST_PLAN.md does not list"
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
            f"{INTEGRATION_FILE}:10: {TEST_NAME} docstring lacks {part}"
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
        assert f"{INTEGRATION_FILE}:10: {TEST_NAME} names no critical path" in result.stderr


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
        assert f"{INTEGRATION_FILE}:9: covers() takes string literals, got `PATH`" in (
            result.stderr
        )
