"""The switch on a real swarm (the local multi-node swarm, simulator/cluster.py): a global proxy
service on the two traffic nodes, on the stack's app overlay and its control overlay, with the
swarm's own configs (stacks/proxy_config.py) and each colour a replicated service found through
``tasks.<service>``; ``flip_all`` flips both proxy tasks through one container on the control
network and ``read_all`` reads them back. Prints the spread.

Runs only when selected (-m cluster). Cluster ``flip``, engines on 127.0.0.1:23791-23793.
"""

from __future__ import annotations

import dataclasses
import time

import docker
import docker.types
import pytest

from simulator.cluster import Cluster
from simulator.errors import CutoverError, Refused
from simulator.swarm_switch import flip_all, read_all
from stacks.image_builds import REPO_ROOT
from stacks.proxy_config import COLOUR_MAP, HAPROXY_CONFIG_PATH, backend_path, render_base_config, render_swarm_backend
from stacks.spec import COLOURS, load_stack
from stacks.swarm_topology import CONTROL_SUBNET_ENV, control_network_name, control_subnet, overlay_network_name, service_name, stack_networks, traffic_constraint
from stacks.topology import PROXY_UID
from tests.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

NAME = "flip"
API_PORT = 23791
IMAGE = "flipx-proxy:1"
DEADLINE_S = 120
SPEC = dataclasses.replace(load_stack("cluster"), stack="flipx")


@pytest.fixture(scope="module")
def swarm():
    host = docker.from_env(timeout=300)
    host.images.build(path=str(REPO_ROOT / "images/proxy"), tag=IMAGE, buildargs={"BASE_IMAGE": SPEC.base_image}, rm=True, labels={"flipx.test": "swarm-switch"})
    cluster = Cluster(host, NAME)
    cluster.down()
    try:
        cluster.up(workers=2, api_port=API_PORT)
        started = time.monotonic()
        cluster.distribute(IMAGE, via="stream")
        print(f"\nproxy image on every node in {time.monotonic() - started:.1f}s")
        manager = docker.DockerClient(base_url=f"tcp://127.0.0.1:{API_PORT}", timeout=120)
        _deploy(manager)
        yield manager
    finally:
        cluster.down()


def _deploy(manager) -> None:
    """The stack's networks, both colours and the proxy, as swarm_topology describes them (the
    services through the SDK: the deploy-side executor is another module's)."""
    for n in stack_networks(SPEC):
        manager.networks.create(
            n.name, driver="overlay", attachable=n.attachable, options={"encrypted": ""} if n.encrypted else {},
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=n.subnet)]) if n.subnet else None,
        )
    app = (f"defaults\n  mode http\n  timeout client 5s\n  timeout server 5s\n  timeout connect 2s\n"
           f"frontend app\n  bind :{SPEC.app.port}\n  http-request return status 200 content-type text/plain string ok\n")
    for colour in COLOURS:
        manager.services.create(
            IMAGE, command=["sh", "-c", 'printf "%s" "$CONFIG" > /tmp/app.cfg && exec haproxy -db -f /tmp/app.cfg'], env=[f"CONFIG={app}"],
            name=service_name(SPEC, colour), mode=docker.types.ServiceMode("replicated", replicas=SPEC.pool_size),
            networks=[overlay_network_name(SPEC)], endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
        )
    files = {HAPROXY_CONFIG_PATH: render_base_config(), **{backend_path(c): render_swarm_backend(SPEC, c, service_name(SPEC, c), SPEC.app.port) for c in COLOURS}}
    configs = []
    for path, text in files.items():
        stem = path.rsplit("/", 1)[1].removesuffix(".cfg")
        config = manager.configs.create(name=f"{service_name(SPEC, 'proxy')}-{stem}", data=text.encode())
        configs.append(docker.types.ConfigReference(config.id, config.name, filename=path, uid=str(PROXY_UID), gid=str(PROXY_UID), mode=0o444))
    manager.services.create(
        IMAGE, name=service_name(SPEC, "proxy"), mode=docker.types.ServiceMode("global"), user="haproxy",
        constraints=[traffic_constraint(SPEC)], networks=[overlay_network_name(SPEC), control_network_name(SPEC)],
        env=[f"{CONTROL_SUBNET_ENV}={control_subnet(SPEC)}"], configs=configs,
        # No tmpfs on /run/haproxy: the nodes' dockerd (20.10) mounts a service's tmpfs there as
        # root:root 0750 whatever its mode (measured), and the haproxy user cannot write in it; the
        # image's own /run/haproxy (haproxy's) does.
        # No IPVS in the nodes' kernel: no virtual IP (docs/cluster.md); tasks.<service> is all we use.
        endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
        healthcheck=docker.types.Healthcheck(test=["CMD", "/usr/local/bin/proxy-healthcheck"], interval=1_000_000_000, timeout=2_000_000_000, retries=3),
    )


