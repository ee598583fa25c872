"""HAProxy's configuration, rendered as pure text (no I/O) in two parts.

``render_base_config()`` is constant: global settings, the resolvers, the defaults and the two
frontends. It is the proxy container's only upload, so nothing a user configures (pool size, health
path or interval, versions, the live colour) is an input of that container or of its fingerprint.

``render_backend()`` is one colour's backend: its health check, check interval and servers. It lives
in its own file on the proxy's state volume (BACKENDS_DIR) and is changed in the running proxy by
the image's ``proxy-backend`` command: validated, then a master-worker reload that hands the
listening sockets to a new worker while the old one finishes its requests.

The live colour is in neither. It is a key in a map file that ``use_backend`` reads on every
request; a switch rewrites that key through the runtime API, so moving traffic changes no config.
"""

from __future__ import annotations

from stacks.spec import COLOURS, StackSpec

ADMIN_SOCKET = "/run/haproxy/admin.sock"
# On a named volume, so a restarted proxy keeps the colour it was last switched to.
COLOUR_MAP_DIR = "/var/lib/haproxy/state"
# Uploaded onto that volume at each container create: the proxy's root file system is read-only.
HAPROXY_CONFIG_PATH = f"{COLOUR_MAP_DIR}/haproxy.cfg"
# One file per colour, ``<colour>.cfg``, written by ``proxy-backend`` (the image's entrypoint writes an
# empty backend for a colour whose file is missing, so the base config always finds both).
BACKENDS_DIR = f"{COLOUR_MAP_DIR}/backends"
# HAProxy's master process (PID 1 of the proxy container) and the servers' states, kept across a
# reload (a DOWN or MAINT server stays so in the new worker): on the /run/haproxy tmpfs, so a
# restarted container starts clean.
SERVER_STATE_FILE = "/run/haproxy/server-state"
# A soft stop (SIGUSR1: `docker stop`, or the old worker after a reload) lets requests in flight
# finish, for at most this long; the proxy container's stop timeout (stacks/topology.py) is longer,
# so Docker never has to SIGKILL a proxy that is still finishing requests.
HARD_STOP_AFTER_S = 20
COLOUR_MAP = f"{COLOUR_MAP_DIR}/colours.map"
# Which version each colour runs, set at deploy through the runtime API (no reload) and saved beside
# the colour map; the proxy stamps it on every response.
VERSION_MAP = f"{COLOUR_MAP_DIR}/versions.map"
# Who served a response, said by the proxy so no app has to: the colour (a constant per backend),
# the version (from VERSION_MAP) and the server (blue-1, green-2, ...).
COLOUR_HEADER = "X-Cutover-Colour"
VERSION_HEADER = "X-Cutover-Version"
SERVER_HEADER = "X-Cutover-Server"
# Set only on a response the live frontend took from the other colour because the live one had no
# usable server; its value is the live colour that failed.
FALLBACK_HEADER = "X-Cutover-Fallback"
LIVE_CONTAINER_PORT = 8080
PREVIEW_CONTAINER_PORT = 8081
# HAProxy keeps idle server connections for reuse this long; the app's keep-alive (75 s in the
# app image) must outlast it, or a reused connection can be closed under a request.
POOL_PURGE_DELAY_MS = 5000
RESOLVE_EVERY_MS = 500
# How long a server keeps its last address while Docker's DNS does not answer (an engine restart).
DNS_OUTAGE_HOLD = "300s"
# A name that no longer exists (NXDOMAIN) is followed within this, plus one resolution.
NXDOMAIN_HOLD = "2s"


LIVE_BACKEND = f"%[str(live),map({COLOUR_MAP},blue)]"


