"""The GitHub Actions workflow runs what `.ci/run` runs, so the two cannot drift apart.

`make check-ci` (actionlint) proves the workflow is valid; these tests prove it is the same CI.
"""

import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = next(p for p in Path(__file__).resolve().parents if (p / ".ci" / "run").is_file())
MAKE_TARGET = re.compile(r"\bmake\s+([a-z][\w-]*)")


def ci_run_targets() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    code = [line for line in lines if not line.lstrip().startswith(("#", "echo"))]
    return [target for line in code for target in MAKE_TARGET.findall(line)]


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(
        (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    )
    return loaded


def workflow_steps() -> list[dict[str, Any]]:
    return [step for job in workflow()["jobs"].values() for step in job["steps"]]


class TestWorkflowMatchesCiRun:
    def test_same_make_targets_in_the_same_order(self):
        in_workflow = [
            target
            for step in workflow_steps()
            for target in MAKE_TARGET.findall(step.get("run", ""))
        ]

        assert in_workflow == ci_run_targets()

    def test_ci_run_checks_the_workflow(self):
        assert "check-ci" in ci_run_targets()

    def test_real_services_are_required_with_both_tiers_configured(self):
        (job,) = workflow()["jobs"].values()

        assert job["env"]["REQUIRE_REAL_SERVICES"] == "1"
        assert set(job["services"]) == {"redis", "postgres"}
        assert job["env"]["TEST_REDIS_URL"].startswith("redis://")
        assert job["env"]["TEST_DATABASE_URL"].startswith("postgresql+asyncpg://")

    def test_runs_on_pushes_and_pull_requests(self):
        # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
        triggers = workflow()[True]

        assert {"push", "pull_request"} <= set(triggers)