def _all_up(manager):
    try:
        states = read_all(manager, SPEC, IMAGE)
    except Refused:  # no proxy task running yet, or one still starting: not ready, look again
        return None
    ready = len(states) == 2 and all(s.error is None and s.up == {"blue": SPEC.pool_size, "green": SPEC.pool_size} for s in states)
    return states if ready else None


def test_every_proxy_task_flips_and_reports_the_new_colour(swarm):
    manager = swarm
    states = wait_for(lambda: _all_up(manager), DEADLINE_S, "both proxy tasks up, each seeing both colours' tasks UP")
    assert sorted(s.node for s in states) == ["cutover-cluster-flip-worker-1", "cutover-cluster-flip-worker-2"]
    assert {s.live for s in states} == {"blue"}
    report = flip_all(manager, SPEC, "green", IMAGE)
    assert sorted(p.node for p in report.proxies) == ["cutover-cluster-flip-worker-1", "cutover-cluster-flip-worker-2"]
    assert {(p.before, p.after) for p in report.proxies} == {("blue", "green")}
    assert {s.live for s in read_all(manager, SPEC, IMAGE)} == {"green"}
    # Each task's healthcheck copied the flip (it came over TCP) to the task's map file.
    for node_index in (1, 2):
        task = _proxy_task(node_index)
        wait_for(lambda: task.exec_run(["cat", COLOUR_MAP]).output.decode() == "live green\npreview blue\n", 30, f"the map file on worker {node_index} says green")
    back = flip_all(manager, SPEC, "blue", IMAGE)
    assert {s.live for s in read_all(manager, SPEC, IMAGE)} == {"blue"}
    print(f"\nswarm flip of 2 proxy tasks on 2 nodes: spread {report.spread_ms} ms to green, {back.spread_ms} ms back; {report.as_json()}")


def _proxy_task(node_index: int):
    """The proxy task's container on worker ``node_index``, through that node's engine."""
    (task,) = docker.DockerClient(base_url=f"tcp://127.0.0.1:{API_PORT + node_index}").containers.list(
        filters={"label": f"com.docker.swarm.service.name={service_name(SPEC, 'proxy')}"})
    return task


def _admin(task, line: str) -> str:
    result = task.exec_run(["proxy-admin", line])
    assert result.exit_code == 0, result.output
    return result.output.decode()


def test_one_task_seeing_the_colour_down_refuses_and_one_refusing_mid_way_is_flipped_back(swarm):
    """All or back across nodes: the second node's task first sees green down (refused, nothing
    flipped), then loses its map's preview key (the first node's task flips, the second's batch is
    half refused, both end on blue)."""
    manager = swarm
    wait_for(lambda: _all_up(manager), DEADLINE_S, "both proxy tasks up, each seeing both colours' tasks UP")
    second = _proxy_task(2)
    _admin(second, "set server green/green-1 state maint")
    try:
        with pytest.raises(Refused, match=r"on node cutover-cluster-flip-worker-2 refuses green: .*green-1 MAINT"):
            flip_all(manager, SPEC, "green", IMAGE)
        assert {s.live for s in read_all(manager, SPEC, IMAGE)} == {"blue"}
    finally:
        _admin(second, "set server green/green-1 state ready")
    wait_for(lambda: _all_up(manager), DEADLINE_S, "green-1 UP again")
    _admin(second, f"del map {COLOUR_MAP} preview")
    try:
        with pytest.raises(CutoverError, match=r"on node cutover-cluster-flip-worker-2 was not switched to green .*flipped back to their colour: \S+, \S+\.$") as failed:
            flip_all(manager, SPEC, "green", IMAGE)
        assert not isinstance(failed.value, Refused)
        assert {s.live for s in read_all(manager, SPEC, IMAGE)} == {"blue"}
    finally:
        _admin(second, f"add map {COLOUR_MAP} preview green")
