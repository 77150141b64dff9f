"""Seam matrix: every critical path against every backend tier, as this run proved it.

A pytest plugin (`-p seam_matrix`). A test that names paths (`@pytest.mark.covers(...)` or a
`Covers: ID, ID` docstring line) adds its outcome to one cell per path and per tier it ran on:
its tier fixtures' parameters (`redis_backend`, `optional_redis`, `database_backend`) and the
tiers it declares with `@pytest.mark.tiers(...)` (a marker a conftest may add at collection), or
`default` (in-memory cache, SQLite file) when it has none. Whenever such a test ran, the matrix
is printed at the end of the run and written to reports/seam-matrix.md and
reports/seam-matrix.json (git-ignored). The JSON says whether the run was `complete`: every
tier proven somewhere and nothing skipped, which is when `make test-plan-check` compares the
plan's "Backends:" lines with it.

Cells: `✓ 3` all passed; `✗ 1/3` one of three failed or errored (a missing service under
REQUIRE_REAL_SERVICES=1 is a setup error, hence a failure); `skip: <reason>` when every test
skipped; `n/a` when no test of the path runs on that tier.

Paths and tiers travel in each report's `user_properties`, so under pytest-xdist the controller
builds the matrix from what the workers send.
"""

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

COLUMNS = ("default", "fakeredis", "redis-server", "container", "sqlite", "postgresql")
REAL_SERVICES = ("redis-server", "container", "postgresql")
TIER_FIXTURES = ("redis_backend", "optional_redis", "database_backend")
COVERS_TAG = re.compile(r"^\s*Covers:(.*)$", re.IGNORECASE | re.MULTILINE)
PATHS_PROPERTY, TIERS_PROPERTY = "covers", "tiers"
REASON_WIDTH = 24


@dataclass
class Outcome:
    """One test item: the paths it names, the tiers it ran on, how it ended."""

    nodeid: str
    paths: list[str]
    tiers: list[str]
    status: str = "passed"  # passed | failed | skipped
    reason: str = ""


@dataclass
class Cell:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        if outcome.status == "failed":
            self.failed += 1
        elif outcome.status == "skipped":
            self.skipped += 1
            self.skip_reasons[outcome.reason] = self.skip_reasons.get(outcome.reason, 0) + 1
        else:
            self.passed += 1

    @property
    def proven(self) -> bool:
        return self.passed > 0 and self.failed == 0

    def text(self) -> str:
        total = self.passed + self.failed + self.skipped
        if self.failed:
            return f"✗ {self.failed}/{total}"
        if self.passed:
            return f"✓ {self.passed}" + (f" ({self.skipped} skip)" if self.skipped else "")
        return f"skip: {short_reason(max(self.skip_reasons, key=self.skip_reasons.__getitem__))}"


Matrix = dict[str, dict[str, Cell]]


def short_reason(reason: str) -> str:
    """The reason's first clause: "no real Redis: set TEST_REDIS_URL..." -> "no real Redis"."""
    clause = reason.split(": ")[0].strip()
    return clause if len(clause) <= REASON_WIDTH else clause[: REASON_WIDTH - 1] + "…"


def build_matrix(outcomes: Iterable[Outcome]) -> Matrix:
    matrix: Matrix = {}
    for outcome in outcomes:
        for path in outcome.paths:
            for tier in outcome.tiers:
                matrix.setdefault(path, {}).setdefault(tier, Cell()).add(outcome)
    return dict(sorted(matrix.items()))


def rows(matrix: Matrix) -> list[list[str]]:
    return [["path", *COLUMNS]] + [
        [path, *(cells[c].text() if c in cells else "n/a" for c in COLUMNS)]
        for path, cells in matrix.items()
    ]


def proven_on_real_services(matrix: Matrix) -> list[str]:
    return [
        p
        for p, cells in matrix.items()
        if any(cells[c].proven for c in REAL_SERVICES if c in cells)
    ]


def render_text(matrix: Matrix) -> list[str]:
    table = rows(matrix)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]


def render_markdown(matrix: Matrix, generated_at: str) -> str:
    header, *body = rows(matrix)
    lines = [
        "# Seam matrix",
        "",
        f"Critical paths (TEST_PLAN.md) against backend tiers, test run of {generated_at}.",
        "`default` = in-memory cache and SQLite; real services: "
        + ", ".join(f"`{c}`" for c in REAL_SERVICES)
        + ".",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in body),
        "",
        f"Proven on a real service: {', '.join(proven_on_real_services(matrix)) or 'none'}.",
    ]
    reasons = sorted(
        {r for cells in matrix.values() for cell in cells.values() for r in cell.skip_reasons}
    )
    if reasons:
        lines += ["", "Skip reasons:", *(f"- {reason}" for reason in reasons)]
    return "\n".join(lines) + "\n"


