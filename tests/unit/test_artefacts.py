"""The source digest that binds a version to what it was built from (no Docker)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from simulator.artefacts import context_files, source_digest, source_of


def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (tmp_path / "app.txt").write_text("one\n")
    (tmp_path / "notes.md").write_text("not sent\n")
    (tmp_path / ".dockerignore").write_text("notes.md\n")
    return tmp_path


def test_the_digest_covers_what_docker_is_sent_and_nothing_else(tmp_path):
    ctx = context(tmp_path)
    assert context_files(ctx, "Dockerfile") == [".dockerignore", "Dockerfile", "app.txt"]
    before = source_digest(ctx, "Dockerfile", {"V": "1"})
    (ctx / "notes.md").write_text("edited, but ignored\n")
    assert source_digest(ctx, "Dockerfile", {"V": "1"}) == before
    (ctx / "app.txt").write_text("two\n")
    assert source_digest(ctx, "Dockerfile", {"V": "1"}) != before


def test_build_args_and_the_executable_bit_count_but_not_the_umask(tmp_path):
    ctx = context(tmp_path)
    base = source_digest(ctx, "Dockerfile", {"V": "1"})
    assert source_digest(ctx, "Dockerfile", {"V": "2"}) != base
    (ctx / "app.txt").chmod(0o664)
    assert source_digest(ctx, "Dockerfile", {"V": "1"}) == base
    (ctx / "app.txt").chmod(0o755)
    assert source_digest(ctx, "Dockerfile", {"V": "1"}) != base


def test_the_commit_and_a_dirty_tree_are_recorded(tmp_path):
    ctx = context(tmp_path)
    assert source_of(ctx, "Dockerfile", {}).commit is None
    git = ["git", "-C", str(ctx), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    clean = source_of(ctx, "Dockerfile", {})
    assert clean.commit and len(clean.commit) == 40 and not clean.dirty and clean.commit_time
    (ctx / "app.txt").write_text("changed\n")
    assert source_of(ctx, "Dockerfile", {}).dirty
