#!/bin/sh
# The browser for `make test-e2e`: Debian's chromium, driven by the playwright Python package
# (a dev dependency) through executable_path=/usr/bin/chromium, so nothing is downloaded when
# the tests run. Idempotent: installs only what is missing and says what it did.
set -eu
if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing; run as root (or with sudo) to install it: apt-get install chromium" >&2
  exit 1
fi
echo "installing chromium (Debian package)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
echo "installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
