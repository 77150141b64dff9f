"""Check that TEST_PLAN.md and the tests keep each other honest.

Fails (exit 1, one `file:line: problem` per line) when
- a critical path in the plan has no test that names it;
- a test names a path the plan does not list (or an ID that is not shaped like `CACHE-01`);
- an integration test names no path, or its docstring lacks one of the four parts
  (`Integration scope:`, `Business impact:`, `Test strategy:`, `Success criteria:`, each at the
  start of a line and followed by text);
- an integration test class's docstring lacks `Seam:`, `Paths:`, `Real:` or `Faked:` (the seam,
  the plan's paths it validates, what is real and what is faked at its boundaries), or its
  `Paths:` differ from the paths its tests name;
- the last run's seam matrix (reports/seam-matrix.json) is `complete` (it had every tier, as in
  CI) and newer than the plan and the tests, and a seam's `Backends:` line differs from the tiers
  on which that run proved the seam's paths.

Critical paths are the first column of every plan table whose header starts with `| Path |`.
A test names a path with `@pytest.mark.covers("CACHE-01", ...)` (on the test, its class, or a
module/class `pytestmark`; `covers = pytest.mark.covers` aliases count) or with a docstring line
`Covers: CACHE-01, CACHE-02` (in the test's, its class's or its module's docstring).

Tests are read with `ast`, never imported: the check needs no app, no services, no database.

Usage: python scripts/test_plan_check.py [--root DIR] [--plan FILE] [--matrix FILE]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PATH_ID = re.compile(r"[A-Z]+-\d{2}")
PLAN_TABLE_HEADER = re.compile(r"^\|\s*Path\s*\|")
COVERS_TAG = re.compile(r"^\s*Covers:(.*)$", re.IGNORECASE | re.MULTILINE)
TEST_DIRS = ("backend/tests", "frontend/tests")
# Tests here cross a seam (or talk to the live backend), so their docstrings carry the four parts
# and their classes' docstrings the four class parts.
FOUR_PART_DIRS = ("backend/tests/integration", "frontend/tests")
FOUR_PARTS = ("Integration scope", "Business impact", "Test strategy", "Success criteria")
CLASS_PARTS = ("Seam", "Paths", "Real", "Faked")
SECTION_HEADING = re.compile(r"^##\s+([A-Z]+):")
BACKENDS_LINE = re.compile(r"^Backends:(.*)$")
MATRIX = "reports/seam-matrix.json"


@dataclass
class Citation:
    path_id: str
    line: int


@dataclass
class FoundTest:
    file: Path
    line: int
    name: str
    docstring: str | None
    citations: list[Citation] = field(default_factory=list)


@dataclass
class FoundClass:
    file: Path
    line: int
    name: str
    docstring: str | None
    tests: list[FoundTest] = field(default_factory=list)


@dataclass
class Seam:
    """A `## NAME:` section of the plan: its `Backends:` line and its paths."""

    name: str
    backends: set[str] | None = None
    backends_line: int = 0
    paths: list[str] = field(default_factory=list)


Problems = list[str]


# --- the plan ------------------------------------------------------------------------------------


def read_plan(plan: Path, shown_as: str) -> tuple[dict[str, int], Problems]:
    """Path ID → line, from the first column of every `| Path |` table."""
    paths, _, problems = read_plan_seams(plan, shown_as)
    return paths, problems


def read_plan_seams(plan: Path, shown_as: str) -> tuple[dict[str, int], list[Seam], Problems]:
    """Path ID → line, and the seams with their `Backends:` lines and paths."""
    paths: dict[str, int] = {}
    seams: list[Seam] = []
    problems: Problems = []
    in_table = False
    for number, raw in enumerate(plan.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if heading := SECTION_HEADING.match(line):
            seams.append(Seam(heading.group(1)))
        elif seams and (backends := BACKENDS_LINE.match(line)):
            names = (name.strip().strip("`") for name in backends.group(1).split(","))
            seams[-1].backends, seams[-1].backends_line = {n for n in names if n}, number
        if PLAN_TABLE_HEADER.match(line):
            in_table = True
            continue
        if not in_table or not line.startswith("|"):
            in_table = False
            continue
        first = line.strip("|").split("|")[0].strip().strip("`*")
        if not first or set(first) <= set("-: "):  # the |---|---| separator row
            continue
        where = f"{shown_as}:{number}"
        if not PATH_ID.fullmatch(first):
            problems.append(f"{where}: {first!r} is not a path ID like CACHE-01")
        elif first in paths:
            problems.append(f"{where}: {first} is listed twice (first at line {paths[first]})")
        else:
            paths[first] = number
            if seams:
                seams[-1].paths.append(first)
    if not paths and not problems:
        problems.append(f"{shown_as}: no critical paths (tables whose header starts `| Path |`)")
    return paths, seams, problems


# --- the tests -----------------------------------------------------------------------------------


def _is_covers(func: ast.expr, aliases: set[str]) -> bool:
    """`pytest.mark.covers`, `mark.covers`, or a name bound to one of them."""
    if isinstance(func, ast.Name):
        return func.id in aliases
    if isinstance(func, ast.Attribute) and func.attr == "covers":
        owner = func.value
        return (isinstance(owner, ast.Attribute) and owner.attr == "mark") or (
            isinstance(owner, ast.Name) and owner.id == "mark"
        )
    return False


class _Citations:
    """Collects path citations from marker expressions and docstrings of one file."""

    def __init__(self, file: str, aliases: set[str]) -> None:
        self.file = file
        self.aliases = aliases
        self.problems: Problems = []

    def in_marks(self, expressions: list[ast.expr]) -> list[Citation]:
        # Walk whole expressions, so `pytest.param(..., marks=covers("X"))` counts as well.
        found: list[Citation] = []
        for expression in expressions:
            for node in ast.walk(expression):
                if isinstance(node, ast.Call) and _is_covers(node.func, self.aliases):
                    found += self._from_call(node)
        return found

    def _from_call(self, call: ast.Call) -> list[Citation]:
        found: list[Citation] = []
        for argument in call.args:
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                found += self._checked(argument.value, call.lineno)
            else:
                self.problems.append(
                    f"{self.file}:{call.lineno}: covers() takes string literals, "
                    f"got `{ast.unparse(argument)}`"
                )
        if not call.args:
            self.problems.append(f"{self.file}:{call.lineno}: covers() names no path")
        return found

    def in_docstring(self, node: ast.AST) -> list[Citation]:
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            return []
        docstring = ast.get_docstring(node, clean=False)
        if docstring is None:
            return []
        line = node.body[0].lineno
        found: list[Citation] = []
        for match in COVERS_TAG.finditer(docstring):
            tag_line = line + docstring.count("\n", 0, match.start())
            for path_id in re.split(r"[,\s]+", match.group(1).strip()):
                found += self._checked(path_id, tag_line) if path_id else []
        return found

    def _checked(self, path_id: str, line: int) -> list[Citation]:
        if PATH_ID.fullmatch(path_id):
            return [Citation(path_id, line)]
        self.problems.append(f"{self.file}:{line}: {path_id!r} is not a path ID like CACHE-01")
        return []


def _pytestmark(body: list[ast.stmt]) -> list[ast.expr]:
    return [
        statement.value
        for statement in body
        if isinstance(statement, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in statement.targets)
    ]


def _covers_aliases(module: ast.Module) -> set[str]:
    aliases: set[str] = set()
    for statement in module.body:
        if isinstance(statement, ast.Assign) and _is_covers(statement.value, set()):
            aliases |= {t.id for t in statement.targets if isinstance(t, ast.Name)}
        if isinstance(statement, ast.ImportFrom) and statement.module == "pytest.mark":
            aliases |= {a.asname or a.name for a in statement.names if a.name == "covers"}
    return aliases


def read_tests(file: Path, shown_as: str) -> tuple[list[FoundTest], Problems]:
    tests, _, problems = read_tests_and_classes(file, shown_as)
    return tests, problems


def read_tests_and_classes(
    file: Path, shown_as: str
) -> tuple[list[FoundTest], list[FoundClass], Problems]:
    try:
        module = ast.parse(file.read_text(encoding="utf-8"), filename=shown_as)
    except SyntaxError as exc:
        return [], [], [f"{shown_as}:{exc.lineno}: cannot parse: {exc.msg}"]
    citations = _Citations(shown_as, _covers_aliases(module))
    inherited = citations.in_marks(_pytestmark(module.body)) + citations.in_docstring(module)
    classes: list[FoundClass] = []
    tests = list(_walk(module.body, file, "", inherited, citations, classes))
    return tests, classes, citations.problems


def _walk(
    body: list[ast.stmt],
    file: Path,
    prefix: str,
    inherited: list[Citation],
    cite: _Citations,
    classes: list[FoundClass],
) -> Iterator[FoundTest]:
    for node in body:
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            marks = node.decorator_list + _pytestmark(node.body)
            from_class = cite.in_marks(marks) + cite.in_docstring(node)
            found = FoundClass(file, node.lineno, prefix + node.name, ast.get_docstring(node))
            classes.append(found)
            for test in _walk(
                node.body, file, f"{found.name}.", inherited + from_class, cite, classes
            ):
                found.tests.append(test)
                yield test
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            own = cite.in_marks(node.decorator_list) + cite.in_docstring(node)
            yield FoundTest(
                file, node.lineno, prefix + node.name, ast.get_docstring(node), inherited + own
            )


def missing_parts(docstring: str | None, parts: tuple[str, ...] = FOUR_PARTS) -> list[str]:
    text = docstring or ""
    return [
        part
        for part in parts
        if not re.search(rf"^[ \t]*{part}[ \t]*:[ \t]*\S", text, re.IGNORECASE | re.MULTILINE)
    ]


def listed_paths(docstring: str) -> set[str]:
    """The IDs of a class docstring's `Paths:` part, which may run on over several lines."""
    found = re.search(
        r"^[ \t]*Paths[ \t]*:(.*?)(?=^[ \t]*\w[\w ]*:|^\s*$|\Z)",
        docstring,
        re.IGNORECASE | re.MULTILINE | re.DOTALL,
    )
    return set(PATH_ID.findall(found.group(1))) if found else set()


