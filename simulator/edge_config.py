"""The local swarm's edge: the HAProxy config that stands in for a cluster's load balancer (pure).

Swarm's routing mesh needs IPVS, which the nodes' kernel here lacks, so a port published in ingress
mode reaches nothing. A stack's proxies publish their ports in host mode on the traffic nodes (the
workers) instead, and a real small cluster puts a load balancer (a cloud LB, keepalived, DNS) in
front of those nodes. The edge is that load balancer on one machine: one HAProxy container on the
cluster's bridge network that publishes each port on 127.0.0.1 and balances it, in TCP mode (HTTP
keep-alive, TLS, anything passes through untouched), over the same port of every traffic node.

simulator/edge.py runs it; this module only renders its config and reads its `show stat`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

# Where the edge's HAProxy reads its config and answers its runtime API (inside its container).
CONFIG_PATH = "/etc/haproxy/edge.cfg"
SOCKET_PATH = "/run/haproxy/edge.sock"
# Docker's embedded DNS on a user-defined network: it answers container names, and stops answering
# a stopped container's name, so a dead node leaves the backend even before its checks fail.
DOCKER_DNS = "127.0.0.11:53"
# Health checks: a node that stops answering is out after two missed checks (~1 s), and back after
# two good ones. A node gone from the bridge never refuses a connection (nobody answers ARP): the
# connect timeout bounds how long a client waits before its connection is redispatched.
CHECK_INTER_MS = 500
CHECK_FALL = 2
CHECK_RISE = 2
CONNECT_TIMEOUT_MS = 1000
RETRIES = 2


@dataclass(frozen=True)
class EdgeServer:
    name: str  # the node's short name in the backend (worker-1)
    host: str  # its container name, resolved by Docker's DNS on the cluster network


def backend_name(port: int) -> str:
    return f"port-{port}"


def render(ports: list[int] | tuple[int, ...], servers: list[EdgeServer]) -> str:
    """One frontend and backend per port, each backend listing every traffic node on that port."""
    lines = [
        "# Rendered by cutover (simulator/edge_config.py): the local swarm's load balancer.",
        "global",
        f"    stats socket {SOCKET_PATH} mode 600 level admin",
        # A reload (more workers) starts a new worker; the old one finishes its connections, up to this.
        "    hard-stop-after 30s",
        "",
        "resolvers docker",
        f"    nameserver dns {DOCKER_DNS}",
        "    resolve_retries 2",
        "    timeout resolve 500ms",
        "    timeout retry 500ms",
        "    hold valid 2s",
        "    hold nx 1s",
        "    hold obsolete 1s",
        "",
        "defaults",
        "    mode tcp",
        f"    timeout connect {CONNECT_TIMEOUT_MS}ms",
        "    timeout client 60s",
        "    timeout server 60s",
        f"    timeout check {CHECK_INTER_MS}ms",
        # A connection a dead node refuses (or never answers) is retried, each time on another node.
        f"    retries {RETRIES}",
        "    option redispatch 1",
        # libc at start (a worker whose container is stopped starts in MAINT: none), then Docker's
        # DNS follows the node's address across restarts.
        f"    default-server inter {CHECK_INTER_MS}ms fall {CHECK_FALL} rise {CHECK_RISE} resolvers docker init-addr libc,none",
    ]
    for port in sorted(set(ports)):
        lines += ["", f"frontend {backend_name(port)}", f"    bind :{port}", f"    default_backend {backend_name(port)}",
                  "", f"backend {backend_name(port)}", "    balance roundrobin"]
        lines += [f"    server {server.name} {server.host}:{port} check" for server in servers]
    return "\n".join(lines) + "\n"


def server_states(show_stat: str) -> list[dict]:
    """The servers of ``show stat`` (HAProxy's CSV): port, node, status (UP, DOWN, MAINT ...), address."""
    text = show_stat.lstrip("# ")
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        backend = row.get("pxname", "")
        if row.get("svname") in ("FRONTEND", "BACKEND", None) or not backend.startswith("port-"):
            continue
        rows.append({"port": int(backend.removeprefix("port-")), "node": row["svname"], "status": row.get("status", ""),
                     "address": row.get("addr") or None})
    return sorted(rows, key=lambda r: (r["port"], r["node"]))
