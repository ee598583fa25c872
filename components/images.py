"""The images a stack runs, built on the stack's Docker host (never pushed: no registry is assumed).

Build contexts are relative to the project directory, where `pulumi` runs the program, so the
inputs are the same on every machine and a different checkout path never forces a rebuild.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from stacks.image_builds import ImageBuild, app_build, database_build, proxy_build
from stacks.spec import StackSpec

# The classic builder, as the simulator uses: it builds FROM a base image that exists only in the
# local engine (bootstrapped from Debian packages), where BuildKit would try a registry first.
BUILDER = docker.BuilderVersion.BUILDER_V1


def app_image(spec: StackSpec, version: str, parent: pulumi.Resource) -> docker.Image:
    """The app artefact for ``version``: one image per version, shared by whichever colour runs it."""
    return _image(f"app-image-{version}", app_build(spec, version), parent)


def proxy_image(spec: StackSpec, parent: pulumi.Resource) -> docker.Image:
    return _image("proxy-image", proxy_build(spec), parent)


def database_image(spec: StackSpec, parent: pulumi.Resource) -> docker.Image:
    """PostgreSQL from Debian's package, on the same base image as the app and the proxy."""
    return _image("database-image", database_build(spec), parent)


def _image(name: str, build: ImageBuild, parent: pulumi.Resource) -> docker.Image:
    return docker.Image(
        name,
        image_name=build.tag,
        build=docker.DockerBuildArgs(context=build.context, dockerfile=build.dockerfile, args=dict(build.args), builder_version=BUILDER),
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