def check_class(found: FoundClass, shown_as: str) -> Problems:
    """The class docstring's four parts, and `Paths:` naming exactly what its tests cover."""
    if not found.tests:
        return []
    where = f"{shown_as}:{found.line}: {found.name}"
    if missing := missing_parts(found.docstring, CLASS_PARTS):
        return [f"{where} docstring lacks {', '.join(missing)}"]
    listed = listed_paths(found.docstring or "")
    covered = {citation.path_id for test in found.tests for citation in test.citations}
    if listed == covered:
        return []
    differences = [
        f"{label} {', '.join(sorted(ids))}"
        for label, ids in (
            ("missing", covered - listed),
            ("not covered by its tests", listed - covered),
        )
        if ids
    ]
    return [f"{where} docstring Paths: {'; '.join(differences)}"]


# --- the plan's Backends: lines against the last run -------------------------------------------


def proven_tiers(matrix: dict[str, object], path_ids: list[str]) -> set[str] | None:
    """Tiers with a proven cell (passed, none failed) for these paths; None if none ran."""
    cells_by_path = matrix.get("paths")
    assert isinstance(cells_by_path, dict)
    ran = [cells_by_path[path] for path in path_ids if path in cells_by_path]
    if not ran:
        return None
    return {
        tier
        for cells in ran
        for tier, cell in cells.items()
        if cell["passed"] > 0 and cell["failed"] == 0
    }


