"""Parity: the Pulumi program declares exactly the containers the simulator creates.

Both executors render ``stacks.topology.stack_containers(spec)``. Here the expected pulumi-docker
inputs are written out field by field from each ContainerSpec (independently of
``components/render.py``) and compared with what the program sent to the mock engine.
"""

from __future__ import annotations

import pytest
from pulumi_harness import CONTAINER, NETWORK, VOLUME, labels, run_program

from stacks.docker_objects import stack_network, stack_volumes
from stacks.spec import load_stack
from stacks.topology import ContainerSpec, stack_containers

STACKS = ("dev", "ci", "prod")


def expected_inputs(c: ContainerSpec) -> dict:
    h = c.healthcheck
    return {
        "name": c.name,
        "image": c.image,
        "hostname": c.hostname,
        "envs": [f"{key}={value}" for key, value in c.env],
        "ports": [{"internal": p.internal, "external": p.external, "ip": p.ip, "protocol": "tcp"} for p in c.ports],
        "networksAdvanced": [{"name": c.network, "aliases": [c.hostname]}],
        "healthcheck": {
            "tests": list(h.test),
            "interval": f"{h.interval_s}s",
            "timeout": f"{h.timeout_s}s",
            "retries": h.retries,
            "startPeriod": f"{h.start_period_s}s",
        },
        "restart": c.restart,
        "uploads": [{"file": u.path, "content": u.content} for u in c.uploads],
        "volumes": [{"volumeName": v.volume, "containerPath": v.container_path} for v in c.volumes],
        "labels": c.labels_with_fingerprint(),
        "stopTimeout": c.stop_timeout_s,
    }


@pytest.fixture(scope="module", params=STACKS)
def stack_run(request):
    return load_stack(request.param), run_program(request.param)


def test_same_container_names(stack_run):
    spec, run = stack_run
    assert sorted(r.name for r in run.of_type(CONTAINER)) == sorted(c.name for c in stack_containers(spec))


def test_every_container_matches_its_spec_field_by_field(stack_run):
    spec, run = stack_run
    for c in stack_containers(spec):
        inputs = run.named(CONTAINER, c.name).inputs
        expected = expected_inputs(c)
        declared = {field: (labels(inputs) if field == "labels" else inputs.get(field)) for field in expected}
        for field in expected:
            assert declared[field] == expected[field], f"{c.name}: {field}"


def test_network_and_volumes_match_the_shared_description(stack_run):
    spec, run = stack_run
    (network,) = run.of_type(NETWORK)
    want = stack_network(spec)
    assert (network.inputs["name"], network.inputs["driver"], labels(network.inputs)) == (want.name, want.driver, dict(want.labels))
    declared_volumes = {v.inputs["name"]: labels(v.inputs) for v in run.of_type(VOLUME)}
    assert declared_volumes == {v.name: dict(v.labels) for v in stack_volumes(spec)}
