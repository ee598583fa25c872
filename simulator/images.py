"""Building the stack's images on the local engine: the root base image, the proxy, the database,
the app artefacts.

Images built from source are rebuilt on every use (Docker's layer cache makes an unchanged build
take a second or two), so a tag never lags behind the source. An app image that exists but was
*not* built by us (its ``cutover.built-from`` label is not ``source``: built by CI and loaded, say)
is a finished artefact and is deployed exactly as it is; so is every image of an app that declares
``image.repository`` instead of a build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from simulator import progress
from simulator.artefacts import (
    APP_LABEL,
    ARTEFACT_LABEL,
    SOURCE_COMMIT_LABEL,
    SOURCE_DIGEST_LABEL,
    SOURCE_DIRTY_LABEL,
    VERSION_LABEL,
    Source,
    file_sha256,
    source_of,
)
from simulator.errors import CutoverError
from simulator.registry import ArtefactStore
from stacks.image_builds import STATE_FILES_LABEL, ImageBuild, app_build, database_build, proxy_build, registry_build, state_build
from stacks.spec import StackSpec
from stacks.topology import app_image_ref

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_IMAGE = "cutover/base:bookworm"
BUILT_FROM_LABEL = "cutover.built-from"


def _local_engine() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except docker.errors.DockerException:
        return None


def _has(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def stream_image(source: docker.DockerClient, target: docker.DockerClient, ref: str) -> str:
    """Copy an image between engines (save | load, no registry) and return its ID on the target,
    which must be the source's: image IDs are content digests, so equal IDs are the same image."""
    expected = source.images.get(ref).id
    target.api.load_image(source.api.get_image(ref))
    loaded = target.images.get(expected).id
    if loaded != expected:
        raise CutoverError(f"streamed {ref} ({short_id(expected)}) to another engine and found {short_id(loaded)} there instead.")
    return loaded


def tag_image(image, tag: str) -> None:
    """Give ``image`` the tag ``repository:version`` (the repository may hold a registry's port)."""
    repository, _, version = tag.rpartition(":")
    image.tag(repository, version)


def short_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


@dataclass(frozen=True)
class Artefact:
    """One version's artefact: the image it runs as, and what it was built from."""

    version: str
    tag: str
    image_id: str  # sha256:<hex>, what every container of this version runs
    source: Source | None  # None for a prebuilt image
    artefact_sha256: str | None  # the prepare step's single file, if the app declares one
    reused: bool
    seconds: float
    stored: str | None = None  # the artefact store's manifest digest, when it was pushed there

    def as_dict(self) -> dict:
        return {
            "version": self.version,
            "tag": self.tag,
            "image_id": self.image_id,
            "source": self.source.as_dict() if self.source else None,
            "artefact_sha256": self.artefact_sha256,
            "reused": self.reused,
            "seconds": self.seconds,
            "stored": self.stored,
        }


