"""The switch on a swarm (simulator/swarm_switch.py, images/proxy/proxy-fleet) without a swarm:
Docker's embedded DNS on a user-defined bridge network answers a name every container shares as an
alias with every one of them, as swarm DNS answers ``tasks.<service>``. So three real proxies (the
proxy image, the swarm's configs, the control socket from CUTOVER_CONTROL_SUBNET) and two tiny
backends per colour stand in for a stack's proxy tasks, and the real one-shot fleet container flips
them: all at once, refused when one proxy sees the colour down, flipped back when one refuses
mid-way, refused when the expected set is not the one DNS answers.
"""

from __future__ import annotations

import io
import tarfile

import docker
import docker.errors
import pytest

from simulator.errors import CutoverError, Refused
from simulator.swarm_switch import FlipReport, ProxyTask, flip_proxies, read_proxies
from stacks.image_builds import REPO_ROOT
from stacks.proxy_config import COLOUR_MAP, HAPROXY_CONFIG_PATH, backend_path, render_base_config, render_swarm_backend
from stacks.spec import COLOURS, load_stack
from stacks.topology import PROXY_UID
from tests.waiting import wait_for

pytestmark = pytest.mark.docker

PREFIX = "flipx"  # every object of this test: flipx-*, labelled flipx.test=swarm-switch
LABELS = {"flipx.test": "swarm-switch"}
IMAGE = "flipx-proxy:1"  # built from images/proxy under a tag of our own: never the stacks' cutover-proxy
NETWORK = f"{PREFIX}-control"
PROXY_DNS = f"tasks.{PREFIX}-proxy"
PROXIES = 3
DEADLINE_S = 60


def admin(container, line: str) -> str:
    result = container.exec_run(["proxy-admin", line])
    assert result.exit_code == 0, result.output
    return result.output.decode()


def live_of(container) -> str:
    # Read again on an empty reply: a cut-short read of the socket under load (simulator/proxy_api.py).
    routes = wait_for(lambda: {k: v for _, k, v in (line.split() for line in admin(container, f"show map {COLOUR_MAP}").splitlines() if line.strip())}, 5, f"{container.name}'s colour map")
    return routes["live"]


