"""The stack's Docker objects other than containers — its network and named volumes — from the spec.

``stacks.topology`` describes the containers; this module describes what they attach to, so both
executors create the network and volumes with the same names, driver and labels (the simulator
finds a stack's volumes by these labels when it tears the stack down).
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.spec import PROJECT, StackSpec
from stacks.topology import ContainerSpec, network_name, stack_containers

NETWORK_DRIVER = "bridge"


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    driver: str
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    labels: tuple[tuple[str, str], ...]


def stack_labels(spec: StackSpec) -> tuple[tuple[str, str], ...]:
    return (("cutover.project", PROJECT), ("cutover.stack", spec.stack))


def stack_network(spec: StackSpec) -> NetworkSpec:
    return NetworkSpec(network_name(spec), NETWORK_DRIVER, stack_labels(spec))


def container_volumes(spec: StackSpec, container: ContainerSpec) -> list[VolumeSpec]:
    """The named volumes one container mounts, in mount order."""
    return [VolumeSpec(mount.volume, stack_labels(spec)) for mount in container.volumes]


def stack_volumes(spec: StackSpec) -> list[VolumeSpec]:
    """Every named volume any container of the stack mounts, each once."""
    seen: dict[str, VolumeSpec] = {}
    for container in stack_containers(spec):
        for volume in container_volumes(spec, container):
            seen.setdefault(volume.name, volume)
    return list(seen.values())


def ledger_volume(spec: StackSpec) -> VolumeSpec:
    """The stack's audit ledger on its engine. No container of the stack mounts it (the ledger's
    own short-lived writers do); ``cutover.role=ledger`` keeps it out of 'down --volumes'."""
    return VolumeSpec(f"{PROJECT}-{spec.stack}-ledger", (*stack_labels(spec), ("cutover.role", "ledger")))
