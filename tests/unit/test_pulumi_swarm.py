"""The swarm kind under Pulumi's mocks (components/swarm_service.py): the resources' shape, the
cluster stack identical to the single-engine stacks where it must be, a flip that changes no
Service, and the replacement facts for docker.Service (tests/unit/facts)."""

from __future__ import annotations

import pytest
import replacement_matrix as matrix
from pulumi_harness import (
    CONTAINER, NETWORK, SERVICE_CONFIG, SWARM_SERVICE, SWARM_STACK, is_secret, run_program, stack_config, unwrap_secret,
)

from stacks.spec import STACK_FILE_KEYS, SWARM_KEYS


@pytest.fixture(scope="module")
def cluster():
    return run_program("cluster")


def _task(r):
    """A Service's taskSpec: wrapped as a secret as a whole when its env holds the password."""
    task = r.inputs["taskSpec"]
    return unwrap_secret(task) if is_secret(task) else task


def _services(run):
    return {r.name: r for r in run.of_type(SWARM_SERVICE)}


def test_the_shape_services_replicas_constraints_networks(cluster):
    (stack,) = cluster.of_type(SWARM_STACK)
    services = _services(cluster)
    assert set(services) == {"cutover-cluster-db", "cutover-cluster-proxy", "cutover-cluster-blue", "cutover-cluster-green"}
    assert all(r.parent == stack.urn and r.delete_before_replace for r in services.values())
    networks = {r.name: r for r in cluster.of_type(NETWORK)}
    assert set(networks) == {"cutover-cluster", "cutover-cluster-control"}
    network = networks["cutover-cluster"]
    assert network.inputs["driver"] == "overlay" and network.inputs["attachable"] is True
    for name, r in services.items():
        attachments = _task(r)["networksAdvanceds"]
        assert attachments[0]["id"] == f"{network.name}-id", name
        # Only the proxy is on the control network: no app task can reach a runtime API.
        assert [a["id"] for a in attachments[1:]] == (["cutover-cluster-control-id"] if name.endswith("-proxy") else []), name
    for colour in ("blue", "green"):
        pool = {**services[f"cutover-cluster-{colour}"].inputs, "taskSpec": _task(services[f"cutover-cluster-{colour}"])}
        assert pool["mode"] == {"replicated": {"replicas": 2}}
        assert pool["updateConfig"]["order"] == "start-first" and pool["updateConfig"]["parallelism"] == 1
        assert pool["taskSpec"]["placement"]["prefs"] == ["spread=node.id"]
        assert pool["taskSpec"]["restartPolicy"]["condition"] == "any"
        assert pool["taskSpec"]["containerSpec"]["stopGracePeriod"] and pool["taskSpec"]["containerSpec"]["healthcheck"]["tests"]
    db = services["cutover-cluster-db"]
    assert _task(db)["placement"]["constraints"] == ["node.labels.cutover.database==true"] and db.retain_on_delete
    proxy = services["cutover-cluster-proxy"].inputs
    assert proxy["mode"] == {"global": True} and proxy["taskSpec"]["placement"]["constraints"] == ["node.labels.cutover.traffic==true"]
    assert {p["publishMode"] for p in proxy["endpointSpec"]["ports"]} == {"host"}
    # No VIP anywhere (no IPVS on the local swarm's nodes): every service resolves by DNS round robin.
    assert {name: r.inputs["endpointSpec"]["mode"] for name, r in services.items()} == dict.fromkeys(services, "dnsrr")
    assert len(proxy["taskSpec"]["containerSpec"]["configs"]) == len(cluster.of_type(SERVICE_CONFIG)) == 3