def _tar(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.uid, info.gid, info.mode = len(data), PROXY_UID, PROXY_UID, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _backend_config(port: int) -> str:
    # A colour's task: answers 200 to anything (the health check included).
    return f"defaults\n  mode http\n  timeout client 5s\n  timeout server 5s\n  timeout connect 2s\nfrontend app\n  bind :{port}\n  http-request return status 200 content-type text/plain string ok\n"


@pytest.fixture(scope="module")
def bench():
    client = docker.from_env(timeout=300)
    spec = load_stack("cluster")
    _remove_ours(client)
    client.images.build(path=str(REPO_ROOT / "images/proxy"), tag=IMAGE, buildargs={"BASE_IMAGE": spec.base_image}, rm=True, labels=LABELS)
    network = client.networks.create(NETWORK, driver="bridge", labels=LABELS)
    subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
    try:
        for colour in COLOURS:
            for index in (1, 2):
                backend = client.containers.create(
                    IMAGE, name=f"{PREFIX}-{colour}-{index}", entrypoint=["sh", "-c", 'printf "%s" "$CONFIG" > /tmp/app.cfg && exec haproxy -db -f /tmp/app.cfg'],
                    environment={"CONFIG": _backend_config(spec.app.port)}, labels=LABELS, network=NETWORK,
                    networking_config={NETWORK: client.api.create_endpoint_config(aliases=[f"tasks.{PREFIX}-{colour}"])},
                )
                backend.start()
        files = {HAPROXY_CONFIG_PATH: render_base_config(), **{backend_path(c): render_swarm_backend(spec, c, f"{PREFIX}-{c}", spec.app.port) for c in COLOURS}}
        state_dir = HAPROXY_CONFIG_PATH.rsplit("/", 1)[0]
        archive = _tar({path.removeprefix(state_dir + "/"): text for path, text in files.items()})
        proxies = []
        for index in range(1, PROXIES + 2):
            # The last one is a single-engine proxy: no CUTOVER_CONTROL_SUBNET, not in the alias.
            swarm_like = index <= PROXIES
            proxy = client.containers.create(
                IMAGE, name=f"{PREFIX}-proxy-{index}", labels=LABELS, network=NETWORK, user="haproxy",
                environment={"CUTOVER_CONTROL_SUBNET": subnet} if swarm_like else {},
                networking_config={NETWORK: client.api.create_endpoint_config(aliases=[PROXY_DNS] if swarm_like else [])},
                tmpfs={"/run/haproxy": f"uid={PROXY_UID},gid={PROXY_UID}", "/tmp": ""},
                # As on a swarm: the task's healthcheck also persists a flip that came over TCP.
                healthcheck={"test": ["CMD", "/usr/local/bin/proxy-healthcheck"], "interval": 500_000_000, "timeout": 2_000_000_000, "retries": 3},
            )
            proxy.put_archive(state_dir, archive)
            proxy.start()
            proxies.append(proxy)
        for proxy in proxies:
            proxy.reload()
            wait_for(lambda: proxy.exec_run(["proxy-admin", "show info"]).exit_code == 0, DEADLINE_S, f"{proxy.name}'s runtime API")
            for colour in COLOURS:
                wait_for(lambda: _up(proxy, colour) == 2, DEADLINE_S, f"{proxy.name} sees both {colour} tasks UP")
        tasks = [ProxyTask(p.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"], p.name) for p in proxies[:PROXIES]]
        yield client, proxies, tasks, proxies[PROXIES]
    finally:
        _remove_ours(client)


def _up(proxy, colour: str) -> int:
    stat = admin(proxy, "show stat -1 4 -1")
    return sum(1 for line in stat.splitlines() if line.startswith(f"{colour},") and line.split(",")[17] == "UP")


def _remove_ours(client) -> None:
    for c in client.containers.list(all=True, filters={"label": "flipx.test=swarm-switch"}):
        c.remove(force=True)
    for n in client.networks.list(names=[NETWORK]):
        n.remove()


@pytest.fixture
def on_blue(bench):
    """Every test starts with all proxies on blue (a test that flips leaves them as it found them)."""
    client, proxies, tasks, _ = bench
    for p in proxies:
        if live_of(p) != "blue":
            assert p.exec_run(["proxy-switch", "--force", "blue"]).exit_code == 0
    return bench


def test_the_single_engine_proxy_listens_on_no_tcp_socket_and_the_swarm_ones_on_their_control_address(bench):
    _, proxies, tasks, single = bench
    listening = single.exec_run(["ss", "-ltnH"]).output.decode()
    # 127.0.0.11: Docker's embedded DNS, in every container of a user-defined network.
    assert {line.split()[3] for line in listening.splitlines() if not line.split()[3].startswith("127.0.0.11:")} == {"0.0.0.0:8080", "0.0.0.0:8081"}, listening
    for proxy, task in zip(proxies, tasks):
        assert f"{task.address}:9999" in proxy.exec_run(["ss", "-ltnH"]).output.decode()


def test_proxy_switch_inside_a_proxy_is_as_on_one_engine_every_slot_counts_and_the_file_is_written(bench):
    """The unchanged single-engine path (docker exec proxy-switch): an empty server-template slot
    is a server that is not UP, unless --ignore-empty-slots; a local switch writes the map file."""
    _, _, _, single = bench
    refused = single.exec_run(["proxy-switch", "green"])
    assert refused.exit_code == 1 and "green-3 MAINT (resolution)" in refused.output.decode(), refused.output
    assert live_of(single) == "blue"
    try:
        assert single.exec_run(["proxy-switch", "--ignore-empty-slots", "green"]).exit_code == 0
        assert single.exec_run(["cat", COLOUR_MAP]).output.decode() == "live green\npreview blue\n"
    finally:
        single.exec_run(["proxy-switch", "--force", "blue"])


def test_flip_all_then_back_every_proxy_reports_the_new_colour_and_the_spread(on_blue):
    client, proxies, tasks, _ = on_blue
    report = flip_proxies(client, IMAGE, NETWORK, PROXY_DNS, tasks, "green", min_up=2, name_prefix=PREFIX)
    assert isinstance(report, FlipReport) and report.colour == "green"
    assert {(p.address, p.node, p.before, p.after) for p in report.proxies} == {(t.address, t.node, "blue", "green") for t in tasks}
    assert all(live_of(p) == "green" for p in proxies[:PROXIES])
    states = read_proxies(client, IMAGE, NETWORK, PROXY_DNS, tasks, name_prefix=PREFIX)
    assert [(s.live, s.up, s.servers, s.error) for s in states] == [("green", {"blue": 2, "green": 2}, {"blue": 2, "green": 2}, None)] * PROXIES
    # The flip came over TCP; each task's healthcheck copies it to its map file (a restart keeps it).
    for p in proxies[:PROXIES]:
        wait_for(lambda: p.exec_run(["cat", COLOUR_MAP]).output.decode() == "live green\npreview blue\n", DEADLINE_S, f"{p.name}'s map file says green")
    back = flip_proxies(client, IMAGE, NETWORK, PROXY_DNS, tasks, "blue", min_up=2, name_prefix=PREFIX)
    print(f"\nflip of {PROXIES} proxies: spread {report.spread_ms} ms to green, {back.spread_ms} ms back; {report.as_json()}")
    assert all(live_of(p) == "blue" for p in proxies[:PROXIES])
    assert 0 <= report.spread_ms < 10_000
    assert client.containers.list(all=True, filters={"label": "cutover.role=switch", "name": PREFIX}) == []


def test_a_proxy_that_sees_the_colour_down_refuses_and_nothing_is_flipped(on_blue):
    client, proxies, tasks, _ = on_blue
    admin(proxies[1], "set server green/green-1 state maint")
    try:
        with pytest.raises(Refused) as refused:
            flip_proxies(client, IMAGE, NETWORK, PROXY_DNS, tasks, "green", name_prefix=PREFIX)
        message = str(refused.value)
        assert tasks[1].address in message and tasks[1].node in message and "green-1 MAINT" in message, message
        assert all(live_of(p) == "blue" for p in proxies[:PROXIES])
    finally:
        admin(proxies[1], "set server green/green-1 state ready")
        wait_for(lambda: _up(proxies[1], "green") == 2, DEADLINE_S, "green-1 UP again")


def test_fewer_servers_up_than_the_pool_size_is_refused(on_blue):
    client, proxies, tasks, _ = on_blue
    with pytest.raises(Refused, match="fewer than the 3"):
        flip_proxies(client, IMAGE, NETWORK, PROXY_DNS, tasks, "green", min_up=3, name_prefix=PREFIX)
    assert all(live_of(p) == "blue" for p in proxies[:PROXIES])


def test_a_proxy_that_refuses_mid_way_has_the_flipped_ones_flipped_back(on_blue):
    """The last proxy's colour map loses its preview key: it passes every check (its live colour
    reads, its green servers are UP) but HAProxy refuses half of its switch, after the first two
    have flipped. All three, the half-flipped one too, must be routing blue again."""
    client, proxies, tasks, _ = on_blue
    last = proxies[PROXIES - 1]
    admin(last, f"del map {COLOUR_MAP} preview")
    try:
        with pytest.raises(CutoverError) as failed:
            flip_proxies(client, IMAGE, NETWORK, PROXY_DNS, tasks, "green", name_prefix=PREFIX)
        message = str(failed.value)
        assert not isinstance(failed.value, Refused)
        assert f"proxy task {tasks[2].address} on node {tasks[2].node} was not switched to green (flipping it failed: HAProxy refused the switch" in message, message
        assert message.endswith(f"flipped back to their colour: {tasks[0].address}, {tasks[1].address}, {tasks[2].address}."), message
        assert all(live_of(p) == "blue" for p in proxies[:PROXIES])
    finally:
        admin(last, f"add map {COLOUR_MAP} preview green")


def test_an_expected_set_other_than_dns_answers_is_refused(on_blue):
    client, proxies, tasks, _ = on_blue
    with pytest.raises(Refused) as refused:
        flip_proxies(client, IMAGE, NETWORK, PROXY_DNS, tasks[:2], "green", name_prefix=PREFIX)
    assert f"answers {' '.join(sorted(t.address for t in tasks))} on the control network" in str(refused.value), refused.value
    assert all(live_of(p) == "blue" for p in proxies[:PROXIES])
    with pytest.raises(Refused, match="the manager expects"):
        read_proxies(client, IMAGE, NETWORK, PROXY_DNS, [*tasks, ProxyTask("10.255.255.1", "nowhere")], name_prefix=PREFIX)
