"""What ``__main__.py`` runs: read the stack's config, build its BlueGreenService, export outputs.

Kept apart from ``__main__.py`` so the unit tests drive the very same functions under Pulumi's mocks.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.blue_green_service import BlueGreenService, BlueGreenServiceArgs
from stacks.spec import REQUIRED_KEYS, StackSpec

# Config keys whose values must never reach the state file in plain text. None: the one secret a
# stack has, the database password, is not configured but generated (pulumi-random, in
# components/database.py) and stays a pulumi.Output.secret all the way into the containers.
SECRET_KEYS: frozenset[str] = frozenset()


def config_values() -> dict[str, str]:
    """Every stack key present in Pulumi config, as the raw strings Pulumi hands a program.

    Missing keys are left out so ``spec_from_config`` reports them by name.
    """
    values = {}
    for key in REQUIRED_KEYS:
        namespace, name = key.split(":", 1)
        value = pulumi.Config(namespace).get(name)
        if value is not None:
            values[key] = value
    return values


def build(spec: StackSpec) -> BlueGreenService:
    # An explicit provider, so every Docker resource of the stack provably talks to docker:host.
    provider = docker.Provider("docker", host=spec.docker_host)
    return BlueGreenService("cutover", BlueGreenServiceArgs(spec), opts=pulumi.ResourceOptions(providers=[provider]))


def export(service: BlueGreenService) -> None:
    # Never the database password: it stays inside the state (encrypted) and the containers.
    pulumi.export("databaseHost", service.database_host)
    pulumi.export("liveColor", service.live_colour)
    pulumi.export("liveUrl", service.live_url)
    pulumi.export("previewUrl", service.preview_url)
    for colour, pool in service.pools.items():
        pulumi.export(colour, {"version": pool.version, "image": pool.image, "imageDigest": pool.image_digest})
    pulumi.export("switchOutput", service.switch.stdout)
