"""Building the stack's images on the local engine: the root base image, the proxy, the app artefacts.

Builds always run (Docker's layer cache makes an unchanged build take a second or two), so an
image tag never lags behind the source it was built from.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from simulator.errors import CutoverError
from stacks.spec import StackSpec
from stacks.topology import PROXY_IMAGE, app_image_ref

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_IMAGE = "cutover/base:bookworm"


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

    def ensure_app(self, version: str) -> str:
        """Build the artefact for ``version``: the same source, the version baked in as a build arg."""
        self.ensure_base()
        tag = app_image_ref(self.spec, version)
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
            decode=True,
        )
        for chunk in stream:
            if "stream" in chunk:
                log.append(chunk["stream"])
            if "error" in chunk:
                tail = "".join(log[-5:]).strip()
                raise CutoverError(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