def test_the_control_network_is_encrypted_attachable_with_the_stacks_subnet_in_the_proxys_env(cluster):
    from stacks.spec import load_stack
    from stacks.swarm_topology import control_subnet

    subnet = control_subnet(load_stack("cluster"))
    control = cluster.named(NETWORK, "cutover-cluster-control").inputs
    # The shipped cluster stack runs on the local swarm, which cannot carry an encrypted overlay.
    assert control["driver"] == "overlay" and control["attachable"] is True and "options" not in control
    assert control["ipamConfigs"] == [{"subnet": subnet}]
    encrypted = run_program("cluster", {"cutover:controlEncrypted": "true"})
    assert encrypted.named(NETWORK, "cutover-cluster-control").inputs["options"] == {"encrypted": ""}
    assert "options" not in encrypted.named(NETWORK, "cutover-cluster").inputs
    proxy = cluster.named(SWARM_SERVICE, "cutover-cluster-proxy")
    assert _task(proxy)["containerSpec"]["env"]["CUTOVER_CONTROL_SUBNET"] == subnet
    assert cluster.named(NETWORK, "cutover-cluster-control").urn in proxy.dependencies
    for colour in ("blue", "green"):
        assert "CUTOVER_CONTROL_SUBNET" not in unwrap_secret(_task(cluster.named(SWARM_SERVICE, f"cutover-cluster-{colour}"))["containerSpec"]["env"])


def test_the_migration_is_a_one_shot_container_on_the_overlay_before_the_pools(cluster):
    (migration,) = cluster.of_type(CONTAINER)
    assert migration.name == "cutover-cluster-migrate-1.0.0" and migration.inputs["attach"] is True and migration.inputs["mustRun"] is False
    for colour in ("blue", "green"):
        assert migration.urn in _services(cluster)[f"cutover-cluster-{colour}"].dependencies


def test_the_database_password_stays_secret(cluster):
    (password,) = cluster.secret_values
    for name, r in _services(cluster).items():
        task = r.inputs["taskSpec"]
        if name.endswith(("-db", "-blue", "-green")):
            assert is_secret(task) and password in str(unwrap_secret(task)), name
        else:
            assert password not in str(task), name
        assert password not in str({k: v for k, v in r.inputs.items() if k != "taskSpec"}), name


def test_the_cluster_stack_file_differs_from_dev_only_on_environment_swarm_and_port_keys():
    dev, cluster_config = stack_config("dev"), stack_config("cluster")
    assert set(cluster_config) == set(STACK_FILE_KEYS) | set(SWARM_KEYS)
    differing = {k for k in STACK_FILE_KEYS if dev.get(k) != cluster_config.get(k)}
    assert differing <= {"docker:host", "cutover:poolSize", "cutover:livePort", "cutover:previewPort"}, differing
    assert cluster_config["cutover:app"] == dev["cutover:app"]


def test_the_app_container_is_the_single_engines_in_a_service(cluster):
    """Image, env (but the per-task instance name), health and stop: what ci's blue-1 runs."""
    ci = run_program("ci", {k: stack_config("cluster")[k] for k in ("cutover:blueVersion", "cutover:greenVersion")})
    (container,) = [r for r in ci.of_type(CONTAINER) if r.name == "cutover-ci-blue-1"]
    spec = _task(_services(cluster)["cutover-cluster-blue"])["containerSpec"]
    env = dict(e.split("=", 1) for e in unwrap_secret(container.inputs["envs"]))
    swarm_env = dict(unwrap_secret(spec["env"]))
    assert set(env) == set(swarm_env)
    assert swarm_env["CUTOVER_INSTANCE"] == "{{.Service.Name}}-{{.Task.Slot}}"
    assert container.inputs["stopSignal"] == spec["stopSignal"] and container.inputs["healthcheck"]["tests"] == spec["healthcheck"]["tests"]
    assert container.inputs["readOnly"] == spec["readOnly"] and spec["capDrops"] == ["ALL"]


def test_a_flip_changes_no_service_and_replaces_nothing(cluster):
    flipped = run_program("cluster", {"cutover:liveColor": "green"})
    verdicts = matrix.classify(cluster, flipped)
    changed = {flipped.named(SWARM_SERVICE, r.name).name for r in flipped.of_type(SWARM_SERVICE) if verdicts[r.urn].kind != matrix.UNTOUCHED}
    assert changed == set()
    assert all(v.kind != matrix.REPLACED for v in verdicts.values())


def test_a_release_updates_the_idle_colours_service_in_place(cluster):
    release = run_program("cluster", {"cutover:greenVersion": "1.1.0"})
    verdicts = matrix.classify(cluster, release)
    green = release.named(SWARM_SERVICE, "cutover-cluster-green")
    assert verdicts[green.urn].kind == matrix.UPDATED, verdicts[green.urn]
    for name in ("cutover-cluster-blue", "cutover-cluster-proxy", "cutover-cluster-db"):
        assert verdicts[release.named(SWARM_SERVICE, name).urn].kind == matrix.UNTOUCHED, name


