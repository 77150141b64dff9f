#!/usr/bin/env bash
# Validate docker-compose.yml (or the file given) and the Dockerfiles it builds, offline and
# without a container engine: the Compose Specification schema (vendored by the check-jsonschema
# package), Compose's interpolation and reference checks, and every COPY source against the build
# context and .dockerignore. scripts/check_compose.py says exactly what is checked.
# Exits 0 when valid, 1 listing every problem, 2 when the tools are missing.
#
# Usage: scripts/check-compose.sh [path/to/docker-compose.yml]   (default: the repository's)
set -euo pipefail

file=$(realpath "${1:-$(dirname "$0")/../docker-compose.yml}")
cd "$(dirname "$0")/.."
python=.venv/bin/python
if [[ ! -x $python ]] || ! "$python" -c 'import check_jsonschema' 2>/dev/null; then
    echo "check-compose: $python cannot import check_jsonschema; run 'uv sync' first" >&2
    exit 2
fi
exec "$python" scripts/check_compose.py "$file"