class ImageBuilder:
    def __init__(self, client: docker.DockerClient, spec: StackSpec, say: Callable[[str], None] = print) -> None:
        self.client = client
        self.spec = spec
        self.say = say
        self._store: ArtefactStore | None | bool = False  # False: not looked for yet

    def ensure_base(self) -> None:
        """The base image on the stack's engine: pulled (a registry image), or bootstrapped from
        Debian packages on this machine's engine and, for a remote engine, streamed there."""
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
        local = _local_engine()
        if local is None or not _has(local, base):
            self.say(f"bootstrapping base image {base} from Debian packages (mmdebstrap, about a minute)")
            result = subprocess.run([str(REPO_ROOT / "images/base/bootstrap.sh"), base], capture_output=True, text=True)
            if result.returncode != 0:
                raise CutoverError(f"could not build the base image {base}: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
            local = local or _local_engine()
        if not self._exists(base) and local is not None:
            # The bootstrap imports into this machine's engine; a remote stack's engine gets a copy.
            self.say(f"streaming base image {base} to the stack's engine")
            stream_image(local, self.client, base)

    def ensure_proxy(self) -> str:
        return self._build(proxy_build(self.spec))

    def ensure_database(self) -> str:
        return self._build(database_build(self.spec))

    def ensure_state(self) -> str:
        """The ledger and lock image (images/state): built only when missing or its files changed."""
        build = state_build(self.spec)
        try:
            if (self.client.images.get(build.tag).labels or {}).get(STATE_FILES_LABEL) == dict(build.args)["STATE_FILES_SHA"]:
                return build.tag
        except docker.errors.ImageNotFound:
            pass
        self._build(build)
        return build.tag

    def ensure_app(self, version: str) -> "Artefact":
        """The artefact for ``version``, bound to its source for good.

        Built from the app's declared context the first time; the same source again reuses it;
        another source under the same version is refused. A prebuilt image (``image.repository``,
        or an image not built by cutover) is used as it is.
        """
        started = time.monotonic()
        tag = app_image_ref(self.spec, version)
        build = app_build(self.spec, version)
        existing = self._image(tag) or self._from_store(version, tag)
        if build is None or (existing is not None and (existing.labels or {}).get(BUILT_FROM_LABEL) != "source"):
            if existing is None:
                raise CutoverError(
                    f"image {tag} is not on the Docker engine: the app declares image.repository {self.spec.app.image.repository!r}, "
                    f"so cutover never builds it; build or load it first (docker build -t {tag} . / docker load)."
                )
            self.say(f"using prebuilt artefact {tag} ({short_id(existing.id)})")
            return Artefact(version, tag, existing.id, None, None, reused=True, seconds=round(time.monotonic() - started, 2))
        artefact_sha = self._prepare(version)
        source = source_of(build.context_path(), build.dockerfile, dict(build.args))
        if existing is not None:
            labels = existing.labels or {}
            recorded = labels.get(SOURCE_DIGEST_LABEL)
            if recorded == source.digest:
                self.say(f"{tag} is already built from this source ({short_id(existing.id)}): reused")
                return Artefact(version, tag, existing.id, source, artefact_sha, reused=True, seconds=round(time.monotonic() - started, 2))
            if recorded is not None:
                commit = labels.get(SOURCE_COMMIT_LABEL)
                raise CutoverError(
                    f"version {version} of {self.spec.app.name} is already built as {short_id(existing.id)} from "
                    f"{'commit ' + commit[:12] if commit else 'a source outside git'}"
                    f"{' with uncommitted changes' if labels.get(SOURCE_DIRTY_LABEL) == 'true' else ''}, and this source "
                    f"({source.describe()}) is different: give the change a new version."
                )
            self.say(f"{tag} was built by an older cutover that recorded no source: rebuilding it once")
        labels = {
            **source.labels(),
            VERSION_LABEL: version,
            APP_LABEL: self.spec.app.name,
            **({ARTEFACT_LABEL: artefact_sha} if artefact_sha else {}),
        }
        image_id = self._build(build, labels)
        stored = self._store_artefact(image_id, version)
        return Artefact(version, tag, image_id, source, artefact_sha, reused=False, seconds=round(time.monotonic() - started, 2), stored=stored)

    def store(self) -> ArtefactStore | None:
        """The artefact store, when one runs and this stack's engine is the one it serves."""
        if self._store is False:
            local = _local_engine()
            same_engine = local is not None and local.info().get("ID") == self.client.info().get("ID")
            self._store = ArtefactStore.running(self.client, self.say) if same_engine else None
        return self._store

    def _store_artefact(self, image_id: str, version: str) -> str | None:
        store = self.store()
        if store is None:
            return None
        began = time.monotonic()
        digest = store.push(image_id, self.spec.app.name, version)
        self.say(f"stored as {store.repository(self.spec.app.name)}@{digest} ({time.monotonic() - began:.1f}s)")
        return digest

    def _from_store(self, version: str, tag: str):
        """A version missing from the engine, pulled back from the artefact store (if it has it)."""
        store = self.store()
        if store is None:
            return None
        image_id = store.pull(self.spec.app.name, version)
        if image_id is None:
            return None
        tag_image(self.client.images.get(image_id), tag)
        self.say(f"{tag} pulled from the artefact store at {store.address} ({short_id(image_id)})")
        return self._image(tag)

    def ensure_registry(self) -> str:
        return self._build(registry_build(self.spec))

    def image_id(self, version: str) -> str | None:
        """The image ID a version is bound to on this engine, without building anything; None when
        it has none yet (or only an image built by an older cutover that recorded no source)."""
        image = self._image(app_image_ref(self.spec, version))
        if image is None:
            return None
        labels = image.labels or {}
        if labels.get(BUILT_FROM_LABEL) == "source" and SOURCE_DIGEST_LABEL not in labels:
            return None
        return image.id

    def _prepare(self, version: str) -> str | None:
        """The app's prepare step (its single-file artefact), and that file's sha256."""
        build = self.spec.app.image.build
        if build is None or build.prepare is None:
            return None
        context = self.spec.app.resolve(build.context)
        command = [part.replace("{version}", version) for part in build.prepare]
        self.say(f"prepare: {' '.join(command)}")
        try:
            # cutover's own Python first on PATH: a prepare step that runs `python3` gets one with pip,
            # whatever the machine's python3 lacks.
            path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
            env = {**os.environ, "CUTOVER_VERSION": version, "PATH": path}
            result = subprocess.run(command, cwd=context, env=env, capture_output=True, text=True, timeout=1800)
        except OSError as exc:
            raise CutoverError(f"image.build.prepare {command[0]!r} could not run in {context}: {exc.strerror}.") from None
        if result.returncode != 0:
            reason = ((result.stderr or result.stdout).strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise CutoverError(f"image.build.prepare ({' '.join(command)}) exited {result.returncode}: {reason}")
        if build.artefact is None:
            return None
        path = context / build.artefact
        if not path.is_file():
            raise CutoverError(f"image.build.prepare ran but made no {build.artefact} in {context} (image.build.artefact).")
        return file_sha256(path)

    def _image(self, ref: str):
        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None

    def _exists(self, ref: str) -> bool:
        return _has(self.client, ref)

    def _build(self, build: ImageBuild, labels: dict[str, str] | None = None) -> str:
        """Build ``build`` and return the new image's ID."""
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
            labels={BUILT_FROM_LABEL: "source", **(labels or {})},
            decode=True,
        )
        with progress.step(f"docker build {tag}") as shown:
            for chunk in stream:
                if "stream" in chunk:
                    log.append(chunk["stream"])
                    if chunk["stream"].startswith("Step "):  # "Step 3/9 : RUN ...": where the build is
                        shown.update(chunk["stream"].strip()[:80])
                if "error" in chunk:
                    tail = "".join(log[-5:]).strip()
                    raise CutoverError(f"building {tag} failed: {chunk['error'].strip()}\n{tail}")
        return self.client.images.get(tag).id