def test_the_service_facts_flag_only_name_mode_and_auth_at_the_top():
    facts = matrix.FACTS["docker:index/service:Service"]
    assert facts["replaceOnChanges"] == ["auth", "mode", "name"]
    assert "taskSpec.containerSpec.labels.value" in facts["nestedReplaceOnChanges"]


def test_a_container_label_change_replaces_the_service_proof_the_nested_flags_count(cluster):
    """Proof the matrix can fail: the same run with a container label changed is a replacement."""
    import copy
    from dataclasses import replace as dc_replace

    blue = cluster.named(SWARM_SERVICE, "cutover-cluster-blue")
    inputs = copy.deepcopy(blue.inputs)
    # The taskSpec as it arrives (a secret, its env holds the password): the flags must be seen inside.
    assert is_secret(blue.inputs["taskSpec"])
    base = blue
    inputs["taskSpec"] = copy.deepcopy(_task(blue))
    inputs["taskSpec"]["containerSpec"]["labels"][0]["value"] = "changed"
    assert matrix.nested_replacing(blue.type, base.inputs, inputs) == {"taskSpec"}
    before = dc_replace(cluster, resources=tuple(base if r.urn == blue.urn else r for r in cluster.resources))
    after = dc_replace(cluster, resources=tuple(dc_replace(r, inputs=inputs) if r.urn == blue.urn else r for r in cluster.resources))
    assert matrix.classify(before, after)[blue.urn].kind == matrix.REPLACED
    # And a service label (the version's place) is an update in place.
    relabelled = copy.deepcopy(base.inputs)
    relabelled["labels"][0]["value"] = "changed"
    after = dc_replace(cluster, resources=tuple(dc_replace(r, inputs=relabelled) if r.urn == blue.urn else r for r in cluster.resources))
    assert matrix.classify(before, after)[blue.urn].kind == matrix.UPDATED


# --- the swarm replacement matrix (replacement_matrix.py, docs/cluster.md) -------------------------


@pytest.fixture(scope="module")
def swarm_outcomes():
    return matrix.compute_swarm()


def test_every_key_has_a_swarm_row(tmp_path):
    from stacks.spec import ALL_KEYS

    keys = {s.key for s in matrix.swarm_scenarios(tmp_path)}
    assert keys == set(ALL_KEYS), f"without a row: {sorted(set(ALL_KEYS) - keys)}"


def test_no_change_replaces_the_live_colour_the_database_or_the_proxy_service(swarm_outcomes):
    found = [line for o in swarm_outcomes for line in matrix.swarm_violations(o)]
    assert not found, "\n".join(found)


def test_scaling_a_colour_never_touches_the_proxy(swarm_outcomes):
    (row,) = [o for o in swarm_outcomes if o.scenario.key == "cutover:poolSize"]
    kinds = {row.names[u].name: v.kind for u, v in row.verdicts.items() if v.kind != matrix.UNTOUCHED}
    assert kinds == {"cutover-cluster-blue": matrix.UPDATED, "cutover-cluster-green": matrix.UPDATED}


def test_under_the_literal_mode_flag_scaling_would_replace_the_live_colour(swarm_outcomes, monkeypatch):
    """Proof the guard can fail: without the block reading of `mode`, poolSize replaces blue."""
    facts = dict(matrix.FACTS["docker:index/service:Service"])
    facts.pop("blockReplaceOnChanges")
    monkeypatch.setitem(matrix.FACTS, "docker:index/service:Service", facts)
    base, scaled = run_program("cluster"), run_program("cluster", {"cutover:poolSize": "4"})
    outcome = matrix.Outcome(matrix.Scenario("cutover:poolSize", "2 → 4"), matrix.classify(base, scaled), {r.urn: r for r in scaled.resources})
    assert any("cutover-cluster-blue" in line for line in matrix.swarm_violations(outcome))


def test_the_swarm_docs_table_is_the_computed_one(swarm_outcomes):
    document = matrix.SWARM_DOCS.read_text()
    assert matrix.SWARM_BEGIN in document and matrix.SWARM_END in document
    assert matrix.splice_swarm(document, matrix.render_swarm(swarm_outcomes)) == document, "docs/cluster.md is stale: run `make pulumi-matrix`"
