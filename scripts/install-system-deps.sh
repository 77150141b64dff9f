#!/bin/sh
# Debian packages the project uses beyond Python: python3-venv (Debian's python3 has no ensurepip
# without it, and `make install` makes a private virtual environment for uv when none is on PATH),
# a redis-server binary and PostgreSQL's server binaries (initdb, pg_ctl) for the fault tests, and
# wrk for `make bench`. Idempotent; installs only what is missing.
# (The container engine has its own script: scripts/container-engine.sh.)
set -eu
missing=""
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  missing="$missing python3-venv"
fi
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
# Debian keeps initdb off PATH, under /usr/lib/postgresql/<version>/bin.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing="$missing postgresql"
fi
if [ -z "$missing" ]; then
  echo "system packages already present" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing:$missing; run as root (or with sudo) to install them" >&2
  exit 1
fi
apt-get update -qq
case "$missing" in
  *postgresql*)
    # The fault tests start clusters of their own: the package need not create and start one
    # (--force-confold below keeps this file when the package installs its own).
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
      mkdir -p /etc/postgresql-common
      echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    ;;
esac
# shellcheck disable=SC2086 # word splitting is the point
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confold $missing
