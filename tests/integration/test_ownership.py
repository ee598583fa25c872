"""The simulator refuses a stack whose containers the Pulumi program manages: one sentence, exit 1,
nothing changed (no network, no volume, no ledger record, no lock, the container untouched). And a
migration run that outlives its timeout is stopped with one sentence.

Real Docker: one created (never started) container labelled as Pulumi labels its own, on a stack
of its own (`robust-own`, ports 19860/19861 in its stack file; nothing listens on them).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import pytest

from simulator.docker_driver import DockerDriver
from simulator.errors import CutoverError
from stacks.ownership import MANAGED_BY, PULUMI, SIMULATOR, listing_command, parse_listing, refusal
from stacks.spec import load_stack
from stacks.topology import ContainerSpec
from tests.conftest import run_cli, static_site_copy, write_stack_file

pytestmark = pytest.mark.docker

STACK = "robust-own"
LIVE_PORT = 19860
CONTAINER = f"cutover-{STACK}-proxy"
# The base image every stack is built on: already on the engine, and nothing here runs it.
IMAGE = "cutover/base:bookworm"
TIMEOUT_NETWORK = "robust-migrate-timeout"


def cli(stacks_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("--stacks-dir", str(stacks_dir), *args, timeout=120)


def _stack_objects(client: docker.DockerClient) -> dict:
    """Everything on the engine that belongs to the stack, by kind."""
    return {
        "containers": sorted((c.name, c.id, c.status) for c in client.containers.list(all=True, filters={"label": f"cutover.stack={STACK}"})),
        "locks": sorted(c.name for c in client.containers.list(all=True, filters={"label": f"cutover.lock.stack={STACK}"})),
        "networks": sorted(n.name for n in client.networks.list(names=[f"cutover-{STACK}"])),
        "volumes": sorted(v.name for v in client.volumes.list() if v.name.startswith(f"cutover-{STACK}-")),
    }


@pytest.fixture(scope="module")
def pulumi_stack(tmp_path_factory, state_dir):
    client = docker.from_env()
    directory = static_site_copy(tmp_path_factory.mktemp("own") / "stacks", "robust-own-site")
    write_stack_file(directory, STACK, LIVE_PORT)
    _remove(client)
    client.containers.create(
        IMAGE, command=["true"], name=CONTAINER,
        labels={"cutover.project": "cutover", "cutover.stack": STACK, "cutover.role": "proxy", MANAGED_BY: PULUMI},
    )
    yield directory, client
    _remove(client)


def _remove(client: docker.DockerClient) -> None:
    try:
        client.containers.get(CONTAINER).remove(force=True)
    except docker.errors.NotFound:
        pass


@pytest.mark.parametrize("command", [("up",), ("down", "--volumes"), ("switch", "--to", "green"), ("deploy", "2.0.0")], ids=["up", "down", "switch", "deploy"])
def test_the_simulator_refuses_a_stack_pulumi_manages_and_changes_nothing(pulumi_stack, command):
    directory, client = pulumi_stack
    before = _stack_objects(client)
    assert [name for name, _, _ in before["containers"]] == [CONTAINER]

    result = cli(directory, command[0], "--stack", STACK, *command[1:])

    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split()).removeprefix("error: ")
    assert message.startswith(f"stack {STACK} is managed by Pulumi"), message
    assert CONTAINER in message and f"{MANAGED_BY}={PULUMI}" in message and "pulumi destroy" in message
    assert message.endswith(".") and not re.search(r"[.!?]\s", message), message  # one sentence
    assert "Traceback" not in result.stderr
    assert _stack_objects(client) == before


def test_the_listing_the_pulumi_program_runs_reads_the_same_owner(pulumi_stack):
    # components/engine.py runs this command through pulumi-command; here it runs for real.
    owners = parse_listing(subprocess.run(["sh", "-c", listing_command(STACK, "cutover")], capture_output=True, text=True, check=True).stdout)
    assert owners == {CONTAINER: PULUMI}
    assert refusal(STACK, owners, PULUMI) is None and refusal(STACK, owners, SIMULATOR) is not None


def test_a_migration_run_past_its_timeout_is_stopped_with_one_sentence(pulumi_stack):
    directory, client = pulumi_stack
    network = client.networks.create(TIMEOUT_NETWORK, labels={"cutover.project": "cutover"})
    try:
        spec = load_stack(STACK, directory)
        driver = DockerDriver(client, spec, secrets=lambda name: "unused")
        run = ContainerSpec(
            name=f"cutover-{STACK}-migrate", role="migration", image=IMAGE, network=TIMEOUT_NETWORK, hostname="migrate",
            version="9.9.9", command=("sleep", "60"), restart="no",
        )
        started = time.monotonic()
        with pytest.raises(CutoverError) as caught:
            driver.run_once(run, timeout_s=2)
        assert time.monotonic() - started < 30
        message = str(caught.value)
        assert message.startswith(f"cutover-{STACK}-migrate (9.9.9) did not finish within 2 s (cutover:migrationTimeoutSeconds)"), message
        assert message.endswith(".") and not re.search(r"[.!?]\s", message), message
        # Killed and removed, not left running against the schema.
        assert client.containers.list(all=True, filters={"name": run.name}) == []
    finally:
        network.remove()
