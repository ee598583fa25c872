"""A Docker Swarm of Docker-in-Docker nodes on this machine: one manager and N workers.

It stands in for a small cluster of hosts (tests, `make demo-cluster`): every node is a container
of images/node (the base image plus Debian's docker.io) started with the flags of
simulator/nodes.py, on a bridge network of its own (``cutover-cluster-NAME``) where the nodes find
each other for the swarm's control plane (2377/tcp), gossip (7946) and overlay data path (4789/udp).

Each node's engine API is published on 127.0.0.1 only: the manager's at ``--api-port`` (the
``docker:host`` a stack on the cluster names), worker i's at ``--api-port + i``. Ports a stack
publishes (its live and preview ports) reach the traffic nodes through the **edge**
(simulator/edge.py): swarm's routing mesh needs IPVS, which the nodes' kernel here lacks, so the
proxies publish in host mode on the workers and the edge, a load balancer on the cluster's network,
publishes each port on 127.0.0.1 and balances it over them.

Images reach the nodes from the private registry (simulator/registry.py) by digest when it runs:
the registry container joins the cluster's network, so the nodes reach it by its container name;
they trust it as an insecure (plain HTTP) registry because every node's engine is started with
``--insecure-registry=<the network's subnet>``. With no registry, an image is streamed to each
node (``docker save`` | the node's ``docker load``). Either way the node's image ID must be the one
this machine's engine has: image IDs are content digests.
"""

from __future__ import annotations

import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import docker
import docker.errors
import requests

from simulator.edge import EDGE_ROLE, Edge
from simulator.edge_config import EdgeServer
from simulator.errors import CutoverError
from simulator.images import DEFAULT_BASE_IMAGE, short_id
from simulator.nodes import ENGINE_PORT, NODE_IMAGE, node_build, run_options
from simulator.registry import USER as STORE_USER
from simulator.registry import ArtefactStore, password
from stacks.image_builds import ImageBuild, proxy_image_build
from stacks.ownership import MANAGED_BY, SIMULATOR

PREFIX = "cutover-cluster-"
CLUSTER_LABEL = "cutover.cluster"
ROLE_LABEL = "cutover.cluster-role"
API_PORT_LABEL = "cutover.cluster-api-port"
DEFAULT_NAME = "local"
DEFAULT_WORKERS = 2
# api-port + i for worker i: ten ports cover a manager and nine workers; more nodes than that is
# more than one machine's Docker-in-Docker is good for.
MAX_WORKERS = 9
DEFAULT_API_PORT = 23761
SWARM_PORT = 2377
# A node's engine answers within seconds; the deadline covers a cold overlay2 volume on a busy machine.
ENGINE_DEADLINE_S = 60
# From `swarm join` to the manager listing the node Ready (its first heartbeat).
READY_DEADLINE_S = 60
REGISTRY_PORT_INSIDE = 5000
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")

# Swarm node labels, the placement constraints a stack on the cluster uses
# (`node.labels.cutover.database == true`). The shared database sits on the manager: the node the
# cluster cannot lose anyway (one manager, no quorum without it), so losing a worker never touches
# the data. The proxies and the app's tasks take the workers: losing one leaves the other.
DATABASE_LABEL = "cutover.database"
TRAFFIC_LABEL = "cutover.traffic"
NODE_LABELS = {"manager": {DATABASE_LABEL: "true"}, "worker": {TRAFFIC_LABEL: "true"}}


@dataclass(frozen=True)
class NodePlan:
    container: str  # the node's container (and its hostname, so `docker node ls` names it the same)
    role: str  # manager | worker
    api_port: int  # its engine's API on 127.0.0.1
    labels: dict[str, str] = field(default_factory=dict)  # swarm node labels

    @property
    def volume(self) -> str:
        return f"{self.container}-data"

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.api_port}"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise CutoverError(f"cluster name {name!r} must be 1 to 31 lowercase letters, digits or dashes, starting with a letter or digit.")
    return name


