"""What an artefact was built from, so that a version can be bound to it for good.

The *source digest* is a sha256 over exactly what ``docker build`` is sent (the build context less
what ``.dockerignore`` leaves out: every path, mode and byte) plus the Dockerfile's name and the
build args. Two builds with the same source digest are the same artefact; a version whose image was
built from another source digest is a different artefact under the same name, which cutover refuses.
The git commit (and whether the tree had uncommitted changes) is recorded beside it for people.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from docker.utils.build import exclude_paths

# Labels an image built by cutover carries: the binding of its version to its source.
VERSION_LABEL = "cutover.version"
SOURCE_DIGEST_LABEL = "cutover.source-digest"
SOURCE_COMMIT_LABEL = "cutover.source-commit"
SOURCE_DIRTY_LABEL = "cutover.source-dirty"
COMMIT_TIME_LABEL = "cutover.commit-time"
ARTEFACT_LABEL = "cutover.artefact-sha256"
APP_LABEL = "cutover.app"


@dataclass(frozen=True)
class Source:
    digest: str  # sha256:<hex> over the build context as sent, the Dockerfile name and the args
    commit: str | None  # the git commit the context belongs to, if it is in a repository
    dirty: bool  # uncommitted changes under the context
    commit_time: str | None  # ISO 8601, the commit's time (lead time for changes starts there)

    def labels(self) -> dict[str, str]:
        labels = {SOURCE_DIGEST_LABEL: self.digest, SOURCE_DIRTY_LABEL: "true" if self.dirty else "false"}
        if self.commit:
            labels[SOURCE_COMMIT_LABEL] = self.commit
        if self.commit_time:
            labels[COMMIT_TIME_LABEL] = self.commit_time
        return labels

    def describe(self) -> str:
        if not self.commit:
            return "a source outside git"
        return f"commit {self.commit[:12]}" + (" with uncommitted changes" if self.dirty else "")

    def as_dict(self) -> dict:
        return asdict(self)


def context_files(context: Path, dockerfile: str) -> list[str]:
    """The paths under ``context`` that a build sends, as Docker's own client chooses them."""
    ignore = context / ".dockerignore"
    patterns = []
    if ignore.is_file():
        patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return sorted(p for p in exclude_paths(str(context), patterns, dockerfile=dockerfile) if (context / p).is_file() or (context / p).is_symlink())


def source_digest(context: Path, dockerfile: str, args: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(f"dockerfile {dockerfile}\n".encode())
    for key in sorted(args):
        digest.update(f"arg {key}={args[key]}\n".encode())
    for relative in context_files(context, dockerfile):
        path = context / relative
        if path.is_symlink():
            digest.update(f"link {relative} {os.readlink(path)}\n".encode())
            continue
        # Only the executable bit: other mode bits follow the umask of whoever checked the source out.
        executable = "x" if path.stat().st_mode & 0o111 else "-"
        digest.update(f"file {relative} {executable} {path.stat().st_size}\n".encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def source_of(context: Path, dockerfile: str, args: dict[str, str]) -> Source:
    commit, dirty, commit_time = _git(context)
    return Source(source_digest(context, dockerfile, args), commit, dirty, commit_time)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _git(context: Path) -> tuple[str | None, bool, str | None]:
    def run(*args: str) -> str | None:
        try:
            result = subprocess.run(["git", "-C", str(context), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    if not commit:
        return None, False, None
    status = run("status", "--porcelain", "--untracked-files=normal", "--", ".")
    return commit, bool(status), run("log", "-1", "--format=%cI", "HEAD")
