"""The seam matrix plugin: each covered test's outcome lands in its path's row, its tier's column.

Each test runs a small suite in pytester's sandbox with `-p seam_matrix`, with stand-in tier
fixtures named like the real ones, and reads the printed table and reports/seam-matrix.json.
"""

import json
from typing import Any

import pytest

pytest_plugins = ["pytester"]

INI = """\
[pytest]
markers =
    covers(*paths): critical paths
    tiers(*names): tiers reached without the tier fixtures
asyncio_default_fixture_loop_scope = function
"""

TIER_FIXTURES = """\
import pytest


@pytest.fixture(params=["fakeredis", "redis-server"])
def redis_backend(request):
    if request.param == "redis-server":
        pytest.skip("no real Redis: set TEST_REDIS_URL or put `redis-server` on PATH")
    return request.param


@pytest.fixture(params=["sqlite", "postgresql"])
def database_backend(request):
    return request.param
"""

SUITE = """\
import pytest


@pytest.mark.covers("CACHE-01")
def test_cache(redis_backend):
    pass


@pytest.mark.covers("DB-01")
def test_history(database_backend):
    assert database_backend == "sqlite"


def test_unauthenticated_call():
    '''Refused.

    Covers: AUTH-01
    '''


def test_helper_without_path():
    pass
"""


def run_suite(pytester: pytest.Pytester, suite: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    pytester.makeini(INI)
    pytester.makeconftest(TIER_FIXTURES)
    pytester.makepyfile(test_suite=suite)
    result = pytester.runpytest("-p", "seam_matrix")
    report = pytester.path / "reports" / "seam-matrix.json"
    return result, json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}


class TestSeamMatrixPlugin:
    def test_each_outcome_lands_in_its_tier_column(self, pytester: pytest.Pytester):
        result, report = run_suite(pytester, SUITE)

        cells = {
            path: {tier: cell["text"] for tier, cell in tiers.items()}
            for path, tiers in report["paths"].items()
        }
        assert cells == {
            "AUTH-01": {"default": "✓ 1"},
            "CACHE-01": {"fakeredis": "✓ 1", "redis-server": "skip: no real Redis"},
            "DB-01": {"sqlite": "✓ 1", "postgresql": "✗ 1/1"},
        }
        result.assert_outcomes(passed=4, failed=1, skipped=1)

    def test_table_is_printed_with_na_for_tiers_a_path_never_runs_on(
        self, pytester: pytest.Pytester
    ):
        result, _ = run_suite(pytester, SUITE)

        result.stdout.fnmatch_lines(
            [
                "*= seam matrix: critical paths by backend tier =*",
                "path * default * fakeredis * redis-server * container * sqlite * postgresql",
                "AUTH-01 * ✓ 1 * n/a * n/a * n/a * n/a * n/a",
                "CACHE-01 * n/a * ✓ 1 * skip: no real Redis * n/a * n/a * n/a",
                "DB-01 * n/a * n/a * n/a * n/a * ✓ 1 * ✗ 1/1",
                "proven on a real service: 0 of 3 paths; written to reports/seam-matrix.md, *",
            ]
        )

    def test_failing_tier_setup_counts_as_failure_not_skip(self, pytester: pytest.Pytester):
        # Under REQUIRE_REAL_SERVICES=1 a missing service fails the fixture instead of skipping.
        suite = SUITE.replace(
            "def test_cache(redis_backend):", "def test_cache(redis_backend, missing_service):"
        ) + (
            "\n\n@pytest.fixture\ndef missing_service():\n"
            "    pytest.fail('no Docker API (REQUIRE_REAL_SERVICES=1 requires it)')\n"
        )

        _, report = run_suite(pytester, suite)

        assert report["paths"]["CACHE-01"]["fakeredis"]["text"] == "✗ 1/1"

    def test_markdown_lists_paths_proven_on_real_services(self, pytester: pytest.Pytester):
        run_suite(pytester, SUITE.replace('"sqlite"', '"postgresql"'))

        markdown = (pytester.path / "reports" / "seam-matrix.md").read_text(encoding="utf-8")
        assert "| DB-01 | n/a | n/a | n/a | n/a | ✗ 1/1 | ✓ 1 |" in markdown
        assert "Proven on a real service: DB-01." in markdown
        assert "- no real Redis: set TEST_REDIS_URL or put `redis-server` on PATH" in markdown

    def test_run_without_covered_tests_writes_no_matrix(self, pytester: pytest.Pytester):
        result, report = run_suite(pytester, "def test_plain():\n    pass\n")

        assert report == {}
        assert "seam matrix" not in result.stdout.str()

    def test_tiers_a_conftest_declares_at_collection_are_credited(self, pytester: pytest.Pytester):
        # As frontend/tests/conftest.py does for every test on its Redis-backed backend.
        declaring = TIER_FIXTURES + (
            "\n\n@pytest.hookimpl(tryfirst=True)\n"
            "def pytest_collection_modifyitems(items):\n"
            "    for item in items:\n"
            "        if item.name == 'test_unauthenticated_call':\n"
            "            item.add_marker(pytest.mark.tiers('redis-server'))\n"
        )
        pytester.makeini(INI)
        pytester.makeconftest(declaring)
        pytester.makepyfile(test_suite=SUITE)

        pytester.runpytest("-p", "seam_matrix")

        report = json.loads((pytester.path / "reports" / "seam-matrix.json").read_text())
        assert list(report["paths"]["AUTH-01"]) == ["redis-server"]

    def test_run_is_complete_only_with_every_tier_proven_and_nothing_skipped(
        self, pytester: pytest.Pytester
    ):
        every_tier = (
            "import pytest\n\n\n"
            "@pytest.mark.covers('CACHE-01')\n"
            "@pytest.mark.tiers('fakeredis', 'redis-server', 'container', 'sqlite', 'postgresql')\n"
            "def test_everywhere():\n    pass\n\n\n"
            "@pytest.mark.covers('AUTH-01')\n"
            "def test_default():\n    pass\n"
        )
        _, complete = run_suite(pytester, every_tier)
        _, with_a_skip = run_suite(pytester, every_tier + SUITE.replace("import pytest\n", ""))

        assert complete["complete"] is True
        assert with_a_skip["complete"] is False
