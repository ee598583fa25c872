"""The artefact store: a private registry (Debian's docker-registry, images/registry) on this
machine's loopback, its data on a volume, basic auth with a generated password.

While it runs, every artefact cutover builds on this machine's engine is pushed to it, and a
version whose image is missing from the engine (pruned, or a fresh machine sharing the store) is
pulled back from it — checked to be the very image ID it was — before anything would rebuild it.
An engine elsewhere cannot reach this loopback: it gets artefacts streamed instead (promote).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

import docker
import docker.errors
import requests

from simulator.docker_driver import wait_until
from simulator.errors import CutoverError
from stacks.ownership import MANAGED_BY, SIMULATOR

IMAGE = "cutover-registry:1"
# A started container is not yet a listening registry: start() returns only once /v2/ answers.
READY_DEADLINE_S = 30
USER = "cutover"
DEFAULT_PORT = 5000
PORT_ENV = "CUTOVER_REGISTRY_PORT"


def registry_port() -> int:
    raw = os.environ.get(PORT_ENV, str(DEFAULT_PORT))
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise CutoverError(f"{PORT_ENV} must be a port number from 1 to 65535, got {raw!r}.")
    return int(raw)


def container_name(port: int) -> str:
    # One store per port, so a test's store never touches the one a user runs on the default port.
    return f"cutover-registry-{port}"


def _password_file() -> Path:
    root = Path(os.environ.get("CUTOVER_STATE_DIR") or Path.home() / ".local/state/cutover")
    return root / "registry" / "password"


def password() -> str:
    """Generated once per state directory (0600), like the stacks' database passwords."""
    path = _password_file()
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(24))
    return path.read_text().strip()


class ArtefactStore:
    def __init__(self, client: docker.DockerClient, port: int, say: Callable[[str], None] = print) -> None:
        self.client = client
        self.port = port
        self.say = say

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return container_name(self.port)

    @classmethod
    def running(cls, client: docker.DockerClient, say: Callable[[str], None] = print) -> "ArtefactStore | None":
        """The store on this machine's engine, if it is running."""
        port = registry_port()
        try:
            container = client.containers.get(container_name(port))
        except docker.errors.NotFound:
            return None
        return cls(client, port, say) if container.status == "running" else None

    def start(self, ensure_image: Callable[[], None]) -> None:
        try:
            container = self.client.containers.get(self.name)
            if container.status != "running":
                container.start()
        except docker.errors.NotFound:
            self._create(ensure_image)
        wait_until(
            self._answers,
            READY_DEADLINE_S,
            lambda: f"the artefact store {self.name} did not answer on {self.address} within {READY_DEADLINE_S}s (see docker logs {self.name}).",
            what=f"waiting for the artefact store {self.name}",
        )

    def _answers(self) -> bool:
        # Any HTTP answer will do (401: auth is on); a refused connection means not listening yet.
        try:
            requests.get(f"http://{self.address}/v2/", timeout=2)
        except requests.RequestException:
            return False
        return True

    def _create(self, ensure_image: Callable[[], None]) -> None:
        ensure_image()
        self.client.containers.run(
            IMAGE,
            name=self.name,
            detach=True,
            environment={"REGISTRY_USER": USER, "REGISTRY_PASSWORD": password()},
            ports={"5000/tcp": ("127.0.0.1", self.port)},
            volumes={f"{self.name}-data": {"bind": "/var/lib/docker-registry", "mode": "rw"}},
            restart_policy={"Name": "unless-stopped"},
            labels={"cutover.project": "cutover", "cutover.role": "registry", MANAGED_BY: SIMULATOR},
        )

    def stop(self, with_data: bool = False) -> list[str]:
        removed = []
        try:
            self.client.containers.get(self.name).remove(force=True)
            removed.append(f"container {self.name}")
        except docker.errors.NotFound:
            pass
        if with_data:
            try:
                self.client.volumes.get(f"{self.name}-data").remove(force=True)
                removed.append(f"volume {self.name}-data")
            except docker.errors.NotFound:
                pass
        return removed

    def _auth(self) -> dict:
        return {"username": USER, "password": password()}

    def repository(self, name: str) -> str:
        return f"{self.address}/{name}"

    def push(self, image_id: str, name: str, version: str) -> str:
        """Store ``image_id`` as ``name:version``; returns the manifest digest the store gave it."""
        repository = self.repository(name)
        self.client.images.get(image_id).tag(repository, version)
        digest = None
        for chunk in self.client.images.push(repository, version, auth_config=self._auth(), stream=True, decode=True):
            if "error" in chunk:
                raise CutoverError(f"the artefact store at {self.address} refused {name}:{version}: {chunk['error']}")
            digest = (chunk.get("aux") or {}).get("Digest") or digest
        if not digest:
            raise CutoverError(f"the artefact store at {self.address} stored {name}:{version} without giving its digest.")
        return digest

    def pull(self, name: str, version: str) -> str | None:
        """``name:version`` from the store into this engine: its image ID, or None when not stored."""
        repository = self.repository(name)
        try:
            image = self.client.images.pull(repository, tag=version, auth_config=self._auth())
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            if "not found" in str(exc.explanation or exc).lower() or "manifest unknown" in str(exc.explanation or exc).lower():
                return None
            raise CutoverError(f"the artefact store at {self.address} could not hand out {name}:{version}: {exc.explanation or exc}") from None
        return image.id
