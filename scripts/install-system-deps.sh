#!/bin/sh
# Debian packages the project uses beyond Python: python3-venv (Debian's python3 has no ensurepip
# without it, and `make install` makes a private virtual environment for uv when none is on PATH),
# a redis-server binary for the fault tests, and wrk for `make bench`. Idempotent; installs only
# what is missing.
# (The container engine has its own script: scripts/container-engine.sh.)
set -eu
missing=""
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing="$missing python3-venv"
fi
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
if [ -z "$missing" ]; then
  echo "system packages already present" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing:$missing; run as root (or with sudo) to install them" >&2
  exit 1
fi
apt-get update -qq
# shellcheck disable=SC2086 # word splitting is the point
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
