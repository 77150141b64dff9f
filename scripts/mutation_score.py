"""Print the mutation score per module from mutmut's results; exit 1 below the minimum.

Reads `mutmut results --all true` in the project mutmut ran in (default `backend/`, where module
names match the `app.*` imports) and prints, per module and in total, killed / scored and the
percentage. A mutant is killed when a test failed or timed out with it in place (or the type
checker rejected it). Survivors and mutants no test reaches count against the score; `skipped`
ones are left out. A run that left mutants unchecked is an error (exit 2), not a score.

Usage: python scripts/mutation_score.py [--project DIR] [--min PERCENT] [--survivors]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = frozenset({"killed", "timeout", "caught by type check"})
NOT_SCORED = frozenset({"skipped"})
UNFINISHED = frozenset({"not checked", "check was interrupted by user"})


def read_results(project: Path) -> dict[str, str]:
    """Every mutant's name and status, as `mutmut results --all true` lists them."""
    mutmut = Path(sys.executable).with_name("mutmut")
    listing = subprocess.run(  # noqa: S603 - our own argv, no shell
        [str(mutmut), "results", "--all", "true"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    results = {}
    for line in listing.stdout.splitlines():
        name, separator, status = line.strip().partition(": ")
        if separator and "__mutmut_" in name:
            results[name] = status
    return results


def module_of(mutant: str) -> str:
    """`app.cache.xǁResponseCacheǁget__mutmut_3` -> `app.cache`: mutmut's function names start
    with `x_` (functions) or `xǁ` (methods)."""
    parts = mutant.split(".")
    for index, part in enumerate(parts):
        if part.startswith(("x_", "xǁ")):
            return ".".join(parts[:index])
    return mutant.rpartition(".")[0]


def score(killed: int, scored: int) -> float:
    return 100.0 * killed / scored if scored else 100.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("backend"))
    parser.add_argument("--min", type=float, default=80.0, help="lowest passing total score, %%")
    parser.add_argument("--survivors", action="store_true", help="list the mutants not killed")
    args = parser.parse_args(argv)

    results = read_results(args.project) if (args.project / "mutants").is_dir() else {}
    if not results:
        print(f"no mutmut results in {args.project}/mutants: run `make test-mutation`")
        return 2
    unfinished = sorted(name for name, status in results.items() if status in UNFINISHED)
    if unfinished:
        print(f"{len(unfinished)} mutants were not checked (e.g. {unfinished[0]}): run again")
        return 2

    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in results.items():
        by_module[module_of(name)][status] += 1

    print(f"{'module':<44} {'killed':>7} {'scored':>7} {'score':>7}  not killed")
    total_killed = total_scored = 0
    for module, statuses in sorted(by_module.items()):
        killed = sum(statuses[s] for s in KILLED)
        scored = sum(n for s, n in statuses.items() if s not in NOT_SCORED)
        missed = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()) if s not in KILLED)
        print(f"{module:<44} {killed:>7} {scored:>7} {score(killed, scored):>6.1f}%  {missed}")
        total_killed += killed
        total_scored += scored
    total = score(total_killed, total_scored)
    print(f"{'total':<44} {total_killed:>7} {total_scored:>7} {total:>6.1f}%")

    if args.survivors:
        print()
        for name, status in sorted(results.items()):
            if status not in KILLED | NOT_SCORED:
                print(f"{status:<10} {name}")

    if total < args.min:
        print(f"mutation score {total:.1f}% is below the minimum {args.min:.0f}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
