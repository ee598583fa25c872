#!/usr/bin/env bash
# Make sure a Docker engine answers. An engine that already runs (Docker Desktop, a system
# service) is left alone; otherwise, as root on Debian, install docker.io and start dockerd.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  echo "docker engine: already running"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine answers and this is not root: start Docker (or run 'sudo make engine')." >&2
  exit 1
fi
if ! command -v dockerd >/dev/null; then
  echo "docker engine: installing Debian's docker.io"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
fi
# A dockerd that was killed leaves its pid file behind; if that pid now belongs to another
# process, a new dockerd would refuse to start.
pidfile=/var/run/docker.pid
pid=$(cat "$pidfile" 2>/dev/null || true)
if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
  rm -f "$pidfile"
fi
log=/var/log/cutover-dockerd.log
echo "docker engine: starting dockerd (log: $log)"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker engine: running"
    exit 0
  fi
  sleep 1
done
echo "dockerd did not answer within 60 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
