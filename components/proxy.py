"""Proxy: the HAProxy container, its uploaded static config, and the volume that keeps its colour.

The static config (in the container's uploads) never names the live colour; the colour lives in a
map file on the state volume and is changed only by the switch command, so moving traffic never
replaces this container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker

from components.images import proxy_image
from components.render import declare_container, declare_volume
from stacks.docker_objects import container_volumes
from stacks.spec import StackSpec
from stacks.topology import ContainerSpec


@dataclass(frozen=True, eq=False)
class ProxyArgs:
    spec: StackSpec
    # From stacks.topology.proxy_container.
    container: ContainerSpec
    network: docker.Network


class Proxy(pulumi.ComponentResource):
    container_name: pulumi.Output[str]
    container_id: pulumi.Output[str]
    image: pulumi.Output[str]
    image_digest: pulumi.Output[str]

    def __init__(self, name: str, args: ProxyArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("cutover:index:Proxy", name, None, opts)
        if args.container.role != "proxy":  # a wiring bug in the caller, not a user error
            raise ValueError(f"Proxy was given the {args.container.role} container {args.container.name}")

        self.image_resource = proxy_image(args.spec, parent=self)
        self.volumes = [declare_volume(v, parent=self) for v in container_volumes(args.spec, args.container)]
        self.container = declare_container(
            # The proxy needs no secret: a secret_env entry here would raise in render.py.
            args.container,
            parent=self,
            secrets={},
            depends_on=[self.image_resource, args.network, *self.volumes],
        )

        self.container_name = self.container.name
        self.container_id = self.container.id
        self.image = self.image_resource.image_name
        self.image_digest = self.image_resource.repo_digest
        self.register_outputs(
            {
                "containerName": self.container_name,
                "containerId": self.container_id,
                "image": self.image,
                "imageDigest": self.image_digest,
            }
        )
