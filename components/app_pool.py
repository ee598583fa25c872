"""AppPool: the N containers of one colour, all running one version's artefact."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_docker as docker

from components.images import AppImage
from components.render import declare_container
from stacks.topology import ContainerSpec


@dataclass(frozen=True, eq=False)
class AppPoolArgs:
    colour: str
    version: str
    # From stacks.topology.pool_containers: this component never invents a container of its own.
    containers: Sequence[ContainerSpec]
    # The version's artefact: built here, or a prebuilt image the team loaded (components/images.py).
    image: AppImage
    network: docker.Network
    # Secret values by name (stacks.topology names them; the Database component holds them). Empty
    # for an app without a database: its containers name no secret.
    secrets: Mapping[str, pulumi.Input[str]]
    # What must have finished first: the version's expand migration (its `done` gate), if it has one.
    after: Sequence[pulumi.Input[pulumi.Resource]] = ()
    # The colour serving traffic now: its containers keep their current inputs (components/staging.py).
    frozen: bool = False


class AppPool(pulumi.ComponentResource):
    colour: pulumi.Output[str]
    version: pulumi.Output[str]
    image: pulumi.Output[str]
    image_digest: pulumi.Output[str]
    container_names: pulumi.Output[list[str]]

    def __init__(self, name: str, args: AppPoolArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("cutover:index:AppPool", name, None, opts)
        strays = [c.name for c in args.containers if (c.role, c.colour, c.version) != ("app", args.colour, args.version)]
        if strays:  # a wiring bug in the caller, not a user error
            raise ValueError(f"pool {args.colour} {args.version} was given foreign containers: {', '.join(strays)}")

        self.containers = [
            # By image ID: the pool runs the artefact that was built, whatever the tag says later.
            declare_container(
                c,
                parent=self,
                secrets=args.secrets,
                depends_on=[args.image.resource, args.network, *args.after],
                image=args.image.digest,
                frozen=args.frozen,
            )
            for c in args.containers
        ]

        self.colour = pulumi.Output.from_input(args.colour)
        self.version = pulumi.Output.from_input(args.version)
        self.image = args.image.name
        # The local image ID (or the registry digest, once images are pushed): the exact artefact.
        self.image_digest = args.image.digest
        self.container_names = pulumi.Output.all(*[c.name for c in self.containers])
        self.register_outputs(
            {
                "colour": self.colour,
                "version": self.version,
                "image": self.image,
                "imageDigest": self.image_digest,
                "containerNames": self.container_names,
            }
        )
