"""Shared fixtures. Tests marked ``docker`` run against a real engine and the real `ci` stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_STACK = "ci"


def run_cli(*args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `cutover` CLI (python -m simulator) and capture what a user would see."""
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, check=check, timeout=timeout, env=os.environ.copy(),
    )


def remove_app_images(app_name: str) -> None:
    """Forget every artefact cutover built for ``app_name`` on this engine.

    A version stays bound to the source it was first built from; an earlier run of the tests (from
    an older checkout) may have bound versions the tests reuse, so each test that builds starts
    from none.
    """
    import docker
    import docker.errors

    client = docker.from_env()
    for image in client.images.list(filters={"label": [f"cutover.app={app_name}"]}):
        for tag in image.tags or [image.id]:
            try:
                client.images.remove(tag, force=True)
            except docker.errors.APIError:
                pass  # in use by a container of a stack another test keeps; its binding stands


def remove_stale_app_images(spec) -> None:
    """Forget the artefacts of ``spec``'s app built from a source other than this checkout's, keep
    the rest: a version stays bound to the source it was first built from, so a stale one would be
    refused, while one built from these very bytes is what a new build would make (reused, not
    rebuilt: about 20 s per run for the bench's two versions).

    The app's prepare step runs first, as cutover runs it before every build, so that the digest
    compared is the one the next build records (its artefact file is part of the context)."""
    import docker
    import docker.errors

    from simulator.artefacts import SOURCE_DIGEST_LABEL, VERSION_LABEL, source_digest
    from stacks.image_builds import app_build

    prepare = list(spec.app.image.build.prepare or ()) if spec.app.image.build else []
    if any("{version}" in part for part in prepare):
        remove_app_images(spec.app.name)  # a prepare step per version: no one digest to compare with
        return
    if prepare:
        context = spec.app.resolve(spec.app.image.build.context)
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        subprocess.run(prepare, cwd=context, env=env, check=True, capture_output=True, timeout=600)
    client = docker.from_env()
    for image in client.images.list(filters={"label": [f"cutover.app={spec.app.name}"]}):
        labels = image.labels or {}
        build = app_build(spec, labels[VERSION_LABEL]) if labels.get(VERSION_LABEL) else None
        current = build and source_digest(build.context_path(), build.dockerfile, dict(build.args))
        if current and labels.get(SOURCE_DIGEST_LABEL) == current:
            continue
        for tag in image.tags or [image.id]:
            try:
                client.images.remove(tag, force=True)
            except docker.errors.APIError:
                pass  # already gone with another tag of the same image


def static_site_copy(directory: Path, app_name: str) -> Path:
    """The static-site example copied to ``directory`` under an app name of its own (so its
    artefacts are the test's alone); returns the directory, a stacks dir for ``--stacks-dir``."""
    import yaml

    shutil.copytree(REPO_ROOT / "examples/static-site", directory)
    app_file = directory / "cutover-app.yaml"
    app = yaml.safe_load(app_file.read_text())
    app["name"] = app_name
    app_file.write_text(yaml.safe_dump(app, sort_keys=False))
    return directory


def demo_copy(directory: Path, app_name: str, **changes) -> Path:
    """The demo app copied to ``directory`` under an app name of its own (its artefacts are the
    test's alone), with ``changes`` set at the top of its definition; returns the definition file."""
    import yaml

    shutil.copytree(REPO_ROOT / "examples/demo", directory, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.pyc", "Pulumi.*.yaml"))
    app_file = directory / "cutover-app.yaml"
    app = yaml.safe_load(app_file.read_text())
    app.update(name=app_name, **changes)
    app_file.write_text(yaml.safe_dump(app, sort_keys=False))
    return app_file


def write_stack_file(directory: Path, stack: str, live_port: int, **config) -> None:
    """A stack file in ``directory``: the static site's test stack on ``live_port`` (and the next
    port for the preview), one container per colour unless ``config`` says otherwise."""
    import yaml

    base = yaml.safe_load((REPO_ROOT / "examples/static-site/Pulumi.static-ci.yaml").read_text())["config"]
    # Watched 3 s after each switch rather than the default 10: these stacks flip often, and the
    # tests of the watch itself say what they need.
    values = {**base, "cutover:livePort": live_port, "cutover:previewPort": live_port + 1, "cutover:poolSize": 1, "cutover:watchSeconds": 3, **config}
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": values}))


def skip_cluster_tests_unless_asked(config, items) -> None:
    # The local swarm's tests take minutes and three Docker-in-Docker engines: they run when asked
    # for (`make cluster-test`, i.e. -m cluster), not in every `pytest` / `make test`.
    if "cluster" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="the local swarm's tests run with 'make cluster-test' (-m cluster)")
    for item in items:
        if item.get_closest_marker("cluster"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=False)
def state_dir(tmp_path_factory) -> Path:
    # Audit records and rehearsal CSVs of the test run go to a fresh place, not the user's own.
    path = tmp_path_factory.mktemp("cutover-state")
    os.environ["CUTOVER_STATE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def ci_stack(state_dir):
    """The `ci` stack, freshly up for the whole session, and removed (with its volumes) at the end."""
    from stacks.spec import load_stack

    run_cli("down", "--stack", TEST_STACK, "--volumes")
    remove_app_images(load_stack(TEST_STACK).app.name)
    result = run_cli("up", "--stack", TEST_STACK, timeout=1200)
    assert result.returncode == 0, f"cutover up failed:\n{result.stdout}\n{result.stderr}"
    yield load_stack(TEST_STACK)
    if os.environ.get("CUTOVER_KEEP_STACK") != "1":
        run_cli("down", "--stack", TEST_STACK, "--volumes")


# Modules on the session's `ci` stack that want it as a fresh `cutover up` left it run first, while
# it still is (the infra checks and the other stacks' modules before them change nothing on it):
# otherwise test_dynamic_providers, after test_cutover moved the stack on, pays a `down --volumes`
# and a new `up` of its own (it still checks, and resets when it must).
RUN_EARLY_ON_CI_STACK = ("tests/integration/test_dynamic_providers.py",)
RUN_BEFORE = "tests/integration/test_cutover.py"


def pytest_collection_modifyitems(session, config, items):
    # One hook, both jobs: a second function of this name in this file would replace the first.
    skip_cluster_tests_unless_asked(config, items)
    run_early_on_ci_stack(items)


def run_early_on_ci_stack(items) -> None:
    def module(item) -> str:
        return item.nodeid.split("::", 1)[0]

    modules = [module(i) for i in items]
    if RUN_BEFORE not in modules:
        return
    anchor = modules.index(RUN_BEFORE)
    order = {id(item): (anchor - 0.5 if module(item) in RUN_EARLY_ON_CI_STACK else index, index) for index, item in enumerate(items)}
    items.sort(key=lambda item: order[id(item)])
