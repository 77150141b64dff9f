"""Validate docker-compose.yml and the Dockerfiles it builds, offline, without a container engine.

Follows the order Docker Compose itself loads a file in:
1. YAML 1.2 parsing (duplicate keys are errors, as in Compose's go-yaml);
2. variable interpolation, with the defaults written in the file (a clean CI shell: no variable
   from the caller's environment or `.env` leaks in, so the result does not depend on who runs it);
3. the official Compose Specification JSON schema, as vendored and kept current by the
   `check-jsonschema` package (no download at check time);
4. the consistency checks Compose runs after the schema: every referenced service, volume,
   network, secret and config exists, no dependency cycle, durations parse, build contexts,
   Dockerfiles and env files exist;
5. each Dockerfile: known instructions, FROM first, and every COPY/ADD source exists in the
   build context and is not excluded by .dockerignore.

Usage: python scripts/check_compose.py [docker-compose.yml]. Exits 1 listing every problem.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from check_jsonschema.builtin_schemas import get_builtin_schema  # type: ignore[import-untyped]
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

Problems = list[str]

# --- 2. interpolation ---------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    pass


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`, `${VAR?e}`,
    `${VAR:+r}`, `${VAR+r}` and `$$`, with nesting inside the default/replacement."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_substitute(text[i + 2 : end], env))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise InterpolationError(f"invalid interpolation format in {text!r}")
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for index in range(start, len(text)):
        if text.startswith("${", index):
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise InterpolationError(f"unclosed '${{' in {text!r}")


def _substitute(expression: str, env: dict[str, str]) -> str:
    match = _NAME.match(expression)
    if not match:
        raise InterpolationError(f"invalid variable name in '${{{expression}}}'")
    name, rest = match.group(), expression[match.end() :]
    value = env.get(name)
    if not rest:
        return value or ""
    for operator in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(operator):
            argument = _interpolate(rest[len(operator) :], env)
            is_set = bool(value) if operator.startswith(":") else value is not None
            if operator.endswith("-"):
                return value if is_set and value is not None else argument
            if operator.endswith("?"):
                if not is_set:
                    raise InterpolationError(f"required variable {name} is missing: {argument}")
                return value or ""
            return argument if is_set else ""
    raise InterpolationError(f"invalid interpolation format in '${{{expression}}}'")


def interpolate(node: Any, env: dict[str, str], path: str = "$") -> Any:
    if isinstance(node, dict):
        return {key: interpolate(value, env, f"{path}.{key}") for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env, f"{path}[{n}]") for n, value in enumerate(node)]
    if isinstance(node, str):
        try:
            return _interpolate(node, env)
        except InterpolationError as exc:
            raise InterpolationError(f"{path}: {exc}") from None
    return node


# --- 4. consistency ------------------------------------------------------------------------------

_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$|^0$")  # Go's syntax
_DURATION_KEYS = ("interval", "timeout", "start_period", "start_interval")


def _names(value: Any) -> list[str]:
    """A list of names or a mapping keyed by name (depends_on, networks, secrets...)."""
    if isinstance(value, dict):
        return [str(key) for key in value]
    if isinstance(value, list):
        return [str(item["source"] if isinstance(item, dict) else item) for item in value]
    return []


def _named_volumes(volumes: list[Any]) -> Iterator[str]:
    for volume in volumes:
        if isinstance(volume, str):
            source = volume.split(":", 1)[0] if ":" in volume else ""
            if source and not source.startswith((".", "/", "~", "$")):
                yield source
        elif (
            isinstance(volume, dict)
            and volume.get("type", "volume") == "volume"
            and volume.get("source")
        ):
            yield str(volume["source"])


def check_consistency(compose: dict[str, Any], root: Path) -> Problems:
    problems: Problems = []
    services: dict[str, Any] = compose.get("services") or {}
    declared = {kind: set(compose.get(kind) or {}) for kind in ("volumes", "secrets", "configs")}
    declared["networks"] = set(compose.get("networks") or {}) | {"default"}

    def expect(kind: str, name: str, where: str) -> None:
        if name not in declared[kind]:
            problems.append(f"{where}: {kind[:-1]} {name!r} is not declared under top-level {kind}")

    for name, service in services.items():
        where = f"services.{name}"
        if not service.get("image") and not service.get("build"):
            problems.append(f"{where}: has neither image nor build")
        for target in _names(service.get("depends_on")) + [
            str(link).split(":", 1)[0] for link in service.get("links") or []
        ]:
            if target not in services:
                problems.append(f"{where}: depends on undefined service {target!r}")
        for source in service.get("volumes_from") or []:
            target = str(source).removeprefix("service:").split(":", 1)[0]
            if not str(source).startswith("container:") and target not in services:
                problems.append(f"{where}: volumes_from undefined service {target!r}")
        mode = str(service.get("network_mode", ""))
        if mode.startswith("service:") and mode.removeprefix("service:") not in services:
            problems.append(f"{where}: network_mode names undefined service {mode!r}")
        for volume in _named_volumes(service.get("volumes") or []):
            expect("volumes", volume, where)
        for kind in ("networks", "secrets", "configs"):
            for item in _names(service.get(kind)):
                expect(kind, item, where)
        for key in _DURATION_KEYS:
            value = (service.get("healthcheck") or {}).get(key)
            if value is not None and not _DURATION.match(str(value)):
                problems.append(
                    f"{where}.healthcheck.{key}: {value!r} is not a duration, e.g. 1m30s"
                )
        problems += _check_build(service.get("build"), root, where)
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path, required = (
                (env_file["path"], env_file.get("required", True))
                if isinstance(env_file, dict)
                else (env_file, True)
            )
            if required and not (root / path).is_file():
                problems.append(f"{where}.env_file: {path} does not exist")
    problems += _cycles(services)
    return problems


def _cycles(services: dict[str, Any]) -> Problems:
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> str | None:
        if state.get(name) == "open":
            return " -> ".join([*trail[trail.index(name) :], name])
        if state.get(name) == "done" or name not in services:
            return None
        state[name] = "open"
        for target in _names(services[name].get("depends_on")):
            if cycle := visit(target, [*trail, name]):
                return cycle
        state[name] = "done"
        return None

    for name in services:
        if cycle := visit(name, []):
            return [f"dependency cycle: {cycle}"]
    return []


def _check_build(build: Any, root: Path, where: str) -> Problems:
    if not build:
        return []
    spec = {"context": build} if isinstance(build, str) else build
    context_value = str(spec.get("context", "."))
    if re.match(r"^[a-z]+://|^git@", context_value):  # remote context: nothing local to check
        return []
    context = (root / context_value).resolve()
    if not context.is_dir():
        return [f"{where}.build.context: {context_value} is not a directory"]
    if "dockerfile_inline" in spec:
        return []
    dockerfile = context / str(spec.get("dockerfile", "Dockerfile"))
    if not dockerfile.is_file():
        return [f"{where}.build.dockerfile: {dockerfile.relative_to(root)} does not exist"]
    return check_dockerfile(dockerfile, context, f"{where}: {dockerfile.relative_to(root)}")


# --- 5. Dockerfiles ------------------------------------------------------------------------------

_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


def _instructions(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    escape = "\\"
    if directive := re.match(r"#\s*escape\s*=\s*(\S)", text):
        escape = directive.group(1)
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith(escape):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        instruction, _, arguments = " ".join(pending).partition(" ")
        pending = []
        yield start, instruction.upper(), arguments.strip()
    if pending:
        yield start, "<unterminated>", " ".join(pending)


class _DockerIgnore:
    """.dockerignore semantics: Go-style globs, `**`, `!` exceptions, the last match wins,
    and a pattern that matches a directory excludes everything below it."""

    def __init__(self, context: Path) -> None:
        path = context / ".dockerignore"
        lines = path.read_text().splitlines() if path.is_file() else []
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line.removeprefix("!").strip().strip("/")
            pattern = re.sub(r"/+", "/", pattern).removeprefix("./")
            self.rules.append((negate, re.compile(self._regex(pattern))))

    @staticmethod
    def _regex(pattern: str) -> str:
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.find("]", i)
                regex, i = regex + pattern[i : end + 1].replace("[!", "[^"), end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        return f"^{regex}(/.*)?$"

    def excludes(self, relative: str) -> bool:
        excluded = False
        for negate, regex in self.rules:
            if regex.match(relative):
                excluded = not negate
        return excluded


def check_dockerfile(dockerfile: Path, context: Path, where: str) -> Problems:
    problems: Problems = []
    ignore = _DockerIgnore(context)
    seen_from = False
    for line, instruction, arguments in _instructions(dockerfile.read_text()):
        here = f"{where}:{line}"
        if instruction not in _INSTRUCTIONS:
            problems.append(f"{here}: unknown instruction {instruction!r}")
            continue
        if not seen_from and instruction not in {"ARG", "FROM"}:
            problems.append(f"{here}: {instruction} before the first FROM")
            break
        seen_from = seen_from or instruction == "FROM"
        if instruction in {"COPY", "ADD"}:
            problems += _check_sources(arguments, context, ignore, here)
    else:
        if not seen_from:
            problems.append(f"{where}: no FROM instruction")
    return problems


def _check_sources(arguments: str, context: Path, ignore: _DockerIgnore, here: str) -> Problems:
    words = arguments.split()
    while words and words[0].startswith("--"):
        if words[0].startswith("--from="):
            return []  # from another stage or image: not in the build context
        words.pop(0)
    rest = " ".join(words)
    if rest.startswith("["):
        try:
            words = json.loads(rest)
        except json.JSONDecodeError:
            return [f"{here}: malformed JSON array {rest!r}"]
    if len(words) < 2:
        return [f"{here}: needs at least one source and a destination"]
    problems: Problems = []
    for source in words[:-1]:
        if re.match(r"^[a-z]+://", source) or "$" in source:
            continue  # URLs and build arguments cannot be resolved here
        relative = source.strip("/").removeprefix("./") or "."
        matches = (
            [context] if relative == "." else [p for p in context.glob(relative) if p.exists()]
        )
        if not matches:
            problems.append(f"{here}: source {source!r} does not exist in the build context")
        elif relative != "." and all(
            ignore.excludes(p.relative_to(context).as_posix()) for p in matches
        ):
            problems.append(f"{here}: source {source!r} is excluded by .dockerignore")
    return problems


# --- driver --------------------------------------------------------------------------------------


def load(path: Path) -> Any:
    yaml = YAML(typ="safe", pure=True)  # YAML 1.2 like Compose; duplicate keys raise
    return yaml.load(path.read_text())


def check(path: Path) -> Problems:
    try:
        raw = load(path)
    except (OSError, YAMLError) as exc:
        return [f"cannot parse: {str(exc).split(chr(10) + 'To suppress')[0].strip()}"]
    if not isinstance(raw, dict):
        return ["the top level must be a mapping"]
    try:
        compose = interpolate(raw, env={})
    except InterpolationError as exc:
        return [f"interpolation: {exc}"]
    schema = get_builtin_schema("vendor.compose-spec")
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    problems = [_describe(error, schema) for error in validator.iter_errors(compose)]
    if problems := [problem for problem in problems if problem]:
        return problems
    return check_consistency(compose, path.parent.resolve())


def _describe(error: jsonschema.ValidationError, schema: dict[str, Any]) -> str | None:
    if error.validator == "unevaluatedProperties":
        # A known property whose value failed counts as "unevaluated" too, next to its own
        # error: name only the properties the schema does not know at all (typos).
        known, patterns = _known_properties(error.schema, schema)
        unknown = [
            key
            for key in error.instance
            if key not in known and not any(re.search(p, key) for p in patterns)
        ]
        if not unknown:
            return None
        return f"schema: {error.json_path}: unknown propert(y/ies) {', '.join(map(repr, unknown))}"
    deepest = _deepest(error)
    return f"schema: {deepest.json_path}: {deepest.message}"


def _known_properties(subschema: Any, root: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Property names and patterns a (sub)schema declares, through allOf/anyOf/oneOf and
    local $refs (all the Compose schema uses)."""
    if not isinstance(subschema, dict):
        return set(), set()
    if ref := subschema.get("$ref"):
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        subschema = {**target, **{k: v for k, v in subschema.items() if k != "$ref"}}
    known = set(subschema.get("properties", {}))
    patterns = set(subschema.get("patternProperties", {}))
    for keyword in ("allOf", "anyOf", "oneOf"):
        for branch in subschema.get(keyword, []):
            more_known, more_patterns = _known_properties(branch, root)
            known |= more_known
            patterns |= more_patterns
    return known, patterns


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a oneOf/anyOf failure, the underlying error deepest in the document says the most
    (the branch that got furthest), not "is not valid under any of the given schemas"."""
    candidates = [error]
    for candidate in error.context or []:
        candidates.append(_deepest(candidate))
    return max(candidates, key=lambda e: len(e.absolute_path))


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "docker-compose.yml")
    problems = check(path)
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    if problems:
        print(f"{path}: INVALID ({len(problems)} problem(s))", file=sys.stderr)
        return 1
    print(f"{path}: valid (Compose Specification schema, references, Dockerfiles)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