def check_backends(
    seams: list[Seam], matrix_file: Path, newest_source: float, plan_name: str
) -> tuple[Problems, str]:
    """Problems, and a note on whether the comparison was made."""
    if not matrix_file.is_file():
        return [], "no seam matrix yet: Backends: lines not compared (run make test, every tier)"
    if matrix_file.stat().st_mtime < newest_source:
        return [], "seam matrix older than the plan or the tests: Backends: lines not compared"
    matrix = json.loads(matrix_file.read_text(encoding="utf-8"))
    if not matrix.get("complete"):
        return [], "last run did not have every tier: Backends: lines not compared"
    problems: Problems = []
    compared = 0
    for seam in seams:
        proven = proven_tiers(matrix, seam.paths)
        if seam.backends is None or proven is None:
            continue
        compared += 1
        if proven != seam.backends:
            problems.append(
                f"{plan_name}:{seam.backends_line}: {seam.name} Backends: "
                f"{', '.join(sorted(seam.backends))}, but the last run proved its paths on "
                f"{', '.join(sorted(proven)) or 'nothing'}"
            )
    return problems, f"Backends: lines of {compared} seams match the last run's seam matrix"


# --- the check -----------------------------------------------------------------------------------


def find_test_files(root: Path) -> Iterator[Path]:
    for folder in TEST_DIRS:
        yield from sorted((root / folder).rglob("test_*.py"))


