"""How each of the stack's images is built: tag, context, Dockerfile and build args, described once.

The simulator builds them with the Docker SDK, the Pulumi program declares them as
``pulumi_docker.Image`` resources; both read these descriptions, so the two can never disagree
about what an artefact is made of.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.spec import StackSpec
from stacks.topology import DATABASE_IMAGE, PROXY_IMAGE, app_image_ref


@dataclass(frozen=True)
class ImageBuild:
    tag: str
    context: str  # relative to the repository root
    dockerfile: str  # relative to the repository root
    args: tuple[tuple[str, str], ...]


def proxy_build(spec: StackSpec) -> ImageBuild:
    return ImageBuild(PROXY_IMAGE, "images/proxy", "images/proxy/Dockerfile", (("BASE_IMAGE", spec.base_image),))


def database_build(spec: StackSpec) -> ImageBuild:
    return ImageBuild(DATABASE_IMAGE, "images/postgres", "images/postgres/Dockerfile", (("BASE_IMAGE", spec.base_image),))


def app_build(spec: StackSpec, version: str) -> ImageBuild:
    """One artefact per version: the same source, the version baked in as a build arg."""
    return ImageBuild(
        app_image_ref(spec, version), ".", "images/app/Dockerfile", (("APP_VERSION", version), ("BASE_IMAGE", spec.base_image))
    )
