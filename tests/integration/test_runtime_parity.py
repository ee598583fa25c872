"""Parity of what really runs: the simulator's containers, volumes and network, as ``docker inspect``
shows them after `cutover up`, against what the Pulumi program declares for the same stack (run
under Pulumi's mocks), field by field, through one normal form (tests/parity.py).

The stack: `parity`, the ci stack's values (the demo app, its versions, pool size 2, health
interval, drain) on ports 19840/19841, the demo copied under an app name of its own
(`parity-demo`) so its artefacts are this module's alone.

Images: Pulumi declares each app container with the built image's ID (a provider output, mocked);
it is traced back to the Image resource's tag, and that tag's artefact on the engine is what the
simulator's container must run. The proxy and database run their tag on both sides. Secret values
(the database password) are each executor's own: both show as ``<secret>``.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from simulator.docker_driver import DockerDriver
from simulator.images import ImageBuilder
from simulator.secrets_store import SecretStore
from stacks.spec import WATCH_DEFAULTS, load_stack
from stacks.topology import DB_PASSWORD_SECRET, migration_container, stack_containers
from tests import parity
from tests.conftest import REPO_ROOT, demo_copy, remove_app_images, run_cli, write_stack_file

sys.path.insert(0, str(REPO_ROOT / "tests/unit"))
from pulumi_harness import CONTAINER, IMAGE, NETWORK, REMOTE_IMAGE, VOLUME, mock_id, run_program, unwrap_secret  # noqa: E402

pytestmark = pytest.mark.docker

STACK = "parity"
LIVE_PORT = 19840
APP_NAME = "parity-demo"


def cli(root: Path, *args: str):
    return run_cli("--stacks-dir", str(root), *args, "--stack", STACK, timeout=600)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, state_dir):
    root = tmp_path_factory.mktemp("parity")
    app_file = demo_copy(root / "demo", APP_NAME)
    ci = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.ci.yaml").read_text())["config"]
    config = {key: value for key, value in ci.items() if key not in ("cutover:livePort", "cutover:previewPort")}
    # write_stack_file's short test watch is left at the default too: the ci stack does not set it.
    config.setdefault("cutover:watchSeconds", WATCH_DEFAULTS["cutover:watchSeconds"])
    write_stack_file(root, STACK, LIVE_PORT, **{**config, "cutover:app": str(app_file)})
    cli(root, "down", "--volumes", "--ledger")
    remove_app_images(APP_NAME)
    result = cli(root, "up")
    assert result.returncode == 0, result.stdout + result.stderr
    yield root, load_stack(STACK, stacks_dir=root)
    if os.environ.get("CUTOVER_KEEP_STACK") != "1":
        cli(root, "down", "--volumes", "--ledger")
        remove_app_images(APP_NAME)


@pytest.fixture(scope="module")
def declared(stack):
    root, _ = stack
    return run_program(STACK, stacks_dir=root)


@pytest.fixture(scope="module")
def client():
    return docker.from_env()


def image_resolver(client, run):
    """Pulumi's ``image`` input -> the engine's facts for it: a built or found image's output is
    traced to its resource's tag, a plain tag is looked up as it is."""
    tags = {r.state["repoDigest"]: r.inputs["imageName"] for r in run.of_type(IMAGE)}
    tags.update({r.state["imageId"]: r.inputs["name"] for r in run.of_type(REMOTE_IMAGE)})

    def resolve(ref: str) -> parity.ImageFacts:
        image = client.api.inspect_image(tags.get(ref, ref))
        return parity.ImageFacts(image["Id"], image["Config"])

    return resolve


def read_files(container, paths) -> dict[str, bytes]:
    """The content of each of ``paths`` in the container (missing ones are left out)."""
    files = {}
    for path in paths:
        try:
            stream, _ = container.get_archive(path)
        except docker.errors.NotFound:
            continue
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.getmembers()[0]
            files[path] = archive.extractfile(member).read()
    return files


def test_every_container_runs_what_pulumi_declares(stack, declared, client):
    root, spec = stack
    resolve = image_resolver(client, declared)
    long_running = {r.inputs["name"]: r for r in declared.of_type(CONTAINER) if not parity.is_one_shot(r.inputs)}
    running = {c.name: c for c in client.containers.list(all=True, filters={"label": [f"cutover.stack={STACK}", "cutover.project=cutover"]})}
    assert sorted(running) == sorted(long_running), "the simulator runs other containers than Pulumi declares"

    topology = {c.name: c for c in stack_containers(spec)}
    store = SecretStore(STACK)
    simulator_secrets = sorted({store.get(name) for c in topology.values() for _, name, _ in c.secret_env})
    assert simulator_secrets and declared.secret_values, "no secret on one side: the env comparison would be vacuous"

    found = []
    for name, registration in sorted(long_running.items()):
        inputs = {**registration.inputs, "envs": unwrap_secret(registration.inputs.get("envs"))}
        want = parity.pulumi_container(inputs, resolve, declared.secret_values, network_names(declared))
        # The files either side uploads into this container, as they are in it now.
        paths = {u["file"] for u in inputs.get("uploads") or []} | {u.path for u in topology[name].uploads}
        container = running[name]
        have = parity.docker_container(client.api.inspect_container(name), read_files(container, sorted(paths)), simulator_secrets)
        found += parity.differences(want, have, name)
    assert not found, "what the simulator runs differs from what Pulumi declares:\n" + "\n".join(found)


