#!/usr/bin/env bash
# Make sure Debian's wrk (the HTTP load generator of `make proxy-cost`) is installed: as root on
# Debian, apt-get install it; otherwise say how.
set -euo pipefail

if command -v wrk >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "wrk is not installed and this is not root: run 'sudo apt-get install wrk' (or 'sudo make wrk')." >&2
  exit 1
fi
echo "wrk: installing Debian's wrk"
# The package lists may be missing or stale on a fresh machine: update, then install.
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk
