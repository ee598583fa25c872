"""A real multi-node swarm on this machine (simulator/cluster.py): three Docker-in-Docker nodes form
a swarm (1 manager, 2 workers, all Ready, labelled), an image reaches every node by digest from the
artefact store and as the same image ID by streaming, an overlay network spans the nodes, a
replicated service spreads over them and its tasks answer each other through `tasks.<service>`,
and `down` leaves nothing behind. Prints its figures (formation, distribution, memory per node).

Runs only when selected: `make cluster-test` (pytest -m cluster); not part of `make test` yet.
"""

from __future__ import annotations

import ipaddress
import time

import docker
import docker.errors
import docker.types
import pytest

from simulator.cluster import DATABASE_LABEL, TRAFFIC_LABEL, Cluster, network_name
from simulator.images import DEFAULT_BASE_IMAGE
from simulator.registry import ArtefactStore
from stacks.image_builds import ImageBuild

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

NAME = "nodes"  # every object: cutover-cluster-nodes-*, labelled cutover.cluster=nodes
API_PORT = 23765  # beside a default cluster (23761-23763), never on it
REGISTRY_PORT = 19650
SERVICE = "cutover-nodes-echo"
OVERLAY = "cutover-nodes-overlay"
REPLICAS = 4
ECHO_PORT = 8000
# Each task answers a TCP connection with its own hostname: perl-base is in the base image, so the
# service needs no image of its own.
ECHO = ("perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => %d, Listen => 16, ReuseAddr => 1) or die $!;"
        " while ($c = $s->accept) { print $c qx(hostname); close $c }'" % ECHO_PORT)
DEADLINE_S = 60
FIGURES: dict[str, object] = {}


def wait_for(condition, deadline_s: float, what: str):
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"{what} within {deadline_s}s"
        time.sleep(0.5)


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
def cluster(host):
    cluster = Cluster(host, NAME)
    cluster.down()  # a run killed half-way left some behind
    started = time.monotonic()
    cluster.up(workers=2, api_port=API_PORT)
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
    # The engines answer on loopback only.
    host_ports = [p for node in cluster.existing_plan() for p in cluster.client.containers.get(node.container).ports.get("2375/tcp", [])]
    assert host_ports and all(p["HostIp"] == "127.0.0.1" for p in host_ports), host_ports

    # up again: nothing changes (the same swarm nodes, no new ones).
    before = {n.id for n in manager.nodes.list()}
    started = time.monotonic()
    cluster.up(workers=2, api_port=API_PORT)
    FIGURES["second up (s)"] = round(time.monotonic() - started, 1)
    assert {n.id for n in manager.nodes.list()} == before

    FIGURES["memory per node, idle (MiB)"] = {short(row["node"]): round(row["memory_bytes"] / 2**20) for row in cluster.status()}


def figure(distribution) -> dict:
    return {"total": round(distribution.total_s, 1), "push or save": round(distribution.prepare_s, 1),
            "per node": {short(k): round(v, 1) for k, v in distribution.seconds.items()}}


def short(node: str) -> str:
    return node.removeprefix(f"cutover-cluster-{NAME}-")


def test_an_image_reaches_every_node_by_stream_and_by_digest(cluster, store, host):
    expected = host.images.get(DEFAULT_BASE_IMAGE).id
    FIGURES["image size (MiB)"] = round(host.images.get(DEFAULT_BASE_IMAGE).attrs["Size"] / 2**20)
    streamed = cluster.distribute(DEFAULT_BASE_IMAGE, via="stream")
    assert streamed.via == "stream"
    for name, engine in engines(cluster).items():
        assert engine.images.get(DEFAULT_BASE_IMAGE).id == expected, name
    FIGURES["image by stream (s)"] = figure(streamed)

    # Gone from every node, then pulled from the store by digest: the same image ID again.
    for engine in engines(cluster).values():
        engine.images.remove(expected, force=True)
    by_registry = cluster.distribute(DEFAULT_BASE_IMAGE, via="registry", store=store)
    assert by_registry.via == "registry" and "@sha256:" in by_registry.reference
    for name, engine in engines(cluster).items():
        image = engine.images.get(by_registry.reference)
        assert image.id == expected, name
        assert by_registry.reference in image.attrs["RepoDigests"], (name, image.attrs["RepoDigests"])
    FIGURES["image by registry (s)"] = figure(by_registry)


def test_a_replicated_service_spreads_over_nodes_and_its_tasks_answer_each_other(cluster, store):
    manager = docker.DockerClient(base_url=f"tcp://127.0.0.1:{API_PORT}")
    reference = cluster.distribute(DEFAULT_BASE_IMAGE, via="registry", store=store).reference
    overlay = manager.networks.create(OVERLAY, driver="overlay", attachable=True, labels={"cutover.cluster": NAME})
    manager.services.create(
        reference, command=["bash", "-c", ECHO], name=SERVICE, networks=[OVERLAY],
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

    def in_task(task, script: str) -> str:
        engine = cluster.engine(plan[node_names[task["NodeID"]]])
        container = engine.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        code, output = container.exec_run(["bash", "-c", script])
        assert code == 0, output
        return output.decode()

    asker = tasks[0]
    resolved = {line.split()[0] for line in in_task(asker, f"getent ahostsv4 tasks.{SERVICE}").splitlines() if line.strip()}
    assert resolved == set(addresses), (resolved, set(addresses))
    # Every task answers the asker over the overlay, those on other nodes included.
    others = [ip for ip, task in addresses.items() if task["NodeID"] != asker["NodeID"]]
    assert others
    for ip in addresses:
        answer = in_task(asker, f"exec 3<>/dev/tcp/{ip}/{ECHO_PORT}; cat <&3").strip()
        assert answer == addresses[ip]["Status"]["ContainerStatus"]["ContainerID"][:12], (ip, answer)

    FIGURES["memory per node, 4 tasks (MiB)"] = {short(row["node"]): round(row["memory_bytes"] / 2**20) for row in cluster.status()}
    service.remove()


def test_down_leaves_nothing_behind(cluster, store, host):
    removed = cluster.down()
    assert any(r.startswith("network ") for r in removed) and sum(r.startswith("volume ") for r in removed) == 3, removed
    label = f"cutover.cluster={NAME}"
    assert host.containers.list(all=True, filters={"label": label}) == []
    assert host.volumes.list(filters={"label": label}) == []
    with pytest.raises(docker.errors.NotFound):
        host.networks.get(network_name(NAME))
    # The artefact store it borrowed still runs, off the cluster's network.
    container = host.containers.get(store.name)
    assert container.status == "running" and network_name(NAME) not in container.attrs["NetworkSettings"]["Networks"]
    assert cluster.down() == []  # a second down has nothing to do
