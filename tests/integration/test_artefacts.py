"""One immutable artefact per version: bound to its source, reused when the source is the same,
refused when it is not, and the image ID is what every container runs. Real Docker."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from tests.conftest import remove_app_images, run_cli, static_site_copy, write_stack_file

pytestmark = pytest.mark.docker

STACK = "art"
APP = "art-site"


@pytest.fixture
def site(tmp_path, state_dir) -> Path:
    """The static-site example under a name, stack and ports of its own."""
    directory = static_site_copy(tmp_path / "site", APP)
    write_stack_file(directory, STACK, 19480, **{"cutover:poolSize": 2})
    remove_app_images(APP)
    yield directory
    run_cli("--stacks-dir", str(directory), "down", "--stack", STACK, "--volumes")
    remove_app_images(APP)


def cli(site: Path, *args: str):
    return run_cli("--stacks-dir", str(site), *args, "--stack", STACK, timeout=600)


def built(site: Path, version: str) -> dict:
    result = cli(site, "build", "--json", version)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_version_is_built_once_and_bound_to_its_source(site):
    first = built(site, "2.0.0")
    again = built(site, "2.0.0")
    assert not first["reused"] and again["reused"]
    assert again["image_id"] == first["image_id"] and again["source"]["digest"] == first["source"]["digest"]

    (site / "site/about.html").write_text((site / "site/about.html").read_text() + "<p>one more line</p>\n")
    refused = cli(site, "build", "2.0.0")
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "version 2.0.0 of art-site is already built as " + first["image_id"].split(":")[1][:12] in message
    assert message.endswith("give the change a new version.")
    # Nothing changed: the version still names the artefact it was first built as.
    assert docker.from_env().images.get(f"{APP}:2.0.0").id == first["image_id"]
    assert cli(site, "up").returncode == 0
    client = docker.from_env()
    idle_before = client.containers.get(f"cutover-{STACK}-green-1").id
    deploy_refused = cli(site, "deploy", "2.0.0")
    assert deploy_refused.returncode == 1 and "give the change a new version" in deploy_refused.stderr
    assert client.containers.get(f"cutover-{STACK}-green-1").id == idle_before

    changed = built(site, "2.0.1")
    assert changed["image_id"] != first["image_id"] and changed["source"]["digest"] != first["source"]["digest"]


def test_every_container_runs_the_image_id_its_colour_names(site):
    assert cli(site, "up").returncode == 0
    deployed = cli(site, "deploy", "2.0.0")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    # The deploy says how long each step took.
    for step in ("build", "migrate", "drain", "start", "health", "smoke"):
        assert f"{step} " in deployed.stdout.split("smoke-tested;")[1], deployed.stdout
    status = json.loads(cli(site, "status", "--json").stdout)
    client = docker.from_env()
    for colour, pool in status["pools"].items():
        assert pool["image_id"] == client.images.get(f"{APP}:{pool['version']}").id
        for index in (1, 2):
            container = client.containers.get(f"cutover-{STACK}-{colour}-{index}")
            # By ID, not by tag: retagging the version could not change what runs.
            assert container.attrs["Config"]["Image"] == pool["image_id"]
            assert container.attrs["Image"] == pool["image_id"]
