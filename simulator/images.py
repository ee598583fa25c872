"""Building the stack's images on the local engine: the root base image, the proxy, the database,
the app artefacts.

Images built from source are rebuilt on every use (Docker's layer cache makes an unchanged build
take a second or two), so a tag never lags behind the source. An app image that exists but was
*not* built by us (its ``cutover.built-from`` label is not ``source``: built by CI and loaded, say)
is a finished artefact and is deployed exactly as it is; so is every image of an app that declares
``image.repository`` instead of a build.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from simulator.errors import CutoverError
from stacks.image_builds import ImageBuild, app_build, database_build, proxy_build
from stacks.spec import StackSpec
from stacks.topology import app_image_ref

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_IMAGE = "cutover/base:bookworm"
BUILT_FROM_LABEL = "cutover.built-from"


class ImageBuilder:
    def __init__(self, client: docker.DockerClient, spec: StackSpec, say: Callable[[str], None] = print) -> None:
        self.client = client
        self.spec = spec
        self.say = say

    def ensure_base(self) -> None:
        base = self.spec.base_image
        if self._exists(base):
            return
        if base != DEFAULT_BASE_IMAGE:
            self.say(f"pulling base image {base}")
            try:
                self.client.images.pull(base)
                return
            except docker.errors.APIError as exc:
                raise CutoverError(f"cutover:baseImage {base} is not present and could not be pulled: {exc.explanation}") from None
        self.say(f"bootstrapping base image {base} from Debian packages (mmdebstrap, about a minute)")
        result = subprocess.run([str(REPO_ROOT / "images/base/bootstrap.sh"), base], capture_output=True, text=True)
        if result.returncode != 0:
            raise CutoverError(f"could not build the base image {base}: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")

    def ensure_proxy(self) -> str:
        return self._build(proxy_build(self.spec))

    def ensure_database(self) -> str:
        return self._build(database_build(self.spec))

    def ensure_app(self, version: str) -> str:
        """The artefact for ``version``: built from the app's declared context, or a prebuilt image."""
        tag = app_image_ref(self.spec, version)
        build = app_build(self.spec, version)
        try:
            image = self.client.images.get(tag)
            if build is None or (image.labels or {}).get(BUILT_FROM_LABEL) != "source":
                self.say(f"using prebuilt artefact {tag}")
                return tag
        except docker.errors.ImageNotFound:
            if build is None:
                raise CutoverError(
                    f"image {tag} is not on the Docker engine: the app declares image.repository {self.spec.app.image.repository!r}, "
                    f"so cutover never builds it; build or load it first (docker build -t {tag} . / docker load)."
                ) from None
        return self._build(build)

    def _exists(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def _build(self, build: ImageBuild) -> str:
        self.ensure_base()
        tag = build.tag
        self.say(f"building {tag}")
        log: list[str] = []
        stream = self.client.api.build(
            path=str(build.context_path()),
            dockerfile=build.dockerfile,
            tag=tag,
            buildargs=dict(build.args),
            rm=True,
            forcerm=True,
            labels={BUILT_FROM_LABEL: "source"},
            decode=True,
        )
        for chunk in stream:
            if "stream" in chunk:
                log.append(chunk["stream"])
            if "error" in chunk:
                tail = "".join(log[-5:]).strip()
                raise CutoverError(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
        return tag