def plan(name: str, workers: int = DEFAULT_WORKERS, api_port: int = DEFAULT_API_PORT) -> list[NodePlan]:
    """The nodes of cluster ``name``: the manager first, then worker-1..worker-N (pure)."""
    check_name(name)
    if not 0 <= workers <= MAX_WORKERS:
        raise CutoverError(f"--workers must be from 0 to {MAX_WORKERS}, got {workers}.")
    if not 1024 <= api_port <= 65535 - workers:
        raise CutoverError(f"--api-port must leave room for {workers + 1} ports from it below 65536 (and be above 1023), got {api_port}.")
    nodes = [NodePlan(f"{PREFIX}{name}-manager", "manager", api_port, dict(NODE_LABELS["manager"]))]
    nodes += [NodePlan(f"{PREFIX}{name}-worker-{i}", "worker", api_port + i, dict(NODE_LABELS["worker"])) for i in range(1, workers + 1)]
    return nodes


def network_name(name: str) -> str:
    return f"{PREFIX}{name}"


def edge_name(name: str) -> str:
    return f"{PREFIX}{name}-edge"


def traffic_servers(name: str, nodes: list[NodePlan]) -> list[EdgeServer]:
    """The edge's servers: every node labelled for traffic (the workers), named by their container
    (Docker's DNS on the cluster network follows a node's address across restarts)."""
    return [EdgeServer(n.container.removeprefix(f"{PREFIX}{name}-"), n.container) for n in nodes if n.labels.get(TRAFFIC_LABEL) == "true"]


def object_labels(name: str, role: str | None = None, api_port: int | None = None) -> dict[str, str]:
    labels = {"cutover.project": "cutover", CLUSTER_LABEL: name, MANAGED_BY: SIMULATOR}
    if role:
        labels[ROLE_LABEL] = role
    if api_port:
        labels[API_PORT_LABEL] = str(api_port)
    return labels


def engine_flags(subnet: str) -> list[str]:
    """The node engine's flags beyond images/node's own: trust registries on the cluster's network
    (plain HTTP, resolved by container name to an address in ``subnet``)."""
    return [f"--insecure-registry={subnet}"]


def memory_bytes(stats: dict) -> int:
    """A container's memory as `docker stats` shows it: usage less the page cache it can drop."""
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage") or 0
    details = memory.get("stats") or {}
    cache = details.get("inactive_file", details.get("total_inactive_file", details.get("cache", 0)))
    return max(usage - cache, 0)


@dataclass
class Distribution:
    via: str  # registry | stream
    image_id: str
    reference: str  # what the nodes know the image as (by digest when it came from the registry)
    seconds: dict[str, float]  # per node, from asking to having it (the nodes work in parallel)
    total_s: float  # all of it: prepare_s, then the nodes
    prepare_s: float  # the push to the store, or the one `docker save`