def is_complete(matrix: Matrix) -> bool:
    """Every tier proven by some path, and no cell skipped: the run had every service."""
    cells = [(tier, cell) for by_tier in matrix.values() for tier, cell in by_tier.items()]
    proven = {tier for tier, cell in cells if cell.proven}
    return proven >= set(COLUMNS) and not any(cell.skipped for _, cell in cells)


def render_json(matrix: Matrix, outcomes: Iterable[Outcome], generated_at: str) -> str:
    document = {
        "generated_at": generated_at,
        "complete": is_complete(matrix),
        "columns": COLUMNS,
        "real_services": REAL_SERVICES,
        "paths": {
            path: {column: {**asdict(cell), "text": cell.text()} for column, cell in cells.items()}
            for path, cells in matrix.items()
        },
        "tests": [asdict(outcome) for outcome in outcomes],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- pytest hooks --------------------------------------------------------------------------------


def covered_paths(item: pytest.Item) -> list[str]:
    paths = [str(arg) for marker in item.iter_markers("covers") for arg in marker.args]
    for owner in (
        getattr(item, "function", None),
        getattr(item, "cls", None),
        getattr(item, "module", None),
    ):
        for match in COVERS_TAG.finditer(getattr(owner, "__doc__", None) or ""):
            paths += [p for p in re.split(r"[,\s]+", match.group(1)) if p]
    return sorted(set(paths))


def tiers_of(item: pytest.Item) -> list[str]:
    """The tier fixtures' parameters, plus tiers a test declares with `@pytest.mark.tiers(...)`
    when it reaches a real service another way (a redis-server it starts itself, say)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    tiers = {str(params[name]) for name in TIER_FIXTURES if name in params}
    for marker in item.iter_markers("tiers"):
        tiers.update(str(tier) for tier in marker.args)
    return sorted(tiers, key=lambda t: COLUMNS.index(t) if t in COLUMNS else len(COLUMNS)) or [
        "default"
    ]


@pytest.hookimpl(trylast=True)  # after every conftest has added its markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if paths := covered_paths(item):
            item.user_properties.append((PATHS_PROPERTY, " ".join(paths)))
            item.user_properties.append((TIERS_PROPERTY, " ".join(tiers_of(item))))


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # an xdist worker: its controller reports
        config.pluginmanager.register(SeamMatrixReporter(config), "seam-matrix-reporter")


def skip_reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"xfail: {report.wasxfail}"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple | list) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SeamMatrixReporter:
    def __init__(self, config: pytest.Config) -> None:
        self.reports_dir = config.rootpath / "reports"
        self.outcomes: dict[str, Outcome] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        if PATHS_PROPERTY not in properties:
            return
        outcome = self.outcomes.setdefault(
            report.nodeid,
            Outcome(
                report.nodeid,
                str(properties[PATHS_PROPERTY]).split(),
                str(properties[TIERS_PROPERTY]).split(),
            ),
        )
        if report.failed:
            outcome.status, outcome.reason = "failed", ""
        elif report.skipped and outcome.status != "failed":
            outcome.status, outcome.reason = "skipped", skip_reason(report)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.outcomes:
            return
        matrix = build_matrix(self.outcomes.values())
        generated_at = datetime.now(UTC).isoformat(timespec="seconds")
        written = self.write(
            {
                "seam-matrix.md": render_markdown(matrix, generated_at),
                "seam-matrix.json": render_json(matrix, self.outcomes.values(), generated_at),
            }
        )
        terminalreporter.write_sep("=", "seam matrix: critical paths by backend tier")
        for line in render_text(matrix):
            terminalreporter.write_line(line)
        proven = proven_on_real_services(matrix)
        terminalreporter.write_line(
            f"proven on a real service: {len(proven)} of {len(matrix)} paths; written to "
            + ", ".join(written)
        )

    def write(self, files: dict[str, str]) -> list[str]:
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (self.reports_dir / name).write_text(text, encoding="utf-8")
        return [str(Path(self.reports_dir.name) / name) for name in files]
