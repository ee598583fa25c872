"""docker:host honoured: a stack on another engine (a Docker-in-Docker node reached over tcp on
127.0.0.1) is built, deployed and switched there, and a version promoted to it runs there as the
same image ID it went live as on the stack below, streamed between the engines."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import requests
import yaml

from stacks.proxy_config import VERSION_HEADER
from tests.conftest import remove_app_images, run_cli, static_site_copy, write_stack_file
from tests.nodes import build_node_image, remove_node, start_node

pytestmark = pytest.mark.docker

NODE = "cutover-test-node"
API_PORT = 23751
NEAR, FAR = "near", "far"
FAR_PORTS = (19620, 19621)
APP = "remote-site"


@pytest.fixture(scope="module")
def node(state_dir):
    client = docker.from_env()
    build_node_image(client, "cutover/base:bookworm")
    url = start_node(client, NODE, API_PORT, list(FAR_PORTS))
    yield url
    remove_node(client, NODE)


@pytest.fixture
def stacks(tmp_path, node) -> Path:
    directory = static_site_copy(tmp_path / "stacks", APP)
    write_stack_file(directory, NEAR, 19630)
    # On the node, ports are published on its own (private) interface; the node publishes them on
    # this machine's loopback.
    write_stack_file(directory, FAR, FAR_PORTS[0], **{"docker:host": node, "cutover:bindAddress": "0.0.0.0", "cutover:previewBindAddress": "0.0.0.0"})
    (directory / "promotion.yaml").write_text(yaml.safe_dump({"order": [NEAR, FAR]}))
    remove_app_images(APP)
    yield directory
    for stack in (NEAR, FAR):
        run_cli("--stacks-dir", str(directory), "down", "--stack", stack, "--volumes", "--ledger")
    remove_app_images(APP)


def cli(stacks: Path, *args: str):
    return run_cli("--stacks-dir", str(stacks), *args, timeout=900)


def test_a_stack_on_another_engine_gets_the_promoted_image_and_serves_it(stacks, node):
    local, remote = docker.from_env(), docker.DockerClient(base_url=node)
    for stack in (NEAR, FAR):
        result = cli(stacks, "up", "--stack", stack)
        assert result.returncode == 0, result.stdout + result.stderr
    # The far stack lives on the node, not on this machine's engine.
    assert remote.containers.get(f"cutover-{FAR}-proxy") and not local.containers.list(all=True, filters={"name": f"cutover-{FAR}-"})

    assert cli(stacks, "deploy", "--stack", NEAR, "2.0.0").returncode == 0
    assert cli(stacks, "switch", "--stack", NEAR).returncode == 0
    proven = json.loads(cli(stacks, "status", "--stack", NEAR, "--json").stdout)["pools"]["green"]["image_id"]
    promoted = cli(stacks, "promote", "2.0.0", "--to", FAR)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"streaming {proven.split(':')[1][:12]}" in promoted.stdout

    switched = cli(stacks, "switch", "--stack", FAR)
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert remote.containers.get(f"cutover-{FAR}-green-1").attrs["Image"] == proven
    answer = requests.get(f"http://127.0.0.1:{FAR_PORTS[0]}/", timeout=5)
    assert answer.status_code == 200 and answer.headers[VERSION_HEADER] == "2.0.0" and "Release 2.0.0" in answer.text
    # The far stack's ledger is on the far engine.
    assert remote.volumes.get(f"cutover-{FAR}-ledger")
    verify = cli(stacks, "audit", "verify", "--stack", FAR)
    assert verify.returncode == 0, verify.stdout + verify.stderr
