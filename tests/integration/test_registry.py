"""The artefact store: every artefact built is stored in the private registry (on loopback, with
auth), and a version gone from the engine comes back from it as the very same image ID; the
binding to its source holds even then. Real Docker, Debian's docker-registry."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import requests

from tests.conftest import remove_app_images, run_cli, static_site_copy

pytestmark = pytest.mark.docker

PORT = 15500
APP = "reg-site"


@pytest.fixture
def site(tmp_path, state_dir, monkeypatch) -> Path:
    monkeypatch.setenv("CUTOVER_REGISTRY_PORT", str(PORT))  # never the store a user runs on 5000
    directory = static_site_copy(tmp_path / "site", APP)
    remove_app_images(APP)
    started = cli(directory, "registry", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    yield directory
    cli(directory, "registry", "stop", "--data")
    remove_app_images(APP)
    for image in docker.from_env().images.list(name=f"127.0.0.1:{PORT}/{APP}"):
        docker.from_env().images.remove(image.id, force=True)


def cli(site: Path, *args: str):
    return run_cli("--stacks-dir", str(site), *args, "--stack", "static-ci", timeout=600)


def built(site: Path, version: str) -> tuple[dict, str]:
    result = cli(site, "build", "--json", version)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


def test_artefacts_are_stored_and_come_back_as_the_same_image(site):
    assert requests.get(f"http://127.0.0.1:{PORT}/v2/", timeout=5).status_code == 401  # auth is on

    first, _ = built(site, "2.0.0")
    assert first["stored"] and first["stored"].startswith("sha256:")

    client = docker.from_env()
    client.images.remove(f"{APP}:2.0.0", force=True)
    for image in client.images.list(name=f"127.0.0.1:{PORT}/{APP}"):
        client.images.remove(image.id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(first["image_id"])

    again, output = built(site, "2.0.0")
    assert "pulled from the artefact store" in output
    assert again["image_id"] == first["image_id"] and again["reused"]

    # Gone from the engine or not, the version stays bound to the source it was built from.
    client.images.remove(f"{APP}:2.0.0", force=True)
    (site / "site/index.html").write_text((site / "site/index.html").read_text() + "<p>other work</p>\n")
    refused = cli(site, "build", "2.0.0")
    assert refused.returncode == 1 and "give the change a new version" in refused.stderr
