"""The one place a ``ContainerSpec`` becomes a pulumi-docker ``Container``.

Every container of a stack comes from ``stacks.topology``; this module only translates field by
field, so the Pulumi program holds no second copy of the topology and the parity test can compare
what it declares with what the simulator creates.
"""

from __future__ import annotations

from typing import Any, Sequence

import pulumi
import pulumi_docker as docker

from stacks.topology import ContainerSpec, HealthcheckSpec

# How long `pulumi up` waits for a new container to report healthy before failing the update.
HEALTHY_WAIT_TIMEOUT_S = 120


def container_args(c: ContainerSpec) -> dict[str, Any]:
    """Keyword arguments for ``pulumi_docker.Container`` that reproduce ``c`` exactly."""
    return {
        "name": c.name,
        "image": c.image,
        "hostname": c.hostname,
        "envs": [f"{key}={value}" for key, value in c.env],
        "ports": [docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip, protocol="tcp") for p in c.ports],
        "networks_advanced": [docker.ContainerNetworksAdvancedArgs(name=c.network, aliases=[c.hostname])],
        "healthcheck": _healthcheck(c.healthcheck),
        "restart": c.restart,
        "uploads": [docker.ContainerUploadArgs(file=u.path, content=u.content) for u in c.uploads],
        "volumes": [docker.ContainerVolumeArgs(volume_name=v.volume, container_path=v.container_path) for v in c.volumes],
        "labels": [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(c.labels_with_fingerprint().items())],
        "stop_timeout": c.stop_timeout_s,
        # Without this the provider removes a container with force (SIGKILL) and in-flight requests
        # die; with it, a retired or replaced container gets SIGTERM and its own stop timeout.
        "destroy_grace_seconds": c.stop_timeout_s,
        # `up` returns only once the container is healthy, so anything that depends on a pool (the
        # switch) never sends traffic to a colour that is still starting.
        "wait": c.healthcheck is not None,
        "wait_timeout": HEALTHY_WAIT_TIMEOUT_S,
    }


def container_options(parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> pulumi.ResourceOptions:
    # Our containers have fixed names and (the proxy) fixed host ports, so the old one must be gone
    # before its replacement can be created; the default create-then-delete would collide.
    return pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on), delete_before_replace=True)


def declare_container(c: ContainerSpec, parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()) -> docker.Container:
    # The logical name is the Docker name: one name per container, the same in `docker ps` and in
    # `pulumi stack`.
    return docker.Container(c.name, opts=container_options(parent, depends_on), **container_args(c))


def _healthcheck(h: HealthcheckSpec | None) -> docker.ContainerHealthcheckArgs | None:
    if h is None:
        return None
    return docker.ContainerHealthcheckArgs(
        tests=list(h.test),
        interval=f"{h.interval_s}s",
        timeout=f"{h.timeout_s}s",
        retries=h.retries,
        start_period=f"{h.start_period_s}s",
    )
