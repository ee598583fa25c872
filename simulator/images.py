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
from stacks.spec import StackSpec
from stacks.topology import DATABASE_IMAGE, PROXY_IMAGE, app_image_ref

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
        self.ensure_base()
        self._build(REPO_ROOT / "images/proxy", "Dockerfile", PROXY_IMAGE, {})
        return PROXY_IMAGE

    def ensure_database(self) -> str:
        self.ensure_base()
        self._build(REPO_ROOT / "images/postgres", "Dockerfile", DATABASE_IMAGE, {})
        return DATABASE_IMAGE

    def ensure_app(self, version: str) -> str:
        """The artefact for ``version``: this source with the version baked in, or a prebuilt image."""
        tag = app_image_ref(self.spec, version)
        try:
            if (self.client.images.get(tag).labels or {}).get(BUILT_FROM_LABEL) != "source":
                self.say(f"using prebuilt artefact {tag}")
                return tag
        except docker.errors.ImageNotFound:
            pass
        self.ensure_base()
        self._build(REPO_ROOT, "images/app/Dockerfile", tag, {"APP_VERSION": version})
        return tag

    def _exists(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
            return True
        except docker.errors.ImageNotFound:
            return False

    def _build(self, context: Path, dockerfile: str, tag: str, args: dict[str, str]) -> None:
        self.say(f"building {tag}")
        log: list[str] = []
        stream = self.client.api.build(
            path=str(context),
            dockerfile=dockerfile,
            tag=tag,
            buildargs={"BASE_IMAGE": self.spec.base_image, **args},
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
