"""Build the demo's single executable artefact: dist/cutover-demo.pyz, the app and its pinned
dependencies in one Python zipapp (shiv), reproducibly.

    python3 build_artefact.py [--out dist/cutover-demo.pyz] [--arch x86_64|aarch64] [--wheel-cache DIR]

The app definition runs it on the host as ``image.build.prepare``, in this directory, before the
image build (inside a container ``pip install`` over HTTPS cannot work on our machines); the
Dockerfile then copies the one file in. Any Python 3.11 with pip runs it: the build tools (shiv)
are pinned in build-requirements.txt and unpacked into the cache, like the app's dependencies.

Same source in, same sha256 out, wherever the source lies and whatever version is being released:
- the dependencies are requirements.txt, every one pinned to one version and the sha256 of each
  wheel allowed; the wheels (CPython 3.11, manylinux, the engine's architecture) are downloaded
  once into a cache and checked by hash on every build; nothing is resolved, nothing compiled;
- the wheels are unpacked, not installed (an install writes the building interpreter's path into
  console scripts), then the app's own files are added: the modules below and migrations/;
- shiv is pinned too (it writes its bootstrap code into the file);
- every entry gets the same timestamp (SOURCE_DATE_EPOCH fixed at 1980-01-01) and mode, in sorted
  order; shiv's build id is the hash of the contents.
The version is not in the file: the image gets it (APP_VERSION), so releasing the same source as
another version gives the same artefact, and any change to the source or the pins a new one.

The last line printed is ``<out> sha256:<hex>``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The app itself: its modules (cutover_demo is the zipapp's entry point) and its Alembic migrations.
APP_MODULES = ("cutover_demo.py", "service.py", "migrate.py", "db_settings.py", "healthcheck.py", "gunicorn_conf.py", "streams.py")
APP_DIRS = ("migrations",)
ENTRY_POINT = "cutover_demo:main"
INTERPRETER = "/usr/bin/python3"  # the shebang; the image runs it as `python3 /srv/cutover-demo.pyz ...` anyway
SOURCE_DATE_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can carry
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
PYTHON_VERSION = "3.11"  # Debian bookworm's python3 in the image
GLIBC_MINOR = 36  # bookworm's glibc 2.36: any manylinux_2_17 .. 2_36 wheel runs there
ARCHES = ("x86_64", "aarch64")


class BuildError(Exception):
    pass


def default_wheel_cache() -> Path:
    if os.environ.get("CUTOVER_WHEEL_CACHE"):
        return Path(os.environ["CUTOVER_WHEEL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cutover" / "wheels"


def read_requirements(path: Path) -> list[tuple[str, str, set[str]]]:
    """(name, version, sha256 hashes) of each line of a pip requirements file that pins by hash."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s;]+)\s+(.*)$", line)
        hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        if not match or not hashes:
            raise BuildError(f"{path.name}: every requirement needs name==version and --hash=sha256:..., not {line!r}")
        pins.append((normalise(match.group(1)), match.group(2), hashes))
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def fits(wheel: str, arch: str) -> bool:
    """Whether a wheel file runs on CPython 3.11 under glibc on ``arch`` ("any": pure Python only)."""
    python, abi, plat = wheel[: -len(".whl")].split("-")[-3:]
    pythons, abis, plats = python.split("."), abi.split("."), plat.split(".")
    return (
        any(p in ("py3", "cp311") for p in pythons)
        and any(a in ("none", "abi3", "cp311") for a in abis)
        and any(p == "any" or (arch != "any" and p.startswith("manylinux") and p.endswith(f"_{arch}")) for p in plats)
    )


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached_wheels(pins, cache: Path, arch: str) -> tuple[list[Path], list[str]]:
    found, missing = [], []
    for name, version, hashes in pins:
        candidates = [
            p for p in sorted(cache.glob("*.whl"))
            if normalise(p.name.split("-")[0]) == name and p.name.split("-")[1] == version and fits(p.name, arch)
        ]
        match = next((p for p in candidates if sha256_of(p) in hashes), None)
        if match is None:
            missing.append(f"{name}=={version}")
        else:
            found.append(match)
    return found, missing


def download(requirements: Path, cache: Path, arch: str) -> None:
    """pip download exactly the pinned wheels for ``arch`` into the cache (pip checks the hashes)."""
    target = []  # pure Python tools ("any") need no target: any wheel of theirs fits
    if arch != "any":
        platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(17, GLIBC_MINOR + 1)] + [f"manylinux2014_{arch}"]
        target = ["--implementation", "cp", "--python-version", PYTHON_VERSION, "--abi", "cp" + PYTHON_VERSION.replace(".", ""),
                  *(a for p in platforms for a in ("--platform", p))]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
        "--require-hashes", "--only-binary=:all:", *target, "--dest", str(cache), "--requirement", str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        errors = [l for l in result.stderr.splitlines() if l.startswith("ERROR")] or result.stderr.strip().splitlines()[-1:]
        raise BuildError(f"pip download of the pinned wheels failed: {' '.join(errors)}")


