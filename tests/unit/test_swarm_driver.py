"""The simulator's ServiceSpec -> Docker SDK mapping (simulator/swarm_driver.py, pure): every field
the Pulumi component gives pulumi-docker reaches the services API, as the engine receives it (the
SDK's own create_service request body, built without an engine)."""

from __future__ import annotations

import copy

import pytest
from docker.models.services import _get_create_service_kwargs

from simulator.swarm_driver import SECOND_NS, TMPFS_MODE, service_kwargs
from stacks.proxy_config import LIVE_CONTAINER_PORT, PREVIEW_CONTAINER_PORT
from stacks.spec import load_stack
from stacks.swarm_topology import UPDATE_MONITOR_S, proxy_configs, stack_networks, stack_services
from stacks.topology import DB_PASSWORD_SECRET

PASSWORD = "s3cretvalue"


@pytest.fixture(scope="module")
def spec():
    return load_stack("cluster")


@pytest.fixture(scope="module")
def bodies(spec):
    """{service name: (kwargs, the create_service body the SDK builds from them)}."""
    networks = {n.name: f"{n.name}-id" for n in stack_networks(spec)}
    configs = {f.name: f"{f.name}-id" for f in proxy_configs(spec)}
    found = {}
    for s in stack_services(spec):
        kwargs = service_kwargs(s, {DB_PASSWORD_SECRET: PASSWORD}, networks, configs)
        found[s.name] = (s, kwargs, _get_create_service_kwargs("create", {k: v for k, v in copy.deepcopy(kwargs).items() if k != "image"} | {"image": kwargs["image"]}))
    return found


def test_every_service_resolves_by_dns_round_robin_and_the_proxy_publishes_in_host_mode(bodies, spec):
    for name, (s, _, body) in bodies.items():
        assert body["endpoint_spec"]["Mode"] == "dnsrr", name
    _, _, proxy = bodies["cutover-cluster-proxy"]
    assert sorted((p["PublishedPort"], p["TargetPort"], p["PublishMode"], p["Protocol"]) for p in proxy["endpoint_spec"]["Ports"]) == [
        (spec.live_port, LIVE_CONTAINER_PORT, "host", "tcp"), (spec.preview_port, PREVIEW_CONTAINER_PORT, "host", "tcp")
    ]
    assert all("Ports" not in body["endpoint_spec"] for name, (_, _, body) in bodies.items() if name != "cutover-cluster-proxy")


def test_modes_placement_and_rollout(bodies):
    for colour in ("blue", "green"):
        _, _, body = bodies[f"cutover-cluster-{colour}"]
        assert body["mode"] == {"replicated": {"Replicas": 2}}
        placement = body["task_template"]["Placement"]
        assert placement["Constraints"] == ["node.labels.cutover.traffic==true"]
        assert placement["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.id"}}]
        update = body["update_config"]
        assert (update["Order"], update["Parallelism"], update["FailureAction"], update["Monitor"]) == ("start-first", 1, "rollback", UPDATE_MONITOR_S * SECOND_NS)
        assert body["rollback_config"]["FailureAction"] == "pause"
        assert body["task_template"]["RestartPolicy"]["Condition"] == "any"
    _, _, proxy = bodies["cutover-cluster-proxy"]
    assert proxy["mode"] == {"global": {}} and proxy["update_config"]["Order"] == "stop-first"
    _, _, db = bodies["cutover-cluster-db"]
    assert db["task_template"]["Placement"]["Constraints"] == ["node.labels.cutover.database==true"]
    assert [(n["Target"], n["Aliases"]) for n in db["task_template"]["Networks"]] == [("cutover-cluster-id", ["db"])]


def test_the_container_spec_is_the_topologys(bodies):
    for name, (s, _, body) in bodies.items():
        c, container = s.container, body["task_template"]["ContainerSpec"]
        assert container["Image"] == c.image and container["StopGracePeriod"] == c.stop_timeout_s * SECOND_NS, name
        assert container["StopSignal"] == c.stop_signal and container["ReadOnly"] == c.read_only, name
        assert container["CapabilityDrop"] == ["ALL"], name
        mounts = {m["Target"]: m for m in container["Mounts"]}
        assert {v.container_path for v in c.volumes} | {p for p, _ in c.tmpfs} == set(mounts), name
        assert all(m["TmpfsOptions"]["Mode"] == TMPFS_MODE for m in mounts.values() if m["Type"] == "tmpfs"), name
        if c.healthcheck:
            assert container["Healthcheck"]["Test"] == list(c.healthcheck.test)
            assert container["Healthcheck"]["Interval"] == c.healthcheck.interval_s * SECOND_NS
    blue = bodies["cutover-cluster-blue"][2]["task_template"]["ContainerSpec"]
    assert "CUTOVER_INSTANCE={{.Service.Name}}-{{.Task.Slot}}" in blue["Env"] and blue["Hostname"] == "{{.Service.Name}}-{{.Task.Slot}}"


def test_the_password_is_in_the_env_only(bodies):
    for name, (s, kwargs, body) in bodies.items():
        env = body["task_template"]["ContainerSpec"].get("Env") or []
        assert (any(PASSWORD in e for e in env)) == bool(s.container.secret_env), name
        assert PASSWORD not in str({k: v for k, v in body.items() if k != "task_template"}), name
        assert PASSWORD not in str(body["task_template"]["ContainerSpec"].get("Labels")), name


def test_labels_service_labels_carry_the_fingerprint_and_owner_container_labels_are_constant(bodies):
    for name, (s, _, body) in bodies.items():
        labels = body["labels"]
        assert labels["cutover.fingerprint"] == s.fingerprint() and labels["cutover.managed-by"] == "cutover", name
        container_labels = body["task_template"]["ContainerSpec"]["Labels"]
        assert "cutover.version" not in container_labels and "cutover.fingerprint" not in container_labels, name


def test_the_proxy_mounts_its_three_configs_by_id_for_its_user(bodies, spec):
    _, _, proxy = bodies["cutover-cluster-proxy"]
    configs = proxy["task_template"]["ContainerSpec"]["Configs"]
    assert [(c["ConfigName"], c["ConfigID"]) for c in configs] == [(f.name, f"{f.name}-id") for f in proxy_configs(spec)]
    assert {(c["File"]["UID"], c["File"]["Mode"]) for c in configs} == {("990", 0o444)}


def test_a_release_changes_the_fingerprint_and_nothing_replace_worthy(spec):
    """What the driver's update-in-place decision rests on: another version is another
    fingerprint; the same spec twice is the same one."""
    before = {s.name: s for s in stack_services(spec)}
    after = {s.name: s for s in stack_services(spec, {"blue": "1.0.0", "green": "2.0.0"})}
    assert before["cutover-cluster-green"].fingerprint() != after["cutover-cluster-green"].fingerprint()
    assert {n for n in before if before[n].fingerprint() == after[n].fingerprint()} == {"cutover-cluster-blue", "cutover-cluster-proxy", "cutover-cluster-db"}
    assert before["cutover-cluster-green"].container_labels == after["cutover-cluster-green"].container_labels
