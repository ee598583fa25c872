"""The switch on a swarm: every proxy task flipped, verified, all or back (docs/cluster.md, "The
switch on a swarm").

On one engine a switch is one runtime-API line to one proxy through ``docker exec``. On a swarm
there is one proxy task per traffic node and their runtime API is published nowhere: each task
listens on its address in the stack's control network (images/proxy/proxy-entrypoint). So the
switch is ONE one-shot container of the proxy image, attached to that network on the manager,
running ``proxy-fleet`` (images/proxy), which talks to every task with the same proxy-switch a
single engine runs inside its proxy, and prints one JSON line.

Pure: which tasks are expected (from the manager's task list), the fleet's command line, reading
its JSON into a report and the spread. Thin edge: the manager's API and the one container.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Iterable

from simulator.errors import CutoverError, Refused
from stacks.spec import COLOURS, PROJECT, StackSpec
from stacks.swarm_topology import CONTROL_PORT, control_network_name, service_name

# The fleet's own budget: every proxy checked, flipped and read back, each socat bounded by 5 s.
FLEET_TIMEOUT_S = 120
ROLE_LABEL = "cutover.role"
FLEET_ROLE = "switch"


@dataclass(frozen=True)
class ProxyTask:
    """One proxy task as the manager lists it: its address on the control network, its node."""

    address: str
    node: str


@dataclass(frozen=True)
class FlippedProxy:
    address: str
    node: str
    before: str
    after: str
    flipped_at_ms: int


@dataclass(frozen=True)
class FlipReport:
    colour: str
    proxies: tuple[FlippedProxy, ...]

    @property
    def spread_ms(self) -> int:
        """Between the first proxy's flip and the last's: while it lasts, the nodes disagree."""
        times = [p.flipped_at_ms for p in self.proxies]
        return max(times) - min(times)

    def as_json(self) -> str:
        return json.dumps({"colour": self.colour, "spread_ms": self.spread_ms, "proxies": [asdict(p) for p in self.proxies]}, sort_keys=True)


@dataclass(frozen=True)
class ProxyState:
    """What one proxy task routes to and sees: its live colour, and per colour the servers UP and
    the servers it has (a swarm backend's empty slots not counted). ``error`` when it did not answer."""

    address: str
    node: str
    live: str | None
    up: dict[str, int]
    servers: dict[str, int]
    error: str | None = None


class ProxiesInFlux(Refused):
    """The manager's running proxy tasks and the control network's DNS answer different sets: a
    task is starting, stopping or restarting. Nothing was changed; a moment later they agree."""


# proxy-fleet's sentence for that case (images/proxy/proxy-fleet).
IN_FLUX = "the manager expects proxy tasks at "


def _refusal(error: str) -> Refused:
    return ProxiesInFlux(error) if error.startswith(IN_FLUX) else Refused(error)


# --- pure --------------------------------------------------------------------------------------


def expected_proxy_tasks(tasks: Iterable[dict], node_names: dict[str, str], traffic_nodes: set[str], control_network: str) -> list[ProxyTask]:
    """The proxy tasks a switch must reach: running, on a traffic node, with an address on the
    control network; from the manager's ``service.tasks()`` records. Sorted by node, so the
    flips go in the same order every time. ``node_names``: node ID -> hostname; ``traffic_nodes``:
    the IDs of the nodes carrying the traffic label."""
    expected = []
    for task in tasks:
        if task.get("Status", {}).get("State") != "running" or task.get("DesiredState") != "running":
            continue
        node_id = task.get("NodeID", "")
        if node_id not in traffic_nodes:
            continue
        addresses = [a for n in task.get("NetworksAttachments") or () if n.get("Network", {}).get("Spec", {}).get("Name") == control_network for a in n.get("Addresses") or ()]
        if not addresses:
            raise CutoverError(f"proxy task {task.get('ID', '?')[:12]} on node {node_names.get(node_id, node_id)} has no address on {control_network}; redeploy the proxy service.")
        expected.append(ProxyTask(addresses[0].split("/")[0], node_names.get(node_id, node_id)))
    return sorted(expected, key=lambda t: (t.node, t.address))


def fleet_command(action: str, dns_name: str, proxies: list[ProxyTask], colour: str | None = None, min_up: int = 1) -> list[str]:
    """``proxy-fleet``'s arguments (images/proxy/proxy-fleet)."""
    if action == "flip":
        if colour not in COLOURS:  # a wiring bug: the CLI checks the colour
            raise ValueError(f"not a colour: {colour!r}")
        head = ["flip", "--min-up", str(min_up), colour]
    elif action == "read":
        head = ["read"]
    else:
        raise ValueError(f"not a fleet action: {action!r}")
    # A node's hostname has no '=' or space (RFC 1123), so ADDRESS=NODE splits one way only.
    return [*head, dns_name, *(f"{p.address}={p.node}" for p in proxies)]


def fleet_answer(output: str) -> dict:
    """The fleet's one JSON line (the last line of its output)."""
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise CutoverError(f"the switch container printed no report: {output.strip()[-300:] or 'nothing'}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise CutoverError(f"the switch container's report is not JSON: {lines[-1][:300]}") from None


def flip_report(answer: dict) -> FlipReport:
    """The flip's report, or the error it ended with: Refused when no proxy was touched (the
    sets differ, a proxy sees the colour's servers down), CutoverError when some were (and were
    flipped back, as the sentence says)."""
    if not answer.get("ok"):
        error = answer.get("error") or "the switch container failed without a reason"
        raise CutoverError(error) if answer.get("proxies") else _refusal(error)
    proxies = tuple(FlippedProxy(p["address"], p["node"], p["before"], p["after"], int(p["flipped_at_ms"])) for p in answer["proxies"])
    return FlipReport(answer["colour"], proxies)


def proxy_states(answer: dict) -> list[ProxyState]:
    if not answer.get("ok"):
        raise _refusal(answer.get("error") or "the read container failed without a reason")
    return [ProxyState(p["address"], p["node"], p["live"], p["up"], p["servers"], p["error"]) for p in answer["proxies"]]


# --- the edge ----------------------------------------------------------------------------------


def run_fleet(client, image: str, network: str, arguments: list[str], name_prefix: str, labels: dict[str, str] | None = None) -> dict:
    """Run proxy-fleet once in a container of ``image`` attached to ``network``; its JSON answer.
    The container is removed whatever happens."""
    import docker.errors

    name = f"{name_prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    container = client.containers.create(
        image,
        command=arguments,
        entrypoint=["/usr/local/bin/proxy-fleet"],
        name=name,
        network=network,
        environment={"CUTOVER_CONTROL_PORT": str(CONTROL_PORT)},
        labels={ROLE_LABEL: FLEET_ROLE, **(labels or {})},
        # It only talks to sockets: no capability, nothing written.
        cap_drop=["ALL"],
        read_only=True,
        security_opt=["no-new-privileges"],
    )
    try:
        container.start()
        try:
            container.wait(timeout=FLEET_TIMEOUT_S)
        except Exception:  # requests' ReadTimeout or the engine's: the fleet hung
            raise CutoverError(f"the switch container {name} did not finish within {FLEET_TIMEOUT_S}s; the proxies may disagree: run the switch again.") from None
        return fleet_answer(container.logs(stdout=True, stderr=True).decode(errors="replace"))
    finally:
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass  # already gone


def flip_proxies(client, image: str, network: str, dns_name: str, proxies: list[ProxyTask], colour: str, min_up: int = 1, name_prefix: str = f"{PROJECT}-switch") -> FlipReport:
    """Flip every proxy in ``proxies`` to ``colour`` (all or back); the network and DNS name are
    the control network's and ``tasks.<proxy service>``."""
    if not proxies:
        raise Refused(f"no proxy task is running on a traffic node ({dns_name}); nothing to switch.")
    return flip_report(run_fleet(client, image, network, fleet_command("flip", dns_name, proxies, colour, min_up), name_prefix))


def read_proxies(client, image: str, network: str, dns_name: str, proxies: list[ProxyTask], name_prefix: str = f"{PROJECT}-switch") -> list[ProxyState]:
    if not proxies:
        raise Refused(f"no proxy task is running on a traffic node ({dns_name}).")
    return proxy_states(run_fleet(client, image, network, fleet_command("read", dns_name, proxies), name_prefix))


def manager_proxy_tasks(manager_client, spec: StackSpec) -> list[ProxyTask]:
    """The running proxy tasks on traffic nodes, as the manager lists them."""
    import docker.errors

    proxy = service_name(spec, "proxy")
    try:
        service = manager_client.services.get(proxy)
        nodes = manager_client.nodes.list()
    except docker.errors.NotFound:
        raise Refused(f"stack '{spec.stack}' has no proxy service {proxy} on the swarm; deploy it first.") from None
    names = {n.id: n.attrs.get("Description", {}).get("Hostname", n.id) for n in nodes}
    traffic = {n.id for n in nodes if n.attrs.get("Spec", {}).get("Labels", {}).get(spec.traffic_label) == "true"}
    return expected_proxy_tasks(service.tasks(filters={"desired-state": "running"}), names, traffic, control_network_name(spec))


def fleet_container_prefix(spec: StackSpec) -> str:
    """The names of a stack's switch containers start so (each adds its pid and a clock reading)."""
    return f"{PROJECT}-{spec.stack}-switch"


def flip_all(manager_client, spec: StackSpec, target_colour: str, proxy_image: str) -> FlipReport:
    """Every proxy task of ``spec`` on ``target_colour``, or none (docs/cluster.md)."""
    proxies = manager_proxy_tasks(manager_client, spec)
    return flip_proxies(
        manager_client, proxy_image, control_network_name(spec), f"tasks.{service_name(spec, 'proxy')}", proxies, target_colour,
        min_up=spec.pool_size, name_prefix=fleet_container_prefix(spec),
    )


def read_all(manager_client, spec: StackSpec, proxy_image: str) -> list[ProxyState]:
    """Every proxy task's live colour and servers UP per colour: for preflight and status."""
    proxies = manager_proxy_tasks(manager_client, spec)
    return read_proxies(manager_client, proxy_image, control_network_name(spec), f"tasks.{service_name(spec, 'proxy')}", proxies, name_prefix=fleet_container_prefix(spec))
