"""The swarm stack kind, pure parts: the spec's keys, the services the topology gives, the proxy's
swarm backends, and the simulator's refusal (docs/cluster.md)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from simulator.engines import refusal
from stacks.proxy_config import SWARM_SERVER_SLOTS, render_base_config, render_haproxy_config, render_swarm_backend
from stacks.spec import KNOWN_KEYS, STACK_FILE_KEYS, SWARM_KEYS, SpecError, load_stack, spec_from_config
from stacks.swarm_topology import colour_service, proxy_configs, proxy_service, service_name, stack_services
from pulumi_harness import STACKS_DIR, stack_config

# sha256 of the ci stack's single-engine config (render_haproxy_config, two servers per colour),
# the same before and after the swarm variant was added to stacks/proxy_config.py.
SINGLE_ENGINE_DIGEST = "9411b92b0064c049bcd1f7de722251d4bdea4a3002ea2690e0bfca835d3ad53c"


def cluster(**overrides):
    return spec_from_config("cluster", {**stack_config("cluster"), **overrides}, source="stacks/Pulumi.cluster.yaml", stacks_dir=STACKS_DIR)


def test_the_shipped_cluster_stack_is_a_swarm_stack_on_the_local_manager():
    spec = load_stack("cluster")
    assert spec.is_swarm and spec.docker_host == "tcp://127.0.0.1:23761"
    assert (spec.database_label, spec.traffic_label) == ("cutover.database", "cutover.traffic")
    # It sets every key a stack file sets, plus the swarm keys, nothing else.
    assert set(stack_config("cluster")) == set(STACK_FILE_KEYS) | set(SWARM_KEYS)


def test_single_engine_stacks_are_untouched_by_the_swarm_keys():
    assert not set(SWARM_KEYS) & set(KNOWN_KEYS)
    for stack in ("dev", "ci", "prod"):
        assert load_stack(stack).engine == "single"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"cutover:engine": "kubernetes"}, r"cutover:engine must be one of single, swarm, got 'kubernetes'\."),
        ({"cutover:trafficLabel": "no spaces"}, r"cutover:trafficLabel must be a node label key"),
        ({"cutover:databaseLabel": "cutover.traffic"}, r"cutover:databaseLabel must differ from cutover:trafficLabel"),
        ({"docker:host": "npipe:////./pipe/docker_engine"}, r"must reach the swarm's manager"),
    ],
)
def test_bad_swarm_values_are_one_sentence(overrides, says):
    with pytest.raises(SpecError) as error:
        cluster(**overrides)
    message = str(error.value)
    assert message.startswith("stacks/Pulumi.cluster.yaml: ") and re.search(says, message) and "\n" not in message


def test_a_node_key_on_a_single_engine_stack_is_refused():
    config = {**stack_config("dev"), "cutover:trafficLabel": "edge"}
    with pytest.raises(SpecError, match=r"cutover:trafficLabel is a swarm setting; set cutover:engine: swarm or remove it\."):
        spec_from_config("dev", config, source="stacks/Pulumi.dev.yaml", stacks_dir=STACKS_DIR)
    with pytest.raises(SpecError, match=r"cutover:controlEncrypted is a swarm setting"):
        spec_from_config("dev", {**stack_config("dev"), "cutover:controlEncrypted": "true"}, source="stacks/Pulumi.dev.yaml", stacks_dir=STACKS_DIR)


def test_one_service_per_colour_the_database_pinned_and_the_proxy_on_traffic_nodes():
    spec = load_stack("cluster")
    services = {s.name: s for s in stack_services(spec)}
    assert set(services) == {f"cutover-cluster-{r}" for r in ("db", "proxy", "blue", "green")}
    for colour in ("blue", "green"):
        pool = services[f"cutover-cluster-{colour}"]
        assert pool.replicas == spec.pool_size and pool.update_order == "start-first" and pool.prefs == ("spread=node.id",)
        # On the traffic nodes only: the database's node carries no pool.
        assert pool.constraints == ("node.labels.cutover.traffic==true",)
        assert pool.container.stop_timeout_s == spec.app.stop.grace_seconds and pool.container.healthcheck is not None
    db = services["cutover-cluster-db"]
    assert db.replicas == 1 and db.constraints == ("node.labels.cutover.database==true",) and db.update_order == "stop-first"
    assert db.aliases == ("db",) and [v.volume for v in db.container.volumes] == ["cutover-cluster-db-data", "cutover-cluster-db-run-postgresql"]
    proxy = services["cutover-cluster-proxy"]
    assert proxy.replicas is None and proxy.constraints == ("node.labels.cutover.traffic==true",)
    assert {(p.published, p.mode) for p in proxy.ports} == {(spec.live_port, "host"), (spec.preview_port, "host")}
    assert {s.endpoint_mode for s in services.values()} == {"dnsrr"}


def test_a_socket_directory_owned_by_the_images_user_is_a_volume_on_swarm_not_a_tmpfs():
    """Swarm's tmpfs has no owner option: a root-owned tmpfs at /run/postgresql stops postgres
    ("could not create lock file"), so such a directory is a named volume (it takes the image
    directory's owner); a plain tmpfs (/tmp, mode 1777) stays one."""
    services = {s.role: s for s in stack_services(load_stack("cluster"))}
    for role, path in (("database", "/run/postgresql"), ("proxy", "/run/haproxy")):
        c = services[role].container
        assert path in [v.container_path for v in c.volumes] and path not in dict(c.tmpfs), role
        assert "/tmp" in dict(c.tmpfs), role


def test_what_moves_with_a_release_is_never_a_container_label():
    """Container labels replace a Service when they change (the schema): a release must not."""
    spec = load_stack("cluster")
    old, new = colour_service(spec, "green", "1.0.0"), colour_service(spec, "green", "1.1.0")
    assert old.container_labels == new.container_labels
    assert dict(new.labels)["cutover.version"] == "1.1.0" and old.fingerprint() != new.fingerprint()
    # The task's container carries no label of the single engine's ContainerSpec (those hold the version).
    assert dict(new.container.labels) == {}


def test_the_swarm_backend_finds_tasks_through_swarm_dns_with_a_constant_slot_count():
    spec = load_stack("cluster")
    text = render_swarm_backend(spec, "blue", service_name(spec, "blue"), spec.app.port)
    assert f"server-template blue- {SWARM_SERVER_SLOTS} tasks.cutover-cluster-blue:{spec.app.port} init-addr none" in text
    assert "resolvers docker" in text and f"option httpchk GET {spec.health_path}" in text
    # Scaling a colour changes no proxy file: the configs (names carry a digest of their content) are equal.
    assert proxy_configs(replace(spec, pool_size=4)) == proxy_configs(spec)
    assert proxy_service(replace(spec, pool_size=4)) == proxy_service(spec)
    # Proof the guard can fail: the health interval is in the backends, so it does change them.
    assert proxy_configs(replace(spec, health_interval_ms=2000)) != proxy_configs(spec)


def test_the_single_engine_proxy_config_is_byte_identical():
    spec = load_stack("ci")
    servers = {"blue": ["cutover-ci-blue-1", "cutover-ci-blue-2"], "green": ["cutover-ci-green-1", "cutover-ci-green-2"]}
    text = render_haproxy_config(spec, servers, 8000)
    assert "server-template" not in text and text.startswith(render_base_config())
    import hashlib

    # Pinned when the swarm variant was added: the single engine's rendering did not move.
    assert hashlib.sha256(text.encode()).hexdigest() == SINGLE_ENGINE_DIGEST


def test_the_simulator_runs_some_commands_on_a_swarm_stack_and_refuses_the_rest_in_one_sentence():
    cluster = load_stack("cluster")
    for command in ("up", "deploy", "status", "scale", "switch", "rollback", "rehearse", "down"):
        assert refusal(cluster, command) is None, command
    for command in ("finalize", "build", "promote", "audit", None):
        message = refusal(cluster, command)
        assert message and "not yet supported by the simulator" in message and "\n" not in message
    assert all(refusal(load_stack("dev"), c) is None for c in ("up", "switch", "finalize", None))
