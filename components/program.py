"""What ``__main__.py`` runs: read the stack's config, build its BlueGreenService, export outputs.

Kept apart from ``__main__.py`` so the unit tests drive the very same functions under Pulumi's mocks.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.blue_green_service import BlueGreenService, BlueGreenServiceArgs
from stacks.app import AppError
from components.engine import refuse_foreign_stack
from components.swarm_service import SwarmBlueGreenService, SwarmBlueGreenServiceArgs
from stacks.spec import ALL_KEYS, SpecError, StackSpec, spec_from_config

# Where `pulumi` runs the program (Pulumi.yaml's directory), and where Pulumi.yaml's stackConfigDir
# keeps the stack files: `cutover:app` is a path relative to that directory, as for the simulator.
PROJECT_DIR = Path(__file__).resolve().parent.parent
STACKS_DIR = PROJECT_DIR / "stacks"

# Config keys whose values must never reach the state file in plain text. None: the one secret a
# stack has, the database password (read-write apps only), is not configured but generated
# (pulumi-random, in components/database.py) and stays a pulumi.Output.secret all the way into the
# containers.
SECRET_KEYS: frozenset[str] = frozenset()


def config_values() -> dict[str, str]:
    """Every stack key present in Pulumi config, as the raw strings Pulumi hands a program.

    Missing keys are left out so ``spec_from_config`` reports them by name (or takes an optional
    key's default).
    """
    values = {}
    for key in ALL_KEYS:
        namespace, name = key.split(":", 1)
        value = pulumi.Config(namespace).get(name)
        if value is not None:
            values[key] = value
    return values


def load_spec(stack: str, stacks_dir: Path = STACKS_DIR) -> StackSpec:
    """This stack's config (and the app definition it names) as a validated spec.

    A bad value — in the stack's config or in the app definition file — becomes a
    ``pulumi.RunError`` carrying the same one sentence: the Pulumi CLI prints a RunError's message
    alone, where any other exception from a program is printed with its whole traceback.
    """
    try:
        return spec_from_config(stack, config_values(), source=f"stacks/Pulumi.{stack}.yaml", stacks_dir=stacks_dir)
    except (SpecError, AppError) as exc:
        raise pulumi.RunError(str(exc)) from None


def build(spec: StackSpec) -> BlueGreenService | SwarmBlueGreenService:
    if spec.is_swarm:
        # The manager's engine: swarm services, configs and the overlay network are created there.
        # (Which stacks the simulator owns is read from containers on one engine; on a swarm it
        # will be read from services, with the simulator's swarm support: docs/cluster.md.)
        provider = docker.Provider("docker", host=spec.docker_host)
        return SwarmBlueGreenService("cutover", SwarmBlueGreenServiceArgs(spec), opts=pulumi.ResourceOptions(providers=[provider]))
    # Before any resource: a stack the simulator created is refused, never adopted (its containers'
    # names would collide, or worse, be replaced under the simulator's feet).
    refuse_foreign_stack(spec)
    # An explicit provider, so every Docker resource of the stack provably talks to docker:host.
    provider = docker.Provider("docker", host=spec.docker_host)
    return BlueGreenService("cutover", BlueGreenServiceArgs(spec), opts=pulumi.ResourceOptions(providers=[provider]))


def export(service: BlueGreenService | SwarmBlueGreenService) -> None:
    if isinstance(service, SwarmBlueGreenService):
        pulumi.export("engine", "swarm")
        pulumi.export("liveColor", service.live_colour)
        pulumi.export("liveUrl", service.live_url)
        pulumi.export("previewUrl", service.preview_url)
        for colour, pool in service.pools.items():
            pulumi.export(colour, {"version": service.spec.version_of(colour), "service": pool.name})
        return
    # Never the database password: it stays inside the state (encrypted) and the containers. A
    # read-only app has no database, so no databaseHost either.
    if service.database_host is not None:
        pulumi.export("databaseHost", service.database_host)
    pulumi.export("liveColor", service.live_colour)
    pulumi.export("liveUrl", service.live_url)
    pulumi.export("previewUrl", service.preview_url)
    for colour, pool in service.pools.items():
        pulumi.export(colour, {"version": pool.version, "image": pool.image, "imageDigest": pool.image_digest})
    pulumi.export("switchOutput", service.switch.stdout)
