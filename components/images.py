"""The images a stack runs, built on the stack's Docker host (never pushed: no registry is assumed).

Build contexts are relative to the project directory, where `pulumi` runs the program, so the
inputs are the same on every machine and a different checkout path never forces a rebuild.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from stacks.spec import StackSpec
from stacks.topology import DATABASE_IMAGE, PROXY_IMAGE, app_image_ref

# The classic builder, as the simulator uses: it builds FROM a base image that exists only in the
# local engine (bootstrapped from Debian packages), where BuildKit would try a registry first.
BUILDER = docker.BuilderVersion.BUILDER_V1


def app_image(spec: StackSpec, version: str, parent: pulumi.Resource) -> docker.Image:
    """The app artefact for ``version``: one image per version, shared by whichever colour runs it."""
    return docker.Image(
        f"app-image-{version}",
        image_name=app_image_ref(spec, version),
        build=docker.DockerBuildArgs(
            context=".",
            dockerfile="images/app/Dockerfile",
            args={"APP_VERSION": version, "BASE_IMAGE": spec.base_image},
            builder_version=BUILDER,
        ),
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def proxy_image(spec: StackSpec, parent: pulumi.Resource) -> docker.Image:
    return docker.Image(
        "proxy-image",
        image_name=PROXY_IMAGE,
        build=docker.DockerBuildArgs(
            context="images/proxy",
            dockerfile="images/proxy/Dockerfile",
            args={"BASE_IMAGE": spec.base_image},
            builder_version=BUILDER,
        ),
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def database_image(spec: StackSpec, parent: pulumi.Resource) -> docker.Image:
    """PostgreSQL from Debian's package, on the same base image as the app and the proxy."""
    return docker.Image(
        "database-image",
        image_name=DATABASE_IMAGE,
        build=docker.DockerBuildArgs(
            context="images/postgres",
            dockerfile="images/postgres/Dockerfile",
            args={"BASE_IMAGE": spec.base_image},
            builder_version=BUILDER,
        ),
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
