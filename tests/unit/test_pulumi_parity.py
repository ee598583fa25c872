"""Parity: the Pulumi program declares exactly the containers the simulator creates.

Both executors render ``stacks.topology.stack_containers(spec)`` and, for each version a colour runs,
``stacks.topology.migration_container(spec, version, <the app's expand command>)``. Here the expected pulumi-docker
inputs are written out field by field from each ContainerSpec (independently of
``components/render.py``) and compared with what the program sent to the mock engine.

Secrets: a ContainerSpec names the secrets it needs, never their values. The comparison holds the
environment's names and plain values equal and every secret variable as its template with
``<secret>`` in the secret's place; that the value
is the stack's generated password, and kept secret, is test_pulumi_secrets.py's business.

The one documented difference: on the Pulumi side each migration run is a container that stays
(exited) in Docker so its exit code can be read, and both colours' versions may each have one; so
its Docker name is the topology's name plus ``-<version>`` (``cutover-<stack>-migrate-1.1.0``). The
simulator runs the topology's name and removes the container after the run. Every other input of a
migration run, its fingerprint label included, is the topology's.
"""

from __future__ import annotations

import dataclasses

import pytest
from pulumi_harness import (
    CONTAINER,
    EXPAND_ONLY_APP,
    IMAGE,
    NETWORK,
    REMOTE_IMAGE,
    ROOT,
    STACKS_DIR,
    VOLUME,
    is_secret,
    labels,
    redact,
    run_program,
    unwrap_secret,
    write_app,
)

from stacks.docker_objects import ledger_volume, stack_network, stack_volumes
from stacks.spec import COLOURS, load_stack
from stacks.topology import ContainerSpec, migration_container, secret_value, stack_containers

STACKS = ("dev", "ci", "prod")
# The read-only example's own stack file, where the simulator reads it (`--stacks-dir`).
EXAMPLE_STACKS = {"static-ci": ROOT / "examples" / "static-site"}


def pulumi_name(c: ContainerSpec) -> str:
    """The Docker name the Pulumi program gives ``c``: the topology's, except for migration runs."""
    return f"{c.name}-{c.version}" if c.role == "migration" else c.name


def expand_command(spec) -> tuple[str, ...] | None:
    """Written out from the app definition, independently of components/migration.py."""
    migrations = spec.app.migrations
    if migrations is None:
        return None
    return migrations.expand if migrations.self_describing else migrations.command


def expected_containers(spec) -> list[ContainerSpec]:
    versions = sorted({spec.version_of(colour) for colour in COLOURS})
    command = expand_command(spec)
    runs = [migration_container(spec, v, command) for v in versions] if command else []
    return [*stack_containers(spec), *runs]


def expected_inputs(c: ContainerSpec) -> dict:
    h = c.healthcheck
    return {
        "name": pulumi_name(c),
        "image": c.image,
        "hostname": c.hostname,
        # Plain values as they are; each secret as its variable's name and a placeholder.
        "envs": [f"{key}={value}" for key, value in c.env] + [f"{key}={secret_value(template, '<secret>')}" for key, _, template in c.secret_env],
        "command": list(c.command) or None,
        "ports": [{"internal": p.internal, "external": p.external, "ip": p.ip, "protocol": "tcp"} for p in c.ports],
        # By the network resource's ID (the mock provider answers `<name>-id`), not by its name.
        "networksAdvanced": [{"name": f"{c.network}-id", "aliases": [c.hostname]}],
        "healthcheck": None
        if h is None
        else {
            "tests": list(h.test),
            "interval": f"{h.interval_s}s",
            "timeout": f"{h.timeout_s}s",
            "retries": h.retries,
            "startPeriod": f"{h.start_period_s}s",
        },
        "restart": c.restart,
        "uploads": [{"file": u.path, "content": u.content} for u in c.uploads],
        "volumes": [{"volumeName": v.volume, "containerPath": v.container_path} for v in c.volumes],
        # The owner mark is the executor's own (the simulator's says cutover), outside the fingerprint.
        "labels": {**c.labels_with_fingerprint(), "cutover.managed-by": "pulumi"},
        "stopSignal": c.stop_signal,
        "stopTimeout": c.stop_timeout_s,
        "user": c.user,
        "readOnly": c.read_only,
        # As Docker stores them (CAP_ prefix), so a refresh reads back what was declared.
        "capabilities": {"adds": [f"CAP_{n}" for n in c.cap_add], "drops": [n if n == "ALL" else f"CAP_{n}" for n in c.cap_drop]},
        "securityOpts": list(c.security_opt),
        "tmpfs": dict(c.tmpfs),
    }


def declared_inputs(run, inputs: dict, field: str):
    if field == "labels":
        return labels(inputs)
    if field == "envs":
        return redact(unwrap_secret(inputs["envs"]), run.secret_values)
    return inputs.get(field)


@pytest.fixture(scope="module", params=[*STACKS, *EXAMPLE_STACKS])
def stack_run(request):
    stacks_dir = EXAMPLE_STACKS.get(request.param, STACKS_DIR)
    # The spec as the simulator loads it from its stack file; the program gets the same values.
    return load_stack(request.param, stacks_dir=stacks_dir), run_program(request.param, stacks_dir=stacks_dir)


