"""Building the stack's images on the local engine: the root base image, the proxy, the database,
the app artefacts.

Images we build from this repository are rebuilt on every use (Docker's layer cache makes an
unchanged build take a second or two), so a tag never lags behind the source. An app image that
exists but was *not* built by us (its ``cutover.built-from`` label is not ``source``: built by CI and loaded, say) is
a finished artefact and is deployed exactly as it is.
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
        """The artefact for ``version``: this source with the version baked in, or a prebuilt image."""
        build = app_build(self.spec, version)
        try:
            image = self.client.images.get(build.tag)
            if (image.labels or {}).get(BUILT_FROM_LABEL) != "source":
                self.say(f"using prebuilt artefact {build.tag}")
                _check_baked_version(image, build.tag, version)
                return build.tag
        except docker.errors.ImageNotFound:
            pass
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
            path=str(REPO_ROOT / build.context),
            # The Docker API wants the Dockerfile relative to the context.
            dockerfile=str(Path(build.dockerfile).relative_to(build.context)) if build.context != "." else build.dockerfile,
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


def _check_baked_version(image, tag: str, version: str) -> None:
    """A prebuilt artefact must be the version its tag says, or every later gate checks the wrong one."""
    env = dict(entry.partition("=")[::2] for entry in image.attrs["Config"].get("Env") or [])
    if env.get("APP_VERSION") != version:
        raise CutoverError(f"artefact {tag} reports APP_VERSION={env.get('APP_VERSION')!r}, not {version!r}; rebuild or retag it.")