def check(root: Path, plan: Path, matrix: Path | None = None) -> tuple[Problems, str]:
    """The problems found, and a summary for a clean run."""
    plan_name = plan.relative_to(root).as_posix() if plan.is_relative_to(root) else str(plan)
    if not plan.is_file():
        return [f"{plan_name}: not found (the plan lists the critical paths)"], ""
    paths, seams, problems = read_plan_seams(plan, plan_name)
    tests: list[FoundTest] = []
    newest_source = plan.stat().st_mtime
    for file in find_test_files(root):
        shown_as = file.relative_to(root).as_posix()
        found, classes, file_problems = read_tests_and_classes(file, shown_as)
        tests += found
        problems += file_problems
        newest_source = max(newest_source, file.stat().st_mtime)
        if any(file.is_relative_to(root / folder) for folder in FOUR_PART_DIRS):
            for found_class in classes:
                problems += check_class(found_class, shown_as)
    named: set[str] = set()
    for test in tests:
        shown_as = test.file.relative_to(root).as_posix()
        for citation in test.citations:
            named.add(citation.path_id)
            if paths and citation.path_id not in paths:
                problems.append(
                    f"{shown_as}:{citation.line}: {test.name} covers {citation.path_id}, "
                    f"which {plan_name} does not list"
                )
        if any(test.file.is_relative_to(root / folder) for folder in FOUR_PART_DIRS):
            if not test.citations:
                problems.append(f"{shown_as}:{test.line}: {test.name} names no critical path")
            if missing := missing_parts(test.docstring):
                problems.append(
                    f"{shown_as}:{test.line}: {test.name} docstring lacks {', '.join(missing)}"
                )
    for path_id, line in paths.items():
        if path_id not in named:
            problems.append(
                f"{plan_name}:{line}: {path_id} has no test "
                f'(@pytest.mark.covers("{path_id}") or a `Covers: {path_id}` docstring line)'
            )
    backend_problems, note = check_backends(
        seams, matrix or root / MATRIX, newest_source, plan_name
    )
    problems += backend_problems
    citing = sum(1 for test in tests if test.citations)
    return problems, f"{plan_name}: {len(paths)} paths, {citing} tests, all covered; {note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check TEST_PLAN.md against the tests.")
    default_root = Path(__file__).resolve().parent.parent
    parser.add_argument("--root", type=Path, default=default_root, help="repository root")
    parser.add_argument("--plan", type=Path, help="the plan (default: ROOT/TEST_PLAN.md)")
    parser.add_argument("--matrix", type=Path, help=f"the seam matrix (default: ROOT/{MATRIX})")
    options = parser.parse_args(argv)
    root = options.root.resolve()
    plan = (options.plan or root / "TEST_PLAN.md").resolve()
    problems, summary = check(root, plan, options.matrix)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"test-plan-check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
