"""The simulator drives a swarm stack on the local multi-node swarm (simulator/swarm_ops.py): up
(both colours spread over both workers, the database on the manager, one proxy per worker
answering on its host-mode port at the worker's address), a second up that changes nothing,
deploy 2.0.0 to the idle colour (its expand migration ran, every idle task runs 2.0.0, healthy;
the live colour untouched), scale the idle colour 2 -> 4 without the proxy service's version
moving, and down leaving nothing on any node. Prints the time of each step.

The proxies are reached from this machine through a one-shot container on the cluster's bridge
network (``cutover-cluster-sim``), where the nodes' addresses are: host-mode ports are bound on the
node containers, which publish nothing but their engine API on 127.0.0.1.

Runs only when selected: `make cluster-test` (pytest -m cluster).
"""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest
import yaml

from simulator.cluster import Cluster, network_name
from simulator.images import DEFAULT_BASE_IMAGE
from simulator.swarm_ops import SwarmSimulator
from stacks.spec import load_stack

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

CLUSTER = "sim"
API_PORT = 23781  # engines on 127.0.0.1:23781 (manager), 23782-23783 (workers)
STACK = "simx"
LIVE_PORT, PREVIEW_PORT = 19681, 19682
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "cutover-app.yaml"
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def host():
    return docker.from_env(timeout=300)


@pytest.fixture(scope="module")
def cluster(host):
    cluster = Cluster(host, CLUSTER)
    began = time.monotonic()
    cluster.up(workers=2, api_port=API_PORT)
    FIGURES["cluster up"] = round(time.monotonic() - began, 1)
    yield cluster
    cluster.down()
    print("\nswarm stack figures (s):", FIGURES)


@pytest.fixture(scope="module")
def sim(cluster, state_dir, tmp_path_factory):
    stacks = tmp_path_factory.mktemp("swarm-stacks")
    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.cluster.yaml").read_text())["config"]
    config.update({"docker:host": f"tcp://127.0.0.1:{API_PORT}", "cutover:livePort": LIVE_PORT, "cutover:previewPort": PREVIEW_PORT, "cutover:app": str(DEMO)})
    (stacks / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": config}))
    sim = SwarmSimulator(load_stack(STACK, stacks), say=print)
    sim.down(with_volumes=True, with_ledger=True)  # a run killed half-way left some behind
    yield sim
    sim.down(with_volumes=True, with_ledger=True)


def timed(name: str, action):
    began = time.monotonic()
    result = action()
    FIGURES[name] = round(time.monotonic() - began, 1)
    return result


def node_address(host, node: str) -> str:
    return host.containers.get(node).attrs["NetworkSettings"]["Networks"][network_name(CLUSTER)]["IPAddress"]


def http_get(host, address: str, port: int, path: str) -> dict[str, str]:
    """GET through a one-shot container on the cluster's network (bash's /dev/tcp: the base image
    has no curl); returns the response's headers, lower-cased, and its status line as 'status'."""
    script = f"exec 3<>/dev/tcp/{address}/{port}; printf 'GET {path} HTTP/1.0\\r\\nHost: swarm\\r\\n\\r\\n' >&3; timeout 10 cat <&3"
    out = host.containers.run(DEFAULT_BASE_IMAGE, ["bash", "-c", script], network=network_name(CLUSTER), remove=True,
                              labels={"cutover.project": "cutover", "cutover.stack": STACK, "cutover.role": "probe"}).decode(errors="replace")
    head = out.split("\r\n\r\n", 1)[0].split("\r\n")
    return {"status": head[0], **{k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if ":" in line)}}


def nodes_of(status, role: str) -> dict[str, dict[str, int]]:
    return status.services[role].per_node()


def test_a_swarm_stack_up_deploy_scale_down(sim, cluster, host):
    manager, *workers = [n.container for n in cluster.existing_plan()]

    result = timed("up (from nothing)", sim.up)
    assert any(a.startswith("create service") for a in result.actions)
    assert any(a.startswith("expand migrations for 1.0.0") for a in result.actions), result.actions
    status = sim.status()
    for colour in ("blue", "green"):
        spread = nodes_of(status, colour)
        assert set(spread) == set(workers), (colour, spread)  # over both workers, none on the manager
        assert sum(row["healthy"] for row in spread.values()) == 2 and status.services[colour].version == "1.0.0"
    assert nodes_of(status, "db") == {manager: {"running": 1, "healthy": 1}}
    assert nodes_of(status, "proxy") == {w: {"running": 1, "healthy": 1} for w in workers}
    for worker in workers:
        answer = http_get(host, node_address(host, worker), LIVE_PORT, "/version")
        assert answer["status"].endswith("200 OK") and answer["x-app-colour"] == "blue" and answer["x-cutover-version"] == "1.0.0", (worker, answer)

    indexes = {role: s.version_index for role, s in status.services.items()}
    again = timed("second up", sim.up)
    assert again.actions == []
    assert {role: s.version_index for role, s in sim.status().services.items()} == indexes

    deployed = timed("deploy 2.0.0", lambda: sim.deploy("2.0.0"))
    assert deployed.colour == "green" and deployed.migrations, deployed  # 2.0.0's expand ran
    FIGURES.update({f"deploy: {k}": v for k, v in deployed.steps.items()})
    status = sim.status()
    green = status.services["green"]
    assert green.version == "2.0.0" and len(green.tasks) == 2
    assert all(t.state == "running" and t.health == "healthy" and t.version == "2.0.0" and t.image == deployed.image for t in green.tasks), green.tasks
    assert status.services["blue"].version_index == indexes["blue"] and status.services["proxy"].version_index == indexes["proxy"]
    for worker in workers:
        answer = http_get(host, node_address(host, worker), PREVIEW_PORT, "/version")
        assert answer["x-app-version"] == "2.0.0" and answer["x-cutover-version"] == "2.0.0", (worker, answer)
        assert http_get(host, node_address(host, worker), LIVE_PORT, "/version")["x-app-version"] == "1.0.0"

    scaled = timed("scale green 2 -> 4", lambda: sim.scale("green", 4))
    assert scaled.proxy_index_before == scaled.proxy_index_after is not None
    green = sim.status().services["green"]
    assert len(green.tasks) == 4 and all(t.state == "running" and t.health == "healthy" for t in green.tasks)
    assert set(green.per_node()) == set(workers)
    # Every one of the four answers through each proxy: swarm DNS filled the new slots.
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 4 and time.monotonic() < deadline:
        seen.add(http_get(host, node_address(host, workers[0]), PREVIEW_PORT, "/version")["x-app-instance"])
    assert len(seen) == 4, seen
    FIGURES["scale: until the proxy spread requests over 4 tasks"] = round(time.monotonic() - deadline + 60, 1)

    removed = timed("down", lambda: sim.down(with_volumes=True, with_ledger=True))
    assert removed
    engines = {n.container: cluster.engine(n) for n in cluster.existing_plan()}
    assert sim.swarm.stack_services(STACK) == []
    assert [n.name for n in engines[manager].networks.list() if n.name.startswith(f"cutover-{STACK}")] == []
    assert engines[manager].configs.list(filters={"label": f"cutover.stack={STACK}"}) == []
    for node, engine in engines.items():
        assert [v.name for v in engine.volumes.list() if v.name.startswith(f"cutover-{STACK}-")] == [], node
        assert engine.containers.list(all=True, filters={"label": f"cutover.stack={STACK}"}) == [], node