def _live_fallback_rules() -> list[str]:
    """When the live colour has no usable server (crashed, killed, every check failing) and the
    other colour has one, live traffic goes to the other colour rather than getting 503s. HAProxy
    decides per request from its own server states (nbsrv): no controller, and it ends by itself
    as soon as a live server is UP again. The live colour itself is unchanged (the map)."""
    lines = [
        # The live colour, as the runtime map says right now.
        f"    acl live_is_blue str(live),map({COLOUR_MAP},blue) -m str blue",
        f"    acl live_is_green str(live),map({COLOUR_MAP},blue) -m str green",
        "    acl blue_usable nbsrv(blue) gt 0",
        "    acl green_usable nbsrv(green) gt 0",
    ]
    for live, other in (("blue", "green"), ("green", "blue")):
        lines.append(f"    http-request set-var(txn.fallback_from) str({live}) if live_is_{live} !{live}_usable {other}_usable")
    lines += [
        # Decided once, on the request; the response says so.
        f"    http-response set-header {FALLBACK_HEADER} %[var(txn.fallback_from)] if {{ var(txn.fallback_from) -m found }}",
        "    use_backend green if { var(txn.fallback_from) -m str blue }",
        "    use_backend blue if { var(txn.fallback_from) -m str green }",
    ]
    return lines


def backend_path(colour: str) -> str:
    return f"{BACKENDS_DIR}/{colour}.cfg"


def render_base_config() -> str:
    """The proxy's constant config: the same text for every stack, whatever its settings."""
    lines = [
        "# Rendered by cutover (stacks/proxy_config.py); do not edit by hand. Each colour's backend",
        f"# is a file of its own in {BACKENDS_DIR}, loaded after this one.",
        "global",
        f"    stats socket {ADMIN_SOCKET} mode 600 level admin",
        "    stats timeout 30s",
        "    maxconn 4096",
        f"    hard-stop-after {HARD_STOP_AFTER_S}s",
        # Written by proxy-backend just before a reload, read by the new worker (defaults below).
        f"    server-state-file {SERVER_STATE_FILE}",
        "",
        # Docker's embedded DNS: a redeployed container comes back with a new address, and the
        # proxy must follow it without a reload. That DNS is served by dockerd, so it stops
        # answering while the engine restarts (containers kept running by live-restore).
        "resolvers docker",
        "    nameserver dns 127.0.0.11:53",
        "    resolve_retries 3",
        # How often each server's name is resolved again: a new address is followed this fast.
        f"    timeout resolve {RESOLVE_EVERY_MS}ms",
        "    timeout retry 500ms",
        # A hold is how far back a valid answer still outweighs a failed one. No answer, a refusal
        # or a broken answer says nothing about the container: keep its last address (health checks
        # still judge it). NXDOMAIN is a real answer (the container is gone): follow it quickly.
        # (In HAProxy 2.6 'hold valid' only concerns do-resolve actions and 'hold obsolete' SRV
        # records, so neither is set.)
        f"    hold timeout {DNS_OUTAGE_HOLD}",
        f"    hold refused {DNS_OUTAGE_HOLD}",
        f"    hold other {DNS_OUTAGE_HOLD}",
        f"    hold nx {NXDOMAIN_HOLD}",
        "    accepted_payload_size 8192",
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        # On a soft stop (a reload's old worker) an idle keep-alive connection is not closed under
        # a client that may be sending on it: it is closed after its next response instead.
        "    option idle-close-on-response",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 30s",
        "    timeout queue 10s",
        # A connection that failed before the request was sent is safe to retry for any method;
        # an empty response or timeout only for requests that may be repeated (never a POST).
        "    retries 2",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout",
        "    http-reuse safe",
        # A reload's new worker starts from the old one's server states, not from 'all UP'.
        "    load-server-state-from-file global",
        "",
        "frontend live",
        f"    bind :{LIVE_CONTAINER_PORT}",
        "    http-request disable-l7-retry if METH_POST",
        *_live_fallback_rules(),
        # The map's fallback is a constant, not spec.live_colour: the colour must stay out of the
        # proxy's inputs, or `pulumi config set liveColor` would replace the proxy container.
        f"    use_backend {LIVE_BACKEND}",
        "",
        "frontend preview",
        f"    bind :{PREVIEW_CONTAINER_PORT}",
        "    http-request disable-l7-retry if METH_POST",
        f"    use_backend %[str(preview),map({COLOUR_MAP},green)]",
        "",
    ]
    return "\n".join(lines)