@pytest.fixture(scope="module")
def expand_only_run(tmp_path_factory):
    # An app whose one migrate command cannot describe itself, and whose password sits in a URL.
    app_file = write_app(tmp_path_factory.mktemp("ledger"), EXPAND_ONLY_APP, dockerfile="build/Containerfile")
    run = run_program("dev", {"cutover:app": str(app_file), "cutover:blueVersion": "2.0.0", "cutover:greenVersion": "2.1.0"})
    return run.spec(), run


@pytest.fixture(scope="module")
def split_run():
    # Both colours on different versions: two migration runs.
    overrides = {"cutover:blueVersion": "1.0.0", "cutover:greenVersion": "1.1.0"}
    spec = dataclasses.replace(load_stack("dev"), blue_version="1.0.0", green_version="1.1.0")
    return spec, run_program("dev", overrides)


def test_same_container_names(stack_run):
    spec, run = stack_run
    assert sorted(r.name for r in run.of_type(CONTAINER)) == sorted(pulumi_name(c) for c in expected_containers(spec))


def test_every_container_matches_its_spec_field_by_field(stack_run):
    _matches_field_by_field(*stack_run)


def test_both_migration_runs_match_their_specs_when_versions_differ(split_run):
    spec, run = split_run
    assert [c.version for c in expected_containers(spec) if c.role == "migration"] == ["1.0.0", "1.1.0"]
    _matches_field_by_field(spec, run)


def test_an_expand_only_apps_containers_match_their_specs(expand_only_run):
    spec, run = expand_only_run
    assert [c.command for c in expected_containers(spec) if c.role == "migration"] == [spec.app.migrations.command] * 2
    _matches_field_by_field(spec, run)


def artefact_id(run, tag: str) -> str:
    """The image ID the provider reported for the image resource that made (or found) ``tag``."""
    built = [r.state["repoDigest"] for r in run.of_type(IMAGE) if r.inputs.get("imageName") == tag]
    found = [r.state["imageId"] for r in run.of_type(REMOTE_IMAGE) if r.inputs.get("name") == tag]
    (image_id,) = built + found
    return image_id


def _matches_field_by_field(spec, run):
    # Without a password the secret comparison would be vacuous; a read-only app has none at all.
    assert bool(run.secret_values) == spec.app.read_write, "the mock generated no password"
    for c in expected_containers(spec):
        inputs = run.named(CONTAINER, pulumi_name(c)).inputs
        expected = expected_inputs(c)
        if c.role in ("app", "migration"):
            # Not the tag: the image ID the engine reported for the version's image resource.
            expected["image"] = artefact_id(run, c.image)
        for field in expected:
            assert declared_inputs(run, inputs, field) == expected[field], f"{c.name}: {field}"
        # The environment is secret exactly when it carries a secret.
        assert is_secret(inputs["envs"]) == bool(c.secret_env), c.name


def _secret_names_by_role(spec, run) -> dict[str, set[tuple[str, ...]]]:
    by_role = {}
    for c in expected_containers(spec):
        envs = redact(unwrap_secret(run.named(CONTAINER, pulumi_name(c)).inputs["envs"]), run.secret_values)
        secret_names = sorted(e.split("=", 1)[0] for e in envs if "<secret>" in e)
        by_role.setdefault(c.role, set()).add(tuple(secret_names))
    return by_role


def test_secret_env_names_are_the_topology_names(stack_run):
    spec, run = stack_run
    if spec.app.read_write:  # the demo: its definition names DATABASE_PASSWORD
        assert _secret_names_by_role(spec, run) == {
            "database": {("POSTGRES_PASSWORD",)},
            "app": {("DATABASE_PASSWORD",)},
            "migration": {("DATABASE_PASSWORD",)},
            "proxy": {()},
        }
    else:  # the static site: no database, no secret anywhere
        assert _secret_names_by_role(spec, run) == {"app": {()}, "proxy": {()}}


def test_a_secret_inside_a_template_keeps_the_apps_name(expand_only_run):
    spec, run = expand_only_run
    assert _secret_names_by_role(spec, run) == {
        "database": {("POSTGRES_PASSWORD",)},
        "app": {("LEDGER_DB_URL",)},
        "migration": {("LEDGER_DB_URL",)},
        "proxy": {()},
    }


def test_network_and_volumes_match_the_shared_description(stack_run):
    spec, run = stack_run
    (network,) = run.of_type(NETWORK)
    want = stack_network(spec)
    # Plus the owner mark: the Pulumi program's (the simulator marks its own with cutover).
    owner = {"cutover.managed-by": "pulumi"}
    assert (network.inputs["name"], network.inputs["driver"], labels(network.inputs)) == (want.name, want.driver, {**dict(want.labels), **owner})
    declared_volumes = {v.inputs["name"]: labels(v.inputs) for v in run.of_type(VOLUME)}
    assert declared_volumes == {v.name: {**dict(v.labels), **owner} for v in [*stack_volumes(spec), ledger_volume(spec)]}
