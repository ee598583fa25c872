"""The pure half of the simulator: from a spec and what is running, decide what to do.

Nothing here talks to Docker. The driver turns the actions into calls; the tests check plans
without an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.docker_objects import stack_volumes
from stacks.spec import COLOURS, StackSpec, other_colour
from stacks.topology import ContainerSpec, network_name, pool_containers, stack_containers


@dataclass(frozen=True)
class ObservedContainer:
    """What the engine says about one of the stack's containers."""

    name: str
    role: str
    colour: str | None
    version: str | None
    fingerprint: str | None
    running: bool
    image_id: str | None = None  # the image the container really runs


@dataclass(frozen=True)
class Observed:
    containers: dict[str, ObservedContainer]
    network_exists: bool
    volumes: frozenset[str]

    def pool(self, colour: str) -> list[ObservedContainer]:
        return sorted((c for c in self.containers.values() if c.role == "app" and c.colour == colour), key=lambda c: c.name)

    def pool_version(self, colour: str) -> str | None:
        versions = {c.version for c in self.pool(colour)}
        return versions.pop() if len(versions) == 1 else None

    def pool_image(self, colour: str) -> str | None:
        images = {c.image_id for c in self.pool(colour)}
        return images.pop() if len(images) == 1 else None


@dataclass(frozen=True)
class Action:
    kind: str  # create-network | create-volume | create | replace | start | remove | backend (a proxy-backend reload)
    target: str
    container: ContainerSpec | None = None
    reason: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.target}" + (f" ({self.reason})" if self.reason else "")


def current_versions(spec: StackSpec, observed: Observed) -> dict[str, str]:
    """Each colour keeps the version it runs now. A colour with no containers (a new stack, or one
    retired by finalize) starts at its partner's version if that one runs, else at the spec's:
    after a finalize the spec's old version may no longer fit the schema."""
    running = {c: observed.pool_version(c) for c in COLOURS}
    return {c: running[c] or running[other_colour(c)] or spec.version_of(c) for c in COLOURS}


def plan_up(spec: StackSpec, observed: Observed, images: dict[str, str] | None = None) -> list[Action]:
    """Converge the stack to the spec without changing which version either colour runs.

    ``images`` maps each version to the image ID it is bound to; containers run those IDs.
    """
    actions: list[Action] = []
    if not observed.network_exists:
        actions.append(Action("create-network", network_name(spec)))
    for volume in stack_volumes(spec):
        if volume.name not in observed.volumes:
            actions.append(Action("create-volume", volume.name))
    desired = stack_containers(spec, current_versions(spec, observed), images)
    actions.extend(_converge(desired, observed))
    wanted = {c.name for c in desired}
    for name in sorted(observed.containers):
        if name not in wanted:
            actions.append(Action("remove", name, reason="not in the stack spec any more"))
    return actions


def plan_deploy(spec: StackSpec, observed: Observed, colour: str, version: str, image: str | None = None) -> list[Action]:
    """Put ``version`` (its image ID ``image``) on every container of ``colour`` (the idle one);
    nothing else is touched."""
    desired = pool_containers(spec, colour, version, image)
    actions = []
    for container in desired:
        current = observed.containers.get(container.name)
        if current is None:
            actions.append(Action("create", container.name, container, "missing"))
        else:
            # Replaced even when unchanged: a deploy always starts from a fresh container.
            actions.append(Action("replace", container.name, container, f"{current.version} -> {version}"))
    return actions


def _converge(desired: list[ContainerSpec], observed: Observed) -> list[Action]:
    actions = []
    for container in desired:
        current = observed.containers.get(container.name)
        if current is None:
            actions.append(Action("create", container.name, container, "missing"))
        elif current.fingerprint != container.fingerprint():
            actions.append(Action("replace", container.name, container, "definition changed"))
        elif not current.running:
            actions.append(Action("start", container.name, container, "stopped"))
    return actions