def unpack_wheel(wheel: Path, site: Path) -> None:
    """A wheel's files as an installer would place them in site-packages, minus scripts and data."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    for data in site.glob("*.data"):
        for scheme in ("purelib", "platlib"):
            if (data / scheme).is_dir():
                shutil.copytree(data / scheme, site, dirs_exist_ok=True)
        shutil.rmtree(data)  # scripts, headers, data: nothing the app runs


def add_app(source: Path, site: Path) -> None:
    for name in APP_MODULES:
        if not (source / name).is_file():
            raise BuildError(f"{source / name} is missing: the artefact is the app's modules {', '.join(APP_MODULES)}")
        shutil.copyfile(source / name, site / name)
    for directory in APP_DIRS:
        for path in sorted((source / directory).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                target = site / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)


def canonical_zip(built: Path, out: Path) -> None:
    """Rewrite shiv's zipapp with entries in sorted order, one timestamp and one mode.

    shiv (--reproducible) already fixes the timestamps and sorts site-packages, but adds its own
    bootstrap files in directory order and keeps each file's mode: normalised here, so the bytes
    depend on the contents only, not on the file system or umask of the machine that built it.
    """
    data = built.read_bytes()
    shebang = data[: data.index(b"\n") + 1]
    with zipfile.ZipFile(built) as source, out.open("wb") as f:
        f.write(shebang)
        with zipfile.ZipFile(f, "w") as archive:
            for info in sorted(source.infolist(), key=lambda i: i.filename):
                entry = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = 0o100644 << 16
                entry.create_system = 3  # Unix, whatever the building machine
                archive.writestr(entry, source.read(info))
    out.chmod(0o755)


def toolchain(source: Path, cache: Path, say=print) -> Path:
    """shiv and click as build-requirements.txt pins them, unpacked once into the cache."""
    requirements = source / "build-requirements.txt"
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    tools = cache / "tools" / key
    if (tools / ".complete").is_file():
        return tools
    pins = read_requirements(requirements)
    wheels, missing = cached_wheels(pins, cache, "any")
    if missing:
        say(f"downloading the pinned build tools into {cache}: {', '.join(missing)}")
        download(requirements, cache, "any")
        wheels, missing = cached_wheels(pins, cache, "any")
        if missing:
            raise BuildError(f"no wheel with a pinned hash in {cache}: {', '.join(missing)}")
    tools.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=tools.parent))
    for wheel in wheels:
        unpack_wheel(wheel, staging)
    (staging / ".complete").touch()
    try:
        staging.rename(tools)
    except OSError:  # another build got there first
        shutil.rmtree(staging, ignore_errors=True)
    return tools


def shiv(tools: Path, site: Path, out: Path) -> None:
    command = [
        sys.executable, "-m", "shiv", "--site-packages", str(site), "--output-file", str(out),
        "--entry-point", ENTRY_POINT, "--python", INTERPRETER, "--reproducible", "--compile-pyc", "--uncompressed",
    ]
    # The pinned shiv, ahead of any other on this interpreter; the fixed time, whatever the caller's.
    env = {**os.environ, "PYTHONPATH": str(tools), "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise BuildError(f"shiv failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")


def build(source: Path, out: Path, arch: str, cache: Path, say=print) -> str:
    """Build the zipapp of the app in ``source`` into ``out``; its sha256."""
    if arch not in ARCHES:
        raise BuildError(f"architecture {arch!r}: the pinned wheels are for {' and '.join(ARCHES)}")
    requirements = source / "requirements.txt"
    pins = read_requirements(requirements)
    cache.mkdir(parents=True, exist_ok=True)
    wheels, missing = cached_wheels(pins, cache, arch)
    if missing:
        say(f"downloading {len(missing)} pinned wheel(s) for {arch} into {cache}: {', '.join(missing)}")
        download(requirements, cache, arch)
        wheels, missing = cached_wheels(pins, cache, arch)
        if missing:
            raise BuildError(f"no wheel for {arch} with a pinned hash in {cache}: {', '.join(missing)}")
    tools = toolchain(source, cache, say)
    out = out if out.is_absolute() else Path.cwd() / out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cutover-demo-build-") as tmp:
        site = Path(tmp) / "site-packages"
        site.mkdir()
        for wheel in wheels:
            unpack_wheel(wheel, site)
        add_app(source, site)
        built = Path(tmp) / "shiv.pyz"
        shiv(tools, site, built)
        staged = out.with_name(f".{out.name}.tmp")
        canonical_zip(built, staged)
        os.replace(staged, out)
    return sha256_of(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=HERE, help="the app's directory (default: this script's)")
    parser.add_argument("--out", type=Path, default=None, help="the zipapp to write (default: SOURCE/dist/cutover-demo.pyz)")
    parser.add_argument("--arch", default=platform.machine(), help="the Docker engine's architecture (default: uname -m)")
    parser.add_argument("--wheel-cache", type=Path, default=default_wheel_cache(), help="where the pinned wheels are kept")
    args = parser.parse_args(argv)
    out = args.out or args.source / "dist" / "cutover-demo.pyz"
    try:
        digest = build(args.source.resolve(), out, args.arch, args.wheel_cache)
    except BuildError as exc:
        print(f"build_artefact: {exc}", file=sys.stderr)
        return 1
    print(f"{out} sha256:{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