def test_a_migration_run_is_created_as_pulumi_declares_it(stack, declared, client):
    # The simulator removes its one-shot runs once they exit, so there is nothing left to inspect
    # after `up`: its driver creates (never starts) the run Pulumi declares — same version, same
    # command, the version's artefact — and that container is inspected, then removed. The Docker
    # name is the documented difference (Pulumi keeps one exited run per version: `-<version>`).
    root, spec = stack
    resolve = image_resolver(client, declared)
    runs = [r for r in declared.of_type(CONTAINER) if parity.is_one_shot(r.inputs)]
    assert runs, "the demo declares expand migrations: Pulumi should run them"
    builder = ImageBuilder(client, spec, say=lambda _: None)
    store = SecretStore(STACK)
    driver = DockerDriver(client, spec, store.get)
    found = []
    for run in runs:
        version = dict((i["label"], i["value"]) for i in run.inputs["labels"])["cutover.version"]
        run_spec = migration_container(spec, version, tuple(run.inputs["command"]), builder.image_id(version))
        assert run.inputs["name"] == f"{run_spec.name}-{version}"
        inputs = {**run.inputs, "name": run_spec.name, "envs": unwrap_secret(run.inputs.get("envs"))}
        want = parity.pulumi_container(inputs, resolve, declared.secret_values, network_names(declared))
        created = driver.create(run_spec, start=False)
        try:
            have = parity.docker_container(client.api.inspect_container(created.id), secrets=[store.get(DB_PASSWORD_SECRET)])
        finally:
            created.remove(force=True)
        assert have["command"] == list(run.inputs["command"]) and "<secret>" in "".join(have["env"].values()), "a vacuous comparison"
        found += parity.differences(want, have, run_spec.name)
    assert not found, "\n".join(found)


def test_app_containers_run_their_versions_artefact(stack, client):
    # The artefact the simulator bound to each version, not merely whatever the tag names.
    root, spec = stack
    builder = ImageBuilder(client, spec, say=lambda _: None)
    apps = [c for c in stack_containers(spec) if c.role == "app"]
    assert apps
    for c in apps:
        assert client.api.inspect_container(c.name)["Image"] == builder.image_id(c.version), c.name


def test_each_executor_stamps_the_fingerprint_of_its_own_spec(stack, declared, client):
    # The one label parity compares by presence only (parity.EXECUTOR_LABELS): here each side's
    # value is checked against the spec that executor rendered. The simulator's spec names the
    # image ID of each app version, the Pulumi program's the version's tag.
    root, spec = stack
    builder = ImageBuilder(client, spec, say=lambda _: None)
    versions = {c.version for c in stack_containers(spec) if c.role == "app"}
    simulator_specs = stack_containers(spec, images={v: builder.image_id(v) for v in versions})
    for c in simulator_specs:
        assert client.api.inspect_container(c.name)["Config"]["Labels"]["cutover.fingerprint"] == c.fingerprint(), c.name
    for c in stack_containers(spec):
        labels = {item["label"]: item["value"] for item in declared.named(CONTAINER, c.name).inputs["labels"]}
        assert labels["cutover.fingerprint"] == c.fingerprint(), c.name


def network_names(declared) -> dict[str, str]:
    """Containers name their network by the Network resource's ID: the name the engine reports for it."""
    return {mock_id(r.name): r.inputs["name"] for r in declared.of_type(NETWORK)}


def test_volumes_and_network_are_what_pulumi_declares(stack, declared, client):
    found = []
    volumes = {v.name: v for v in client.volumes.list(filters={"label": f"cutover.stack={STACK}"})}
    declared_volumes = {r.inputs["name"]: r for r in declared.of_type(VOLUME)}
    assert sorted(volumes) == sorted(declared_volumes)
    for name, registration in sorted(declared_volumes.items()):
        found += parity.differences(parity.pulumi_volume(registration.inputs), parity.docker_volume(volumes[name].attrs), f"volume {name}")
    (network,) = declared.of_type(NETWORK)
    name = network.inputs["name"]
    found += parity.differences(parity.pulumi_network(network.inputs), parity.docker_network(client.api.inspect_network(name)), f"network {name}")
    assert not found, "\n".join(found)
