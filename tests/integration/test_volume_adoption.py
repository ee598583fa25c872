"""A stack whose proxy state volume was made by an older, root-run proxy comes up with the hardened
(non-root) proxy: `cutover up` hands the volume to the proxy's user first, keeping its contents.

Real Docker and HAProxy; the static-site example on a stack of its own (`adopt`, 19760/19761).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest
import requests

from stacks.proxy_config import COLOUR_HEADER
from stacks.topology import PROXY_IMAGE, PROXY_RUN_AS
from tests.conftest import remove_app_images, run_cli, static_site_copy, write_stack_file

pytestmark = pytest.mark.docker

STACK = "adopt"
LIVE_PORT = 19760
APP_NAME = "adopt-site"
VOLUME = f"cutover-{STACK}-proxy-state"


def cli(stacks_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("--stacks-dir", str(stacks_dir), *args, timeout=900)


@pytest.fixture
def stacks_dir(tmp_path, state_dir):
    directory = static_site_copy(tmp_path / "stacks", APP_NAME)
    write_stack_file(directory, STACK, LIVE_PORT)
    cli(directory, "down", "--stack", STACK, "--volumes")
    remove_app_images(APP_NAME)
    yield directory
    cli(directory, "down", "--stack", STACK, "--volumes")


def test_up_adopts_a_state_volume_left_by_a_root_run_proxy(stacks_dir):
    client = docker.from_env()
    # What an older cutover left: the state volume and what is in it owned by root.
    cli(stacks_dir, "up", "--stack", STACK)  # builds the proxy image this checkout uses
    cli(stacks_dir, "down", "--stack", STACK, "--volumes")
    client.volumes.create(VOLUME, labels={"cutover.project": "cutover", "cutover.stack": STACK})
    client.containers.run(
        PROXY_IMAGE, entrypoint=["sh", "-c", "echo kept > /s/left-by-an-older-proxy && chown -R root:root /s"],
        user="0:0", volumes={VOLUME: {"bind": "/s", "mode": "rw"}}, remove=True,
    )

    result = cli(stacks_dir, "up", "--stack", STACK)
    assert result.returncode == 0, result.stdout + result.stderr

    seen = client.containers.run(
        PROXY_IMAGE, entrypoint=["sh", "-c", "stat -c %U /s /s/left-by-an-older-proxy; cat /s/left-by-an-older-proxy"],
        volumes={VOLUME: {"bind": "/s", "mode": "ro"}}, remove=True,
    )
    assert seen.decode().split() == [PROXY_RUN_AS, PROXY_RUN_AS, "kept"]
    response = requests.get(f"http://127.0.0.1:{LIVE_PORT}/", timeout=10)
    assert response.status_code == 200 and response.headers[COLOUR_HEADER] == "blue"
