"""The images a stack runs, built on the stack's Docker host (never pushed: no registry is assumed).

What each image is made of (tag, context, Dockerfile, build args) comes from ``stacks.image_builds``,
the description the simulator builds from too. Build contexts are relative to the project
directory, where `pulumi` runs the program, when they lie inside it (the proxy, the database, the
demo app), so the inputs are the same on every machine and a different checkout path never forces
a rebuild; an app elsewhere has an absolute context.

An app whose definition declares ``image.repository`` instead of ``image.build`` is prebuilt: the
team builds ``<repository>:<version>`` itself and loads it into the engine, and this program never
builds it (see :func:`app_image`).
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
from pulumi_command import local

from components.engine import engine_platform
from stacks.image_builds import ImageBuild, app_build, database_build, proxy_build, state_build
from stacks.spec import StackSpec
from stacks.topology import app_image_ref

# The classic builder, as the simulator uses: it builds FROM a base image that exists only in the
# local engine (bootstrapped from Debian packages), where BuildKit would try a registry first.
BUILDER = docker.BuilderVersion.BUILDER_V1


@dataclass(frozen=True)
class AppImage:
    """One version's app artefact, however it got onto the engine.

    ``resource`` is what containers and migration runs depend on; ``name`` is the tag they run
    (the topology's ``image``); ``digest`` is the local image ID, the exact artefact.
    """

    resource: pulumi.Resource
    name: pulumi.Output[str]
    digest: pulumi.Output[str]


def app_image(spec: StackSpec, version: str, parent: pulumi.Resource) -> AppImage:
    """The app artefact for ``version``: one per version, shared by whichever colour runs it.

    Built from the app's declared context when it has one. A prebuilt app (``image.repository``)
    gets a ``docker.RemoteImage`` named by the tag instead of a bare tag string, because in
    pulumi-docker 5.2.0 that resource (the Terraform provider's ``docker_image``) looks the name
    up on the engine *first* (``docker image inspect``) and pulls only when it is missing, so:
    - a missing artefact stops `up` at the image, before any container of that version, with the
      provider's own error (no registry is reachable here, so the pull fails) — a bare tag would
      only fail later, inside the first container's create;
    - ``image_id`` is the local image ID of exactly that artefact (the digest the stack exports;
      ``repo_digest`` stays empty for an image no registry has seen);
    - ``keep_locally=True`` leaves the team's image on the engine on destroy or replace: cutover
      never built it, so it is not cutover's to delete.
    Caution: if the engine *can* reach a registry and the tag is missing locally, the provider pulls
    ``<repository>:<version>`` from it (Docker Hub for an unqualified name): load the artefact first.
    """
    build = app_build(spec, version)
    if build is None:
        tag = app_image_ref(spec, version)
        remote = docker.RemoteImage(
            f"app-image-{version}",
            name=tag,
            keep_locally=True,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return AppImage(remote, remote.name, remote.image_id)
    prepare = _prepare(spec, version, build, parent)
    image = _image(f"app-image-{version}", build, spec, parent, depends_on=[prepare] if prepare else [])
    # The local image ID for an image that is never pushed (pulumi-docker >= 4.4).
    return AppImage(image, image.image_name, image.repo_digest)


def _prepare(spec: StackSpec, version: str, build: ImageBuild, parent: pulumi.Resource) -> local.Command | None:
    """The app's prepare step (``image.build.prepare``: e.g. the demo's single-file zipapp), run on
    the machine that runs `pulumi`, in the build context, before the image is built — as
    `cutover build` runs it. Once per version: a version's artefact is made once."""
    declared = spec.app.image.build
    if declared is None or declared.prepare is None:
        return None
    command = [part.replace("{version}", version) for part in declared.prepare]
    return local.Command(
        f"app-prepare-{version}",
        create=shlex.join(command),
        dir=build.context,
        environment={"CUTOVER_VERSION": version},
        opts=pulumi.ResourceOptions(parent=parent),
    )


def proxy_image(spec: StackSpec, parent: pulumi.Resource) -> docker.Image:
    return _image("proxy-image", proxy_build(spec), spec, parent)


def database_image(spec: StackSpec, parent: pulumi.Resource) -> docker.Image:
    """PostgreSQL from Debian's package, on the same base image as the app and the proxy."""
    return _image("database-image", database_build(spec), spec, parent)


def dockerfile_path(build: ImageBuild) -> str:
    """The Dockerfile as pulumi-docker's ``Image`` wants it: a path from the program's working
    directory (the project directory), not from the context as ``ImageBuild`` (and the Docker SDK)
    say it — pulumi-docker's own example builds context ``app/`` with dockerfile ``app/Dockerfile``.
    An absolute context gives an absolute path."""
    return posixpath.join(build.context, build.dockerfile)


def _image(name: str, build: ImageBuild, spec: StackSpec, parent: pulumi.Resource, depends_on: list[pulumi.Resource] | None = None) -> docker.Image:
    return docker.Image(
        name,
        image_name=build.tag,
        build=docker.DockerBuildArgs(
            context=build.context,
            dockerfile=dockerfile_path(build),
            args=dict(build.args),
            builder_version=BUILDER,
            # For the engine that runs it, asked at program time: an arm64 laptop driving an amd64
            # host builds amd64, not an image the host cannot run.
            platform=engine_platform(spec),
        ),
        skip_push=True,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []),
    )


def state_image(spec: StackSpec, parent: pulumi.Resource) -> docker.Image:
    """The ledger's writer (images/state), the one the CLI's ledger runs: the switch record goes
    through it."""
    return _image("state-image", state_build(spec), spec, parent)