def render_backend(spec: StackSpec, colour: str, servers: list[str], app_port: int) -> str:
    """One colour's backend section: its health check (path and interval from ``spec``) and one
    server per host in ``servers``, named ``<colour>-1``, ``<colour>-2``... (the names the status,
    the watch and the leftovers read)."""
    if colour not in COLOURS:  # a wiring bug: the colour names the section and the file
        raise ValueError(f"not a colour: {colour!r}")
    interval = spec.health_interval_ms
    lines = [
        f"# {colour}'s backend, rendered by cutover (stacks/proxy_config.py); applied by proxy-backend.",
        f"backend {colour}",
        "    balance roundrobin",
        f"    default-server init-addr last,libc,none resolvers docker check inter {interval}ms fastinter {max(100, interval // 2)}ms fall 2 rise 2 pool-purge-delay {POOL_PURGE_DELAY_MS}ms",
        f"    option httpchk GET {spec.health_path}",
        "    http-check expect status 200",
        f"    http-response set-header {COLOUR_HEADER} {colour}",
        f"    http-response set-header {VERSION_HEADER} %[str({colour}),map({VERSION_MAP},unknown)]",
        f"    http-response set-header {SERVER_HEADER} %[srv_name]",
    ]
    for index, host in enumerate(servers, start=1):
        lines.append(f"    server {colour}-{index} {host}:{app_port}")
    return "\n".join(lines) + "\n"


def render_haproxy_config(spec: StackSpec, servers: dict[str, list[str]], app_port: int) -> str:
    """The whole config as the proxy loads it (the base, then each colour's backend file): what
    the unit tests read as one text."""
    return "\n".join([render_base_config(), *(render_backend(spec, c, servers[c], app_port) for c in COLOURS)])


# --- the swarm kind (docs/cluster.md) ------------------------------------------------------------
# On a swarm a colour is one replicated service; its tasks' addresses are the DNS name
# ``tasks.<service>`` on the overlay network. Each colour's backend is a fixed number of server
# slots filled from that name, so scaling a colour (or swarm rescheduling a task on another node)
# never changes the proxy's config: the slots beyond the tasks that exist stay in MAINT.
# poolSize is at most 20 (stacks/spec.py), so 20 slots hold any pool, and the count is a constant:
# were it derived from poolSize, a resize would change the config and roll the proxy service.
SWARM_SERVER_SLOTS = 20


def render_swarm_backend(spec: StackSpec, colour: str, service: str, app_port: int) -> str:
    """One colour's backend on a swarm: the same checks, headers and server names
    (``<colour>-1`` ...) as ``render_backend``, its servers found through ``tasks.<service>``."""
    if colour not in COLOURS:  # a wiring bug: the colour names the section and the file
        raise ValueError(f"not a colour: {colour!r}")
    lines = render_backend(spec, colour, [], app_port).splitlines()
    lines[0] = f"# {colour}'s backend on a swarm, rendered by cutover (stacks/proxy_config.py); its servers come from swarm DNS."
    # init-addr none: a slot with no task behind it yet starts without an address (not an error);
    # the resolvers fill it within RESOLVE_EVERY_MS of a task appearing.
    lines.append(f"    server-template {colour}- {SWARM_SERVER_SLOTS} tasks.{service}:{app_port} init-addr none")
    return "\n".join(lines) + "\n"


def render_swarm_haproxy_config(spec: StackSpec, services: dict[str, str], app_port: int) -> str:
    """The whole swarm config as one text (the base, then each colour's backend), for the tests."""
    return "\n".join([render_base_config(), *(render_swarm_backend(spec, c, services[c], app_port) for c in COLOURS)])
