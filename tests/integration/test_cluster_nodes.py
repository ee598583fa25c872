"""A real multi-node swarm on this machine (simulator/cluster.py): three Docker-in-Docker nodes form
a swarm (1 manager, 2 workers, all Ready, labelled), an image reaches every node by digest from the
artefact store and as the same image ID by streaming, an overlay network spans the nodes, a
replicated service spreads over them and its tasks answer each other through `tasks.<service>`;
the edge (simulator/edge.py) balances 127.0.0.1:EDGE_PORT over a host-mode service on the workers,
stops sending to a worker whose container is killed, takes it back after `up`, and takes in a
worker added by a later `up`; `down` leaves nothing behind. Prints its figures (formation,
distribution, memory per node, the edge's failover).

The image the tests copy to the nodes is the probe (images/probe: busybox on an empty root, 2 MiB),
not the 175 MiB base image: those copies were most of this file's 203-425 s.

Runs only when selected: `make cluster-test` (pytest -m cluster); not part of `make test` yet.
Another cluster name and ports (e.g. beside a colleague's run): CUTOVER_TEST_CLUSTER,
CUTOVER_TEST_CLUSTER_API_PORT (and the next 3), CUTOVER_TEST_REGISTRY_PORT, CUTOVER_TEST_EDGE_PORT.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import threading
import time

import docker
import docker.errors
import docker.types
import pytest

from simulator.cluster import DATABASE_LABEL, TRAFFIC_LABEL, Cluster, edge_name, network_name
from simulator.errors import CutoverError
from simulator.images import DEFAULT_BASE_IMAGE
from simulator.registry import ArtefactStore
from stacks.image_builds import ImageBuild
from tests.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

NAME = os.environ.get("CUTOVER_TEST_CLUSTER", "nodes")  # every object: cutover-cluster-NAME-*, labelled cutover.cluster=NAME
API_PORT = int(os.environ.get("CUTOVER_TEST_CLUSTER_API_PORT", "23765"))  # beside a default cluster (23761-23763); 4 nodes
REGISTRY_PORT = int(os.environ.get("CUTOVER_TEST_REGISTRY_PORT", "19650"))
EDGE_PORT = int(os.environ.get("CUTOVER_TEST_EDGE_PORT", "19651"))
SERVICE = f"cutover-{NAME}-echo"
WEB = f"cutover-{NAME}-web"
OVERLAY = f"cutover-{NAME}-overlay"
REPLICAS = 4
ECHO_PORT = 8000
PROBE = ImageBuild("cutover-probe:1", "images/probe", "Dockerfile", (("BASE_IMAGE", DEFAULT_BASE_IMAGE),))
# Each task answers HTTP on ECHO_PORT with its hostname (busybox httpd, a file written at start).
ECHO = f"mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p {ECHO_PORT} -h /tmp/www"
DEADLINE_S = 60
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def host():
    return docker.from_env(timeout=300)


@pytest.fixture(scope="module")
def store(host, state_dir):
    build = ImageBuild("cutover-registry:1", "images/registry", "Dockerfile", (("BASE_IMAGE", DEFAULT_BASE_IMAGE),))
    store = ArtefactStore(host, REGISTRY_PORT, print)
    store.stop(with_data=True)  # its password belongs to this session's state directory
    store.start(lambda: host.images.build(path=str(build.context_path()), tag=build.tag, buildargs=dict(build.args), rm=True))
    yield store
    store.stop(with_data=True)


@pytest.fixture(scope="module")
def probe(host):
    """The 2 MiB image every test copies to the nodes (built once; the cache makes it ~1 s)."""
    host.images.build(path=str(PROBE.context_path()), tag=PROBE.tag, buildargs=dict(PROBE.args), rm=True)
    return PROBE.tag


@pytest.fixture(scope="module")
def cluster(host):
    cluster = Cluster(host, NAME)
    cluster.down()  # a run killed half-way left some behind
    started = time.monotonic()
    cluster.up(workers=2, api_port=API_PORT, publish=(EDGE_PORT,))
    FIGURES["swarm formation (s)"] = round(time.monotonic() - started, 1)
    yield cluster
    cluster.down()
    print("\ncluster figures:", FIGURES)


def engines(cluster: Cluster) -> dict[str, docker.DockerClient]:
    return {node.container: cluster.engine(node) for node in cluster.existing_plan()}


def test_three_nodes_form_a_swarm_all_ready_and_labelled(cluster):
    manager = docker.DockerClient(base_url=f"tcp://127.0.0.1:{API_PORT}")
    nodes = {n.attrs["Description"]["Hostname"]: n.attrs for n in manager.nodes.list()}
    assert sorted(nodes) == [f"cutover-cluster-{NAME}-manager", f"cutover-cluster-{NAME}-worker-1", f"cutover-cluster-{NAME}-worker-2"]
    assert all(n["Status"]["State"] == "ready" for n in nodes.values()), {h: n["Status"]["State"] for h, n in nodes.items()}
    assert [h for h, n in nodes.items() if n["Spec"]["Role"] == "manager"] == [f"cutover-cluster-{NAME}-manager"]
    assert [h for h, n in nodes.items() if n["Spec"]["Labels"].get(DATABASE_LABEL) == "true"] == [f"cutover-cluster-{NAME}-manager"]
    assert sorted(h for h, n in nodes.items() if n["Spec"]["Labels"].get(TRAFFIC_LABEL) == "true") == [
        f"cutover-cluster-{NAME}-worker-1", f"cutover-cluster-{NAME}-worker-2"]
    # The engines answer on loopback only, and publish nothing else: stack ports go through the edge.
    host_ports = [p for node in cluster.existing_plan() for p in cluster.client.containers.get(node.container).ports.get("2375/tcp", [])]
    assert host_ports and all(p["HostIp"] == "127.0.0.1" for p in host_ports), host_ports
    assert all(list(cluster.client.containers.get(n.container).ports) == ["2375/tcp"] for n in cluster.existing_plan())
    # (the proxy image's EXPOSEd 8080/8081 are listed, unpublished: None)
    edge_ports = {port: bound for port, bound in cluster.client.containers.get(edge_name(NAME)).ports.items() if bound}
    assert list(edge_ports) == [f"{EDGE_PORT}/tcp"] and all(p["HostIp"] == "127.0.0.1" for p in edge_ports[f"{EDGE_PORT}/tcp"]), edge_ports

    # up again: nothing changes (the same swarm nodes, no new ones).
    before = {n.id for n in manager.nodes.list()}
    started = time.monotonic()
    cluster.up(workers=2, api_port=API_PORT, publish=(EDGE_PORT,))
    FIGURES["second up (s)"] = round(time.monotonic() - started, 1)
    assert {n.id for n in manager.nodes.list()} == before

    FIGURES["memory per node, idle (MiB)"] = {short(row["node"]): round(row["memory_bytes"] / 2**20) for row in cluster.status()}
    # Other published ports than the edge's are refused, in one sentence, before anything changes.
    with pytest.raises(CutoverError, match=f"edge publishes port {EDGE_PORT}, not port {EDGE_PORT + 1}"):
        cluster.up(workers=2, api_port=API_PORT, publish=(EDGE_PORT + 1,))


def figure(distribution) -> dict:
    return {"total": round(distribution.total_s, 1), "push or save": round(distribution.prepare_s, 1),
            "per node": {short(k): round(v, 1) for k, v in distribution.seconds.items()}}


def short(node: str) -> str:
    return node.removeprefix(f"cutover-cluster-{NAME}-")


def test_an_image_reaches_every_node_by_stream_and_by_digest(cluster, store, host, probe):
    expected = host.images.get(probe).id
    FIGURES["image size (MiB)"] = round(host.images.get(probe).attrs["Size"] / 2**20, 1)
    streamed = cluster.distribute(probe, via="stream")
    assert streamed.via == "stream"
    for name, engine in engines(cluster).items():
        assert engine.images.get(probe).id == expected, name
    FIGURES["image by stream (s)"] = figure(streamed)

    # Gone from every node, then pulled from the store by digest: the same image ID again.
    for engine in engines(cluster).values():
        engine.images.remove(expected, force=True)
    by_registry = cluster.distribute(probe, via="registry", store=store)
    assert by_registry.via == "registry" and "@sha256:" in by_registry.reference
    for name, engine in engines(cluster).items():
        image = engine.images.get(by_registry.reference)
        assert image.id == expected, name
        assert by_registry.reference in image.attrs["RepoDigests"], (name, image.attrs["RepoDigests"])
    FIGURES["image by registry (s)"] = figure(by_registry)


def test_a_replicated_service_spreads_over_nodes_and_its_tasks_answer_each_other(cluster, store, probe):
    manager = docker.DockerClient(base_url=f"tcp://127.0.0.1:{API_PORT}")
    # Already on every node (the test above): the pull by digest finds every layer there.
    reference = cluster.distribute(probe, via="registry", store=store).reference
    overlay = manager.networks.create(OVERLAY, driver="overlay", attachable=True, labels={"cutover.cluster": NAME})
    manager.services.create(
        reference, command=["sh", "-c", ECHO], name=SERVICE, networks=[OVERLAY],
        mode=docker.types.ServiceMode("replicated", replicas=REPLICAS), labels={"cutover.cluster": NAME},
    )
    service = manager.services.get(SERVICE)

    def running():
        tasks = [t for t in service.tasks() if t["Status"]["State"] == "running"]
        return tasks if len(tasks) == REPLICAS else None

    tasks = wait_for(running, DEADLINE_S, f"{REPLICAS} running tasks of {SERVICE}")
    node_names = {n.id: n.attrs["Description"]["Hostname"] for n in manager.nodes.list()}
    placed = {node_names[t["NodeID"]] for t in tasks}
    assert len(placed) >= 2, placed
    # The overlay spans every node that runs a task (an overlay exists on a worker only while it has one).
    for name in placed:
        assert cluster.engine(next(n for n in cluster.existing_plan() if n.container == name)).networks.get(overlay.id), name

    addresses = {}
    for task in tasks:
        attachment = next(a for a in task["NetworksAttachments"] if a["Network"]["Spec"]["Name"] == OVERLAY)
        addresses[str(ipaddress.ip_interface(attachment["Addresses"][0]).ip)] = task
    plan = {n.container: n for n in cluster.existing_plan()}

    def container_of(task):
        engine = cluster.engine(plan[node_names[task["NodeID"]]])
        return engine.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])

    def in_task(task, script: str) -> str:
        code, output = container_of(task).exec_run(["sh", "-c", script])
        assert code == 0, output
        return output.decode()

    def answer_from(task, ip: str) -> str | None:
        container = container_of(task)
        # busybox wget has no timeout of its own; an empty answer is no answer.
        code, output = container.exec_run(["timeout", "5", "wget", "-q", "-O", "-", f"http://{ip}:{ECHO_PORT}/"])
        return output.decode().strip() if code == 0 else None

    asker = tasks[0]

    def resolved() -> set[str]:
        # busybox nslookup: the answers are "Address: <ip>" lines (the server's own line has a :53).
        return set(re.findall(r"^Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$", in_task(asker, f"nslookup tasks.{SERVICE}"), re.M))

    # A task on another node reaches the asker's DNS by gossip, a moment after it runs: CI once read
    # 2 of the 4 just after all 4 were running. Waiting for all of them is the contract (HAProxy's
    # server-template re-resolves the same way); a name that never appears still fails here.
    started = time.monotonic()
    last: list[set[str]] = [set()]

    def all_resolved() -> bool:
        last[:] = [resolved()]
        return last[0] == set(addresses)

    try:
        wait_for(all_resolved, DEADLINE_S, f"tasks.{SERVICE} resolving to {sorted(addresses)}")
    except AssertionError as late:
        raise AssertionError(f"{late}; it last resolved to {sorted(last[0])}") from None
    FIGURES["every task in tasks.<service> after running (s)"] = round(time.monotonic() - started, 2)
    # Every task answers the asker over the overlay, those on other nodes included.
    others = [ip for ip, task in addresses.items() if task["NodeID"] != asker["NodeID"]]
    assert others
    for ip in addresses:
        # The overlay's forwarding entry for a task comes by the same gossip as its name: retried
        # to the deadline, never assumed.
        answer = wait_for(lambda: answer_from(asker, ip), DEADLINE_S, f"an answer from {ip}:{ECHO_PORT} over the overlay")
        assert answer == addresses[ip]["Status"]["ContainerStatus"]["ContainerID"][:12], (ip, answer)

    FIGURES["memory per node, 4 tasks (MiB)"] = {short(row["node"]): round(row["memory_bytes"] / 2**20) for row in cluster.status()}
    service.remove()


def through_edge(timeout: float = 3.0) -> str:
    """One request on a new connection through the edge; the body names the node that answered."""
    connection = http.client.HTTPConnection("127.0.0.1", EDGE_PORT, timeout=timeout)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        return body
    finally:
        connection.close()


def answering(requests: int = 12) -> set[str]:
    nodes = set()
    for _ in range(requests):
        try:
            nodes.add(through_edge())
        except OSError:
            pass
    return nodes


class Load(threading.Thread):
    """Sequential requests through the edge, each on a new connection, until stopped (at most max_s)."""

    def __init__(self, max_s: float = 120) -> None:
        super().__init__(daemon=True)
        self.max_s = max_s
        self.results: list[tuple[float, str | None, float]] = []  # (when, node or None for a failure, seconds)
        self.done = threading.Event()

    def run(self) -> None:
        end = time.monotonic() + self.max_s
        while not self.done.is_set() and time.monotonic() < end:
            began = time.monotonic()
            try:
                node = through_edge()
            except OSError:
                node = None
            self.results.append((began, node, time.monotonic() - began))

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)


def edge_state(cluster: Cluster, node: str) -> str | None:
    for server in cluster.edge.servers() or []:
        if server["port"] == EDGE_PORT and server["node"] == short(node):
            return server["status"]
    return None


def workers(cluster: Cluster) -> list[str]:
    return [n.container for n in cluster.existing_plan() if n.role == "worker"]


def test_the_edge_balances_over_the_workers_and_stops_sending_to_a_dead_one(cluster, probe):
    manager = docker.DockerClient(base_url=f"tcp://127.0.0.1:{API_PORT}")
    cluster.distribute(probe, via="stream")  # by its tag (the test above left it on the nodes by digest only)
    # One task on each traffic node, its port published in host mode on that node (no routing mesh
    # here: no IPVS); its hostname is the node's, so every response names the node that answered.
    manager.services.create(
        probe, command=["sh", "-c", ECHO], name=WEB, hostname="{{.Node.Hostname}}", labels={"cutover.cluster": NAME},
        mode=docker.types.ServiceMode("global"), constraints=[f"node.labels.{TRAFFIC_LABEL}==true"],
        endpoint_spec=docker.types.EndpointSpec(mode="dnsrr", ports={EDGE_PORT: (ECHO_PORT, "tcp", "host")}),
    )
    nodes = workers(cluster)
    wait_for(lambda: answering() == set(nodes), DEADLINE_S, f"127.0.0.1:{EDGE_PORT} answered by {nodes}")

    victim, survivor = nodes[-1], nodes[0]
    load = Load()
    load.start()
    wait_for(lambda: sum(1 for _, node, _ in load.results if node) >= 20, DEADLINE_S, "20 requests through the edge before the kill")
    killed = time.monotonic()
    cluster.client.containers.get(victim).kill()
    # "UP", or "UP 1/2" (up, one check failed); anything else (DOWN, MAINT after DNS lost the name) is out.
    wait_for(lambda: not str(edge_state(cluster, victim)).startswith("UP"), DEADLINE_S, f"the edge marking {victim} out")
    marked_out_s = time.monotonic() - killed
    time.sleep(3)  # measurement window: 3 s of traffic after the edge marked the node out
    load.stop()
    after = [(t - killed, node, seconds) for t, node, seconds in load.results if t >= killed]
    failed = [t for t, node, _ in after if node is None]
    FIGURES["edge: worker killed"] = {
        "requests after the kill": len(after), "failed": len(failed),
        "last failure (s after kill)": round(max(failed), 2) if failed else None,
        "marked out (s after kill)": round(marked_out_s, 2),
        "slowest request (s)": round(max(seconds for _, _, seconds in after), 2),
        "edge state": edge_state(cluster, victim),
    }
    # Once out, the edge sends nothing to the dead node and nothing fails.
    settled = [node for t, node, _ in after if t > marked_out_s]
    assert settled and set(settled) == {survivor}, FIGURES["edge: worker killed"]
    # Checks every 500 ms, out after 2 misses (or at once when Docker's DNS drops the name): ~1 s here.
    assert marked_out_s < 10 and len(failed) <= 3, FIGURES["edge: worker killed"]

    # up again starts the node; swarm runs the global task there again; the edge takes it back.
    restarted = time.monotonic()
    cluster.up(workers=2, api_port=API_PORT, publish=(EDGE_PORT,))
    wait_for(lambda: victim in answering(), 90, f"{victim} answering through the edge again")
    FIGURES["edge: worker back after up (s)"] = round(time.monotonic() - restarted, 1)


def test_a_worker_added_by_a_later_up_joins_the_edge(cluster, probe):
    started = time.monotonic()
    cluster.up(workers=3, api_port=API_PORT, publish=(EDGE_PORT,))
    cluster.distribute(probe, via="stream")
    added = workers(cluster)[-1]
    assert added.endswith("worker-3") and edge_state(cluster, added) is not None
    wait_for(lambda: answering(18) == set(workers(cluster)), 90, f"127.0.0.1:{EDGE_PORT} answered by all three workers")
    FIGURES["edge: third worker answering after up (s)"] = round(time.monotonic() - started, 1)
    docker.DockerClient(base_url=f"tcp://127.0.0.1:{API_PORT}").services.get(WEB).remove()


def test_down_leaves_nothing_behind(cluster, store, host):
    removed = cluster.down()
    assert any(r.startswith("network ") for r in removed) and sum(r.startswith("volume ") for r in removed) == 4, removed
    assert f"container {edge_name(NAME)}" in removed, removed
    label = f"cutover.cluster={NAME}"
    assert host.containers.list(all=True, filters={"label": label}) == []
    assert host.volumes.list(filters={"label": label}) == []
    with pytest.raises(docker.errors.NotFound):
        host.networks.get(network_name(NAME))
    # The artefact store it borrowed still runs, off the cluster's network.
    container = host.containers.get(store.name)
    assert container.status == "running" and network_name(NAME) not in container.attrs["NetworkSettings"]["Networks"]
    assert cluster.down() == []  # a second down has nothing to do