class Cluster:
    def __init__(self, client: docker.DockerClient, name: str = DEFAULT_NAME, say: Callable[[str], None] = print,
                 base_image: str = DEFAULT_BASE_IMAGE) -> None:
        self.client = client
        self.name = check_name(name)
        self.say = say
        self.base_image = base_image

    @property
    def network(self) -> str:
        return network_name(self.name)

    @property
    def edge(self) -> Edge:
        return Edge(self.client, edge_name(self.name), self.network, object_labels(self.name, EDGE_ROLE), self.say)

    # --- what exists ---------------------------------------------------------------------------
    def containers(self) -> list:
        return self.client.containers.list(all=True, filters={"label": f"{CLUSTER_LABEL}={self.name}"})

    def existing_plan(self) -> list[NodePlan]:
        """The nodes that exist, as a plan (manager first), read from their labels."""
        nodes = []
        for container in self.containers():
            labels = container.labels
            role = labels.get(ROLE_LABEL)
            if role in NODE_LABELS and labels.get(API_PORT_LABEL, "").isdigit():
                nodes.append(NodePlan(container.name, role, int(labels[API_PORT_LABEL]), dict(NODE_LABELS[role])))
        return sorted(nodes, key=lambda n: (n.role != "manager", n.api_port))

    def engine(self, node: NodePlan, timeout: int = 30) -> docker.DockerClient:
        return docker.DockerClient(base_url=node.url, timeout=timeout)

    def manager(self) -> NodePlan:
        nodes = [n for n in self.existing_plan() if n.role == "manager"]
        if not nodes:
            raise CutoverError(f"cluster {self.name} has no manager node; start it with 'cutover cluster up --name {self.name}'.")
        return nodes[0]

    # --- up ------------------------------------------------------------------------------------
    def up(self, workers: int = DEFAULT_WORKERS, api_port: int = DEFAULT_API_PORT, publish: tuple[int, ...] = ()) -> list[NodePlan]:
        """Start what is missing and join it; a second run with the same arguments changes nothing."""
        wanted = plan(self.name, workers, api_port)
        clash = sorted(set(publish) & {n.api_port for n in wanted})
        if clash:
            raise CutoverError(f"--publish {clash[0]} is the engine port of a node of cluster {self.name} "
                               f"(ports {wanted[0].api_port} to {wanted[-1].api_port}); publish another port.")
        if publish and workers == 0:
            raise CutoverError(f"--publish needs at least one worker: the edge balances PORT over the traffic nodes, "
                               f"which are the workers of cluster {self.name}.")
        self._check_compatible(wanted, publish)
        self._build(node_build(self.base_image), "node")
        if publish:
            self._build(proxy_image_build(self.base_image), "edge")
        subnet = self._ensure_network()
        for node in wanted:
            self._ensure_node(node, subnet)
        for node in wanted:
            self._wait_engine(node)
        manager, others = wanted[0], wanted[1:]
        manager_ip = self._ip(manager)
        manager_engine = self.engine(manager)
        if manager_engine.info()["Swarm"]["LocalNodeState"] != "active":
            self.say(f"swarm init on {manager.container} ({manager_ip})")
            manager_engine.swarm.init(advertise_addr=manager_ip, listen_addr=f"0.0.0.0:{SWARM_PORT}")
        manager_engine.swarm.reload()
        token = manager_engine.swarm.attrs["JoinTokens"]["Worker"]
        members = {n.id for n in manager_engine.nodes.list()}
        for node in others:
            self._join(node, manager_ip, token, members)
        node_ids = {node.container: self.engine(node).info()["Swarm"]["NodeID"] for node in wanted}
        self._wait_ready(manager_engine, node_ids)
        self._forget_stale(manager_engine, set(node_ids.values()))
        for node in wanted:
            self._label(manager_engine.nodes.get(node_ids[node.container]), node.labels)
        if publish:
            self.edge.ensure(publish, traffic_servers(self.name, wanted))
        return wanted

    def _check_compatible(self, wanted: list[NodePlan], publish: tuple[int, ...]) -> None:
        existing = self.existing_plan()
        if not existing:
            return
        if existing[0].role == "manager":
            bindings = self.client.containers.get(existing[0].container).attrs["HostConfig"].get("PortBindings") or {}
            published = sorted(int(p.split("/")[0]) for p in bindings if p != f"{ENGINE_PORT}/tcp")
            if published:
                # An older cutover published stack ports on the manager (through a routing mesh that
                # does not work here); its container cannot unpublish them.
                raise CutoverError(f"cluster {self.name}'s manager publishes {_ports(published)} itself (made by an older cutover); "
                                   f"'cutover cluster down --name {self.name}' and up again to publish through the edge.")
        edge_ports = self.edge.published()
        if edge_ports is not None and edge_ports != sorted(set(publish)):
            raise CutoverError(f"cluster {self.name}'s edge publishes {_ports(edge_ports)}, not {_ports(sorted(set(publish)))} "
                               f"(fixed when it was created); repeat its --publish or take the cluster down first.")
        have = {n.container: n.api_port for n in existing}
        extra = sorted(set(have) - {n.container for n in wanted})
        if extra:
            raise CutoverError(f"cluster {self.name} already has {', '.join(extra)}, more nodes than asked for; "
                               f"'cutover cluster down --name {self.name}' first to shrink it.")
        for node in wanted:
            if node.container in have and have[node.container] != node.api_port:
                raise CutoverError(f"cluster {self.name} publishes {node.container}'s engine on 127.0.0.1:{have[node.container]}, "
                                   f"not {node.api_port}; use --api-port {existing[0].api_port} or take it down first.")

    def _build(self, build: ImageBuild, what: str) -> None:
        try:
            self.client.images.get(self.base_image)
        except docker.errors.ImageNotFound:
            raise CutoverError(f"the base image {self.base_image} is missing; build it with 'make base-image' (images/base/bootstrap.sh).") from None
        # Rebuilt on every up like the stack's own images: the layer cache makes an unchanged one
        # take a second, and a changed images/node or images/proxy never lags behind.
        self.say(f"building {build.tag}")
        for chunk in self.client.api.build(path=str(build.context_path()), dockerfile=build.dockerfile, tag=build.tag,
                                           buildargs=dict(build.args), rm=True, forcerm=True, decode=True):
            if "error" in chunk:
                raise CutoverError(f"building the {what} image {build.tag} failed: {chunk['error'].strip()}")

    def _ensure_network(self) -> str:
        try:
            network = self.client.networks.get(self.network)
        except docker.errors.NotFound:
            self.say(f"creating network {self.network}")
            network = self.client.networks.create(self.network, driver="bridge", labels=object_labels(self.name))
        network.reload()
        configs = network.attrs.get("IPAM", {}).get("Config") or []
        if not configs or not configs[0].get("Subnet"):
            raise CutoverError(f"network {self.network} has no subnet the nodes could trust registries on; remove it and run up again.")
        return configs[0]["Subnet"]

    def _ensure_node(self, node: NodePlan, subnet: str) -> None:
        try:
            container = self.client.containers.get(node.container)
        except docker.errors.NotFound:
            container = None
        if container is not None:
            if container.status != "running":
                self.say(f"starting {node.container}")
                try:
                    container.start()
                except docker.errors.APIError as exc:
                    raise CutoverError(f"node {node.container} of cluster {self.name} could not start: {exc.explanation or exc}.") from None
            return
        try:
            self.client.volumes.get(node.volume)
        except docker.errors.NotFound:
            self.client.volumes.create(node.volume, labels=object_labels(self.name))
        self.say(f"starting {node.container} (engine on 127.0.0.1:{node.api_port})")
        ports = {f"{ENGINE_PORT}/tcp": ("127.0.0.1", node.api_port)}
        try:
            self.client.containers.run(
                NODE_IMAGE,
                command=engine_flags(subnet),
                name=node.container,
                hostname=node.container,
                detach=True,
                network=self.network,
                ports=ports,
                labels=object_labels(self.name, node.role, node.api_port),
                **run_options(node.volume),
            )
        except docker.errors.APIError as exc:
            raise CutoverError(f"node {node.container} of cluster {self.name} could not start: {exc.explanation or exc}.") from None

    def _wait_engine(self, node: NodePlan) -> None:
        end = time.monotonic() + ENGINE_DEADLINE_S
        while True:
            try:
                self.engine(node, timeout=5).ping()
                return
            except (docker.errors.DockerException, requests.RequestException, OSError):
                pass
            container = self.client.containers.get(node.container)
            if container.status in ("exited", "dead") or time.monotonic() > end:
                tail = container.logs(tail=1).decode(errors="replace").strip()
                why = f"exited ({tail})" if container.status in ("exited", "dead") else f"did not answer on {node.url} within {ENGINE_DEADLINE_S}s"
                raise CutoverError(f"node {node.container}'s engine {why}; see 'docker logs {node.container}'.")
            time.sleep(0.3)

    def _ip(self, node: NodePlan) -> str:
        container = self.client.containers.get(node.container)
        address = (container.attrs["NetworkSettings"]["Networks"].get(self.network) or {}).get("IPAddress")
        if not address:
            raise CutoverError(f"node {node.container} has no address on network {self.network}; take the cluster down and up again.")
        return address

    def _join(self, node: NodePlan, manager_ip: str, token: str, members: set[str]) -> None:
        engine = self.engine(node)
        swarm = engine.info()["Swarm"]
        if swarm["LocalNodeState"] == "active" and swarm["NodeID"] in members:
            return
        if swarm["LocalNodeState"] != "inactive":
            # A member of a swarm that is gone (the manager was recreated): leave it for ours.
            engine.swarm.leave(force=True)
        self.say(f"joining {node.container}")
        try:
            engine.swarm.join(remote_addrs=[f"{manager_ip}:{SWARM_PORT}"], join_token=token,
                              advertise_addr=self._ip(node), listen_addr=f"0.0.0.0:{SWARM_PORT}")
        except docker.errors.APIError as exc:
            raise CutoverError(f"node {node.container} could not join the swarm at {manager_ip}:{SWARM_PORT}: {exc.explanation or exc}.") from None

    def _wait_ready(self, manager: docker.DockerClient, node_ids: dict[str, str]) -> None:
        end = time.monotonic() + READY_DEADLINE_S
        while True:
            states = {n.id: n.attrs["Status"]["State"] for n in manager.nodes.list()}
            waiting = [name for name, node_id in node_ids.items() if states.get(node_id) != "ready"]
            if not waiting:
                return
            if time.monotonic() > end:
                raise CutoverError(f"the swarm manager did not list {', '.join(waiting)} as Ready within {READY_DEADLINE_S}s; "
                                   f"see 'cutover cluster status --name {self.name}'.")
            time.sleep(0.3)

    def _forget_stale(self, manager: docker.DockerClient, current: set[str]) -> None:
        # A node container recreated joins as a new swarm node; the old one stays listed as Down.
        for node in manager.nodes.list():
            if node.id not in current and node.attrs["Status"]["State"] == "down":
                node.remove(force=True)

    @staticmethod
    def _label(node, labels: dict[str, str]) -> None:
        spec = node.attrs["Spec"]
        if all(spec.get("Labels", {}).get(k) == v for k, v in labels.items()):
            return
        node.update({**spec, "Labels": {**spec.get("Labels", {}), **labels}})

    # --- status --------------------------------------------------------------------------------
    def status(self) -> list[dict]:
        """One row per node container: its state, engine, swarm role, availability, labels, memory;
        then the edge's row, if there is an edge, with its ports and its servers' states."""
        existing = self.existing_plan()
        swarm_nodes: dict[str, dict] = {}
        managers = [n for n in existing if n.role == "manager"]
        if managers:
            try:
                for node in self.engine(managers[0], timeout=5).nodes.list():
                    swarm_nodes[node.attrs["Description"]["Hostname"]] = node.attrs
            except (docker.errors.DockerException, requests.RequestException):
                pass  # the manager's engine is down: the rows say so
        rows = []
        for node in existing:
            container = self.client.containers.get(node.container)
            row = {"node": node.container, "role": node.role, "container": container.status, "engine": node.url,
                   "swarm": None, "availability": None, "labels": {}, "memory_bytes": None}
            if container.status == "running":
                row["memory_bytes"] = memory_bytes(container.stats(stream=False))
            attrs = swarm_nodes.get(node.container)
            if attrs:
                row.update(swarm=attrs["Status"]["State"], availability=attrs["Spec"].get("Availability"),
                           labels=attrs["Spec"].get("Labels") or {})
            rows.append(row)
        edge = self.edge.status()
        if edge is not None:
            container = self.edge.find()
            rows.append({"node": edge["container"], "role": EDGE_ROLE, "container": edge["state"], "engine": None, "swarm": None,
                         "availability": None, "labels": {}, "ports": edge["ports"], "servers": edge["servers"],
                         "memory_bytes": memory_bytes(container.stats(stream=False)) if edge["state"] == "running" else None})
        return rows

    # --- down ----------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove the nodes, their volumes and the network; return what was removed."""
        removed = []
        for container in self.containers():
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
        for volume in self.client.volumes.list(filters={"label": f"{CLUSTER_LABEL}={self.name}"}):
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
        try:
            network = self.client.networks.get(self.network)
        except docker.errors.NotFound:
            return removed
        network.reload()
        # The artefact store joined the network to serve the nodes; it stays running for this machine.
        for endpoint in (network.attrs.get("Containers") or {}):
            network.disconnect(endpoint, force=True)
        network.remove()
        removed.append(f"network {self.network}")
        return removed

    # --- images --------------------------------------------------------------------------------
    def distribute(self, ref: str, via: str = "auto", store: ArtefactStore | None = None) -> Distribution:
        """Get the image ``ref`` of this machine's engine onto every node, as the same image ID.

        via=registry: pushed to the running artefact store, pulled by every node by digest;
        via=stream: ``docker save`` once, loaded into every node; via=auto: the store when it runs.
        """
        if via not in ("auto", "registry", "stream"):
            raise CutoverError(f"--via must be auto, registry or stream, got {via!r}.")
        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise CutoverError(f"image {ref} is not on this machine's engine; build or pull it first.") from None
        nodes = self.existing_plan()
        if not nodes:
            raise CutoverError(f"cluster {self.name} has no nodes; start it with 'cutover cluster up --name {self.name}'.")
        store = store or (ArtefactStore.running(self.client, self.say) if via != "stream" else None)
        if via == "registry" and store is None:
            raise CutoverError("no artefact store is running for --via registry; start one with 'cutover registry start'.")
        start = time.monotonic()
        if store is not None:
            reference, seconds, prepare_s = self._from_registry(image, ref, store, nodes)
            used = "registry"
        else:
            reference, seconds, prepare_s = self._streamed(image, ref, nodes)
            used = "stream"
        return Distribution(used, image.id, reference, seconds, time.monotonic() - start, prepare_s)

    def _from_registry(self, image, ref: str, store: ArtefactStore, nodes: list[NodePlan]) -> tuple[str, dict[str, float], float]:
        began = time.monotonic()
        self._attach_store(store)
        repository, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
        # The store holds artefacts by app name; cluster images go under cluster/ so they never
        # shadow one.
        name = "cluster/" + re.sub(r"[^a-z0-9._/-]", "-", (repository or ref).lower()).strip("/")
        digest = store.push(image.id, name, tag or "latest")
        reference = f"{store.name}:{REGISTRY_PORT_INSIDE}/{name}@{digest}"
        prepare_s = time.monotonic() - began
        auth = {"username": STORE_USER, "password": password()}

        def pull(node: NodePlan) -> float:
            began = time.monotonic()
            try:
                pulled = self.engine(node, timeout=300).images.pull(reference, auth_config=auth)
            except docker.errors.APIError as exc:
                raise CutoverError(f"node {node.container} could not pull {reference}: {exc.explanation or exc}.") from None
            self._check_same(node, pulled.id, image.id, reference)
            return time.monotonic() - began

        return reference, self._each(nodes, pull), prepare_s

    def _attach_store(self, store: ArtefactStore) -> None:
        network = self.client.networks.get(self.network)
        network.reload()
        container = self.client.containers.get(store.name)
        if container.id not in (network.attrs.get("Containers") or {}):
            self.say(f"connecting the artefact store {store.name} to {self.network}")
            network.connect(container)

    def _streamed(self, image, ref: str, nodes: list[NodePlan]) -> tuple[str, dict[str, float], float]:
        began = time.monotonic()
        # Saved once to a file, then loaded by every node in parallel: one save costs as much as
        # one load, and a pipe per node would save it N times.
        with tempfile.NamedTemporaryFile(prefix="cutover-cluster-image-", suffix=".tar") as archive:
            for chunk in self.client.api.get_image(ref):
                archive.write(chunk)
            archive.flush()
            prepare_s = time.monotonic() - began

            def load(node: NodePlan) -> float:
                began = time.monotonic()
                with open(archive.name, "rb") as data:
                    self.engine(node, timeout=300).api.load_image(data)
                self._check_same(node, self.engine(node).images.get(image.id).id, image.id, ref)
                return time.monotonic() - began

            return ref, self._each(nodes, load), prepare_s

    @staticmethod
    def _check_same(node: NodePlan, found: str, expected: str, reference: str) -> None:
        if found != expected:
            raise CutoverError(f"node {node.container} got {reference} as {short_id(found)}, not {short_id(expected)} as on this machine.")

    @staticmethod
    def _each(nodes: list[NodePlan], work: Callable[[NodePlan], float]) -> dict[str, float]:
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            return dict(zip((n.container for n in nodes), pool.map(work, nodes)))


def _ports(ports: list[int]) -> str:
    if not ports:
        return "no port"
    return ("port " if len(ports) == 1 else "ports ") + ", ".join(map(str, ports))


def from_env(name: str = DEFAULT_NAME, say: Callable[[str], None] = print) -> Cluster:
    """The cluster ``name`` on this machine's engine (one sentence when no engine answers)."""
    from simulator.docker_driver import connect

    return Cluster(connect(), name, say)
