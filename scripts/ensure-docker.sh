#!/usr/bin/env bash
# Make sure a Docker engine answers. An engine that already runs (Docker Desktop, a system
# service) is left alone; otherwise, as root on Debian, install docker.io and start dockerd.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  echo "docker engine: already running"
  if [ "$(docker info -f '{{.LiveRestoreEnabled}}' 2>/dev/null)" != true ]; then
    echo "docker engine: note: live-restore is off, so an engine restart stops every container; set \"live-restore\": true in /etc/docker/daemon.json and reload dockerd (SIGHUP) when convenient" >&2
  fi
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
# One that was just killed may take a moment to go; it does not answer any more either way.
for _ in $(seq 1 20); do
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || break
  sleep 0.5
done
if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]; then
  rm -f "$pidfile"
fi
# live-restore: containers keep running (and serving) while dockerd itself restarts or is
# upgraded; without it, an engine that dies takes every stack down with it. No userland proxy:
# published ports are then forwarded by the kernel (iptables), not by docker-proxy processes that
# die with dockerd, so a port on 127.0.0.1 keeps answering through an engine restart (an explicit
# "userland-proxy" setting is kept). Set in daemon.json (merged into what is there), not as flags,
# so a dockerd started later by anything else keeps them. An engine already running is never
# restarted here; see README "Engine and proxy restarts".
config=/etc/docker/daemon.json
mkdir -p "$(dirname "$config")"
python3 - "$config" <<'PY'
import json, sys
path = sys.argv[1]
try:
    with open(path) as f:
        settings = json.load(f)
except FileNotFoundError:
    settings = {}
except ValueError as exc:
    sys.exit(f"{path} is not valid JSON ({exc}); fix it, then run this again.")
wanted = {"live-restore": True, "userland-proxy": settings.get("userland-proxy", False)}
if any(settings.get(key) != value for key, value in wanted.items()):
    settings.update(wanted)
    with open(path, "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    print(f"docker engine: live-restore on, userland-proxy {'on' if wanted['userland-proxy'] else 'off'} in {path}")
PY
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
