"""How each of the stack's images is built: tag, context, Dockerfile and build args, described once.

The simulator builds them with the Docker SDK, the Pulumi program declares them as
``pulumi_docker.Image`` resources; both read these descriptions, so the two can never disagree
about what an artefact is made of.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from stacks.spec import StackSpec
from stacks.topology import DATABASE_IMAGE, PROXY_IMAGE, app_image_ref


REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ImageBuild:
    tag: str
    context: str  # relative to the repository root when it is this project's own image; else absolute
    dockerfile: str  # relative to the context
    args: tuple[tuple[str, str], ...]

    def context_path(self) -> Path:
        return REPO_ROOT / self.context


def proxy_build(spec: StackSpec) -> ImageBuild:
    return proxy_image_build(spec.base_image)


def proxy_image_build(base_image: str) -> ImageBuild:
    """The proxy image (images/proxy); the local swarm's edge runs it too, with a config of its own."""
    return ImageBuild(PROXY_IMAGE, "images/proxy", "Dockerfile", (("BASE_IMAGE", base_image),))


def database_build(spec: StackSpec) -> ImageBuild:
    return ImageBuild(DATABASE_IMAGE, "images/postgres", "Dockerfile", (("BASE_IMAGE", spec.base_image),))


STATE_IMAGE = "cutover-state:1"
# The state image carries this label with STATE_FILES_SHA, so a changed script means a rebuild.
STATE_FILES_LABEL = "cutover.state-files"


def state_build(spec: StackSpec) -> ImageBuild:
    """The ledger and lock image (images/state), from the stack's base image; its build arg
    STATE_FILES_SHA (the sha256 of its files and base) becomes a label, so an unchanged image is
    never rebuilt and a changed one always is."""
    context = REPO_ROOT / "images/state"
    digest = hashlib.sha256(spec.base_image.encode())
    for path in sorted(p for p in context.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return ImageBuild(STATE_IMAGE, "images/state", "Dockerfile", (("BASE_IMAGE", spec.base_image), ("STATE_FILES_SHA", digest.hexdigest())))


def app_build(spec: StackSpec, version: str) -> ImageBuild | None:
    """The app's artefact for ``version``, as its definition declares it; None for prebuilt images.

    The context is the app's own directory, named relative to this project when it lies inside it
    (so Pulumi's inputs do not depend on where the checkout is), absolute otherwise. BASE_IMAGE is
    offered to every app build (an app whose Dockerfile has no such ARG ignores it).
    """
    app = spec.app
    if app.image.build is None:
        return None
    context = app.resolve(app.image.build.context)
    try:
        context_name = str(context.relative_to(REPO_ROOT))
    except ValueError:
        context_name = str(context)
    args = {"BASE_IMAGE": spec.base_image, **app.build_args(version)}
    return ImageBuild(app_image_ref(spec, version), context_name, app.image.build.dockerfile, tuple(sorted(args.items())))


def registry_build(spec: StackSpec) -> ImageBuild:
    """The artefact store's image (images/registry): Debian's docker-registry on the base image."""
    return ImageBuild("cutover-registry:1", "images/registry", "Dockerfile", (("BASE_IMAGE", spec.base_image),))
