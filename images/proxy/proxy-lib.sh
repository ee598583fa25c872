# Shared by the proxy-* commands (sourced, not run). One runtime-API line to the admin socket, and
# one lock so that a reload never reads a map file half way through a switch or a version stamp.
state=/var/lib/haproxy/state
# CUTOVER_ADMIN_ADDRESS=HOST:PORT points the proxy-* commands at another proxy's runtime API on the
# control network (a swarm's switch container, proxy-fleet); unset, they talk to this container's.
admin() {
  if [ -n "${CUTOVER_ADMIN_ADDRESS:-}" ]; then
    printf '%s\n' "$1" | socat -t 5 stdio "TCP:$CUTOVER_ADMIN_ADDRESS,connect-timeout=3"
  else
    printf '%s\n' "$1" | socat -t 5 stdio UNIX-CONNECT:/run/haproxy/admin.sock
  fi
}
# Holds the lock on fd 9 for the rest of the calling script.
take_lock() {
  exec 9>/run/haproxy/proxy.lock
  flock -w 60 9 || { echo "$1: another proxy command held the lock for 60s; nothing changed." >&2; exit 1; }
}
# "<server> <status>" for every server of backend $1, one a line (the stats' 18th column is status).
server_states() {
  admin 'show stat -1 4 -1' | awk -F, -v b="$1" '$1 == b { print $2, $18 }'
}
