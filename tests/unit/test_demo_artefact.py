"""The demo's single executable artefact (examples/demo/build_artefact.py): a shiv zipapp of the app
and its pinned dependencies, reproducible byte for byte. No Docker; the pinned wheels come from the
wheel cache (downloaded once, on a cold machine, from the package index)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples/demo"
SOURCE_FILES = ["build_artefact.py", "requirements.txt", "build-requirements.txt", "cutover_demo.py", "service.py", "migrate.py", "db_settings.py",
                "healthcheck.py", "gunicorn_conf.py", "streams.py"]

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="the pinned wheels are for x86_64 and aarch64")


def copy_source(target: Path) -> Path:
    """The demo's source as a checkout elsewhere would have it (no dist/, no caches)."""
    target.mkdir(parents=True)
    for name in SOURCE_FILES:
        shutil.copyfile(DEMO / name, target / name)
    shutil.copytree(DEMO / "migrations", target / "migrations", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def build(source: Path, **env: str) -> tuple[Path, str]:
    """Run the prepare step as cutover does: in the source directory, with the same arguments."""
    out = source / "dist/cutover-demo.pyz"
    result = subprocess.run(
        [sys.executable, "build_artefact.py", "--out", "dist/cutover-demo.pyz"],
        cwd=source, capture_output=True, text=True, timeout=600, env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert last == f"dist/cutover-demo.pyz sha256:{digest}"
    return out, digest


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """The same source, in two different directories, built at different times and 'versions'."""
    base = tmp_path_factory.mktemp("demo-artefact")
    first = build(copy_source(base / "a" / "src"), CUTOVER_VERSION="1.0.0")
    # A different path, umask, ambient SOURCE_DATE_EPOCH and version: none of them may show.
    old_umask = os.umask(0o077)
    try:
        second = build(copy_source(base / "b" / "somewhere" / "else"), CUTOVER_VERSION="7.3.1", SOURCE_DATE_EPOCH="1700000000")
    finally:
        os.umask(old_umask)
    return base, first, second


def test_the_same_source_built_twice_is_the_same_file(two_builds):
    _, (first, first_sha), (second, second_sha) = two_builds
    assert first != second
    assert first_sha == second_sha
    assert first.read_bytes() == second.read_bytes()


def test_a_one_line_change_is_a_different_file(two_builds):
    base, (_, sha), _ = two_builds
    changed = copy_source(base / "changed")
    service = changed / "service.py"
    service.write_text(service.read_text().replace("MAX_SLOW_MS = 30_000", "MAX_SLOW_MS = 20_000"))
    _, changed_sha = build(changed)
    assert changed_sha != sha


def test_a_new_migration_is_a_different_file(two_builds):
    base, (_, sha), _ = two_builds
    changed = copy_source(base / "migration")
    (changed / "migrations/versions/0004_note.py").write_text(
        'revision = "0004"\ndown_revision = "0003"\nphase = "expand"\nrelease = 3\ndef upgrade():\n    pass\n'
    )
    _, changed_sha = build(changed)
    assert changed_sha != sha


def test_the_zip_is_canonical_and_holds_the_app_and_its_pins(two_builds):
    _, (artefact, _), _ = two_builds
    assert artefact.read_bytes().startswith(b"#!/usr/bin/python3\n")
    with zipfile.ZipFile(artefact) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in infos} == {0o100644}
        for module in ("cutover_demo.py", "service.py", "migrate.py", "db_settings.py", "healthcheck.py", "gunicorn_conf.py", "streams.py",
                       "migrations/env.py", "migrations/versions/0001_create_items.py"):
            assert f"site-packages/{module}" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert not any(n.startswith("site-packages/bin/") or ".data/" in n for n in names)  # unpacked, not installed
        assert "site-packages/locustfile.py" not in names and "site-packages/build_artefact.py" not in names
        environment = json.loads(archive.read("environment.json"))
    assert environment["entry_point"] == "cutover_demo:main"
    assert environment["built_at"] == "1980-01-01 00:00:00"


def test_the_artefact_runs_its_commands(two_builds, tmp_path):
    """The file alone: it unpacks under SHIV_ROOT, knows its own sha256 and pins, and answers the
    migration contract's describe (no database needed)."""
    _, (artefact, sha), _ = two_builds
    env = {**os.environ, "SHIV_ROOT": str(tmp_path / "shiv"), "APP_VERSION": "2.0.0"}
    info = subprocess.run([sys.executable, str(artefact), "info"], capture_output=True, text=True, env=env, timeout=120)
    assert info.returncode == 0, info.stderr
    facts = json.loads(info.stdout)
    assert facts["sha256"] == sha
    pins = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1].split()[0]
            for line in (DEMO / "requirements.txt").read_text().splitlines() if "==" in line}
    assert {name.lower().replace("_", "-"): version for name, version in facts["dependencies"].items()} == pins
    describe = subprocess.run([sys.executable, str(artefact), "migrate", "describe"], capture_output=True, text=True, env=env, timeout=120)
    assert describe.returncode == 0, describe.stderr
    answer = json.loads(describe.stdout.strip().splitlines()[-1])
    assert answer["contract"] == 1 and answer["version"] == "2.0.0" and answer["needs"] == "0002"
    # The drain hook: it stamps the time in the file the app's open streams watch.
    stamp = tmp_path / "end-streams"
    ended = subprocess.run([sys.executable, str(artefact), "end-streams"], capture_output=True, text=True, env={**env, "APP_END_STREAMS_FILE": str(stamp)}, timeout=60)
    assert ended.returncode == 0, ended.stderr
    assert float(stamp.read_text()) > 0
    unknown = subprocess.run([sys.executable, str(artefact), "nonsense"], capture_output=True, text=True, env=env, timeout=60)
    assert unknown.returncode == 2 and "unknown command 'nonsense'" in unknown.stderr
