"""The Pulumi dynamic providers (components/live_colour.py, components/release_gates.py) against the
real ci stack: their create/read/diff/update run in-process, so no Pulumi engine is needed.

One stack for the whole module, brought up fresh (1.0.0 on both colours, blue live) and left as it
was found: up (fresh) if it was up before, else removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
import pytest
import yaml

from components.live_colour import LiveColourProvider, SwitchRefused, observe
from components.release_gates import GateFailed, LintGateProvider, LiveCheckProvider, SmokeTestProvider
from simulator.errors import CutoverError
from simulator.docker_driver import wait_until
from stacks.spec import STACKS_DIR
from stacks.topology import DATABASE_NAME, app_container_name, database_container_name, proxy_container_name
from tests.conftest import REPO_ROOT, TEST_STACK, run_cli
from tests.demo_migrations import DROP_COLUMN, DROP_COLUMN_FILE, DROP_COLUMN_REPLACES

pytestmark = pytest.mark.docker

WAIT_S = 5


@pytest.fixture(scope="module")
def spec(ci_stack):
    """The session's ci stack (tests/conftest.py), put back to what a fresh `cutover up` makes when an
    earlier module left it elsewhere. Left up afterwards: later modules share it, and the session
    fixture removes it at the end."""
    if not at_baseline(ci_stack):
        run_cli("down", "--stack", TEST_STACK, "--volumes")
        result = run_cli("up", "--stack", TEST_STACK, timeout=900)
        assert result.returncode == 0, f"cutover up failed:\n{result.stdout}\n{result.stderr}"
    yield ci_stack


def at_baseline(spec) -> bool:
    """Whether the stack already is what a fresh `cutover up` makes: every container running and
    healthy, 1.0.0 on both colours, blue live, the schema at 1.0.0's revision. Then it is reused
    (and left so: these tests put back what they change)."""
    from simulator.operations import Simulator

    client = docker.from_env()
    if not client.containers.list(filters={"name": f"^{proxy_container_name(spec)}$"}):
        return False
    try:
        status = Simulator(spec, say=lambda line: None).status()
        return (
            status.live == "blue"
            and all(p.version == "1.0.0" and p.healthy == p.total == spec.pool_size for p in status.pools.values())
            and schema_revision(spec) == "0001"
        )
    except (CutoverError, docker.errors.APIError, AssertionError):
        return False


@pytest.fixture(scope="module")
def config() -> dict[str, str]:
    document = yaml.safe_load((STACKS_DIR / f"Pulumi.{TEST_STACK}.yaml").read_text())
    return {key: str(value) for key, value in document["config"].items()}


def live(spec) -> str:
    return observe(docker.from_env().containers.get(proxy_container_name(spec))).live


def schema_revision(spec) -> str | None:
    container = docker.from_env().containers.get(database_container_name(spec))
    result = container.exec_run(["psql", "-tA", "-d", DATABASE_NAME, "-c", "SELECT version_num FROM alembic_version"], user="postgres")
    assert result.exit_code == 0, result.output
    return result.output.decode().strip() or None


def with_app(config: dict[str, str], tmp_path: Path, **changes) -> dict[str, str]:
    """The stack's config naming a copy of its app definition with ``changes`` (same app, same images)."""
    app_file = (STACKS_DIR / config["cutover:app"]).resolve()
    app = yaml.safe_load(app_file.read_text())
    app.update(changes)
    # Its build context stays the app's own directory (a copy elsewhere must still name one).
    app["image"]["build"]["context"] = str(app_file.parent / app["image"]["build"]["context"])
    app.pop("locustfile", None)
    copy = tmp_path / "cutover-app.yaml"
    copy.write_text(yaml.safe_dump(app, sort_keys=False))
    return {**config, "cutover:app": os.path.relpath(copy, STACKS_DIR)}


def drop_column_artefact(spec) -> tuple[str, str]:
    """(version, image ID) of the demo plus an expand step that drops a column: built once, made the
    demo's own way (its prepare step, its Dockerfile), then reused (its tag names its source)."""
    version = f"5.0.0-gate-{hashlib.sha256(DROP_COLUMN.encode()).hexdigest()[:8]}"
    tag = f"{spec.app.name}:{version}"
    client = docker.from_env()
    try:
        return version, client.images.get(tag).id
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="cutover-gate-variant-") as tmp:
        context = Path(tmp) / "demo"
        shutil.copytree(REPO_ROOT / "examples/demo", context, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.pyc"))
        (context / "migrations/versions" / DROP_COLUMN_REPLACES).unlink()
        (context / "migrations/versions" / DROP_COLUMN_FILE).write_text(DROP_COLUMN)
        prepared = subprocess.run([sys.executable, "build_artefact.py", "--out", "dist/cutover-demo.pyz"], cwd=context, capture_output=True, text=True, timeout=600)
        assert prepared.returncode == 0, prepared.stderr
        image, _ = client.images.build(
            path=str(context), tag=tag, rm=True, forcerm=True,
            buildargs={"APP_VERSION": version, "BASE_IMAGE": spec.base_image}, labels={"cutover.built-from": "elsewhere"},
        )
    return version, image.id


def password(spec) -> dict[str, str]:
    """The database password, as the program hands it to the lint gate (here: from the stack's state)."""
    from simulator.secrets_store import SecretStore
    from stacks.topology import DB_PASSWORD_SECRET

    return {DB_PASSWORD_SECRET: SecretStore(spec.stack).get(DB_PASSWORD_SECRET)}


def outside_switch() -> None:
    """`cutover switch`, made outside Pulumi. Its preflight asks Docker's health check, which on a
    loaded machine can report a container unhealthy for a moment: refused, it is asked again."""
    answers = []

    def switched() -> bool:
        answers.append(run_cli("switch", "--stack", TEST_STACK))
        return answers[-1].returncode == 0

    wait_until(switched, 60, lambda: f"cutover switch kept failing: {answers[-1].stderr.strip()}", interval_s=1)


# -- the live colour ------------------------------------------------------------------------------


def live_colour_props(spec, colour: str) -> dict:
    proxy = docker.from_env().containers.get(proxy_container_name(spec))
    return {"proxy": proxy.name, "docker_host": spec.docker_host, "colour": colour, "proxy_id": proxy.id, "wait_seconds": WAIT_S}


def test_refresh_sees_a_switch_made_outside_and_up_restores_the_configured_colour(spec):
    provider = LiveColourProvider()
    created = provider.create(live_colour_props(spec, "blue"))
    assert created.outs["colour"] == "blue" and live(spec) == "blue"
    # Nothing changed: refresh reads what the state says, diff finds nothing.
    unchanged = provider.read(created.id, created.outs)
    assert unchanged.outs["colour"] == "blue"
    assert provider.diff(created.id, unchanged.outs, live_colour_props(spec, "blue")).changes is False

    outside_switch()
    assert live(spec) == "green"

    refreshed = provider.read(created.id, created.outs)  # `pulumi refresh`
    assert refreshed.id == created.id
    assert refreshed.outs["colour"] == "green" and refreshed.inputs["colour"] == "green"
    diff = provider.diff(created.id, refreshed.outs, live_colour_props(spec, "blue"))  # `pulumi up`: drift
    assert diff.changes is True and not diff.replaces

    updated = provider.update(created.id, refreshed.outs, live_colour_props(spec, "blue"))
    assert updated.outs["colour"] == "blue" and updated.outs["previous"] == "green"
    assert live(spec) == "blue"
    assert provider.read(created.id, updated.outs).outs["colour"] == "blue"


def test_a_colour_whose_servers_are_down_is_refused_in_one_sentence_and_nothing_moves(spec):
    provider = LiveColourProvider()
    client = docker.from_env()
    greens = [client.containers.get(app_container_name(spec, "green", i)) for i in range(1, spec.pool_size + 1)]
    for container in greens:
        container.stop(timeout=5)
    try:
        with pytest.raises(SwitchRefused) as refused:
            provider.update("id", live_colour_props(spec, "blue"), live_colour_props(spec, "green"))
        message = str(refused.value)
        assert len(message.splitlines()) == 1, message
        assert "green" in message and "still sends live traffic to blue" in message, message
        assert live(spec) == "blue"
    finally:
        for container in greens:
            container.start()
    # Back to UP: the same flip goes through once HAProxy sees them.
    wait_until(lambda: observe(client.containers.get(proxy_container_name(spec))).ready("green"), 60, lambda: "green never came back UP")


# -- the release gates ----------------------------------------------------------------------------


def gate_props(config, **rest) -> dict:
    return {"stack": TEST_STACK, "config": config, **rest}


def test_lint_gate_passes_an_additive_step_and_applies_nothing(spec, config):
    built = run_cli("build", "--stack", TEST_STACK, "2.0.0", "--json")
    assert built.returncode == 0, built.stderr
    image = json.loads(built.stdout.strip().splitlines()[-1])["image_id"]  # after the build's progress lines
    before = schema_revision(spec)
    result = LintGateProvider().create(gate_props(config, version="2.0.0", image=image, secrets=password(spec)))
    assert result.outs["steps"] == ["0002"] and result.outs["live_version"] == "1.0.0"
    assert "secrets" not in result.outs  # the password never reaches the state's outputs
    assert schema_revision(spec) == before == "0001"  # a gate, not the migration


def test_lint_gate_blocks_a_dropped_column_with_the_deploys_sentence(spec, config):
    version, image = drop_column_artefact(spec)
    with pytest.raises(GateFailed) as failed:
        LintGateProvider().create(gate_props(config, version=version, image=image, secrets=password(spec)))
    message = str(failed.value)
    assert len(message.splitlines()) == 1, message
    assert f"deploy of {version} blocked by the migration lint gate, nothing was applied" in message
    assert "0003_drop_body_length.py: rule ban-drop-column at line 5" in message, message
    assert schema_revision(spec) == "0001"


def test_live_version_check_after_expand(spec, config, tmp_path):
    passed = LiveCheckProvider().create(gate_props(config, version="2.0.0", steps=["0002"]))
    assert passed.outs["checked"] == "blue 1.0.0"
    # Nothing was pending: nothing to check, as in `cutover deploy`.
    assert LiveCheckProvider().create(gate_props(config, version="2.0.0", steps=[])).outs["checked"] is None

    app = yaml.safe_load((STACKS_DIR / config["cutover:app"]).read_text())
    probe = {**app["write_probe"], "read": {"path": "/no-such-items/{id}"}}
    with pytest.raises(GateFailed) as failed:
        LiveCheckProvider().create(gate_props(with_app(config, tmp_path, write_probe=probe), version="2.0.0", steps=["0002"]))
    assert "could not be read back" in str(failed.value) and len(str(failed.value).splitlines()) == 1


def test_preview_smoke_test_before_the_switch(spec, config, tmp_path):
    passed = SmokeTestProvider().create(gate_props(config, colour="green", version="1.0.0", image="sha256:any"))
    assert passed.outs["port"] == "preview" and passed.outs["servers"] == ["green-1", "green-2"]

    # The colour does not run the version the gate is for: the proxy's stamp says so.
    with pytest.raises(GateFailed) as wrong_version:
        SmokeTestProvider().create(gate_props(config, colour="green", version="9.9.9", image="sha256:any"))
    assert "served by green 1.0.0, expected green 9.9.9" in str(wrong_version.value)

    # A smoke check the version does not pass.
    failing = with_app(config, tmp_path, smoke=[{"path": "/version", "expect_body": "never in any answer"}])
    with pytest.raises(GateFailed) as failed:
        SmokeTestProvider().create(gate_props(failing, colour="green", version="1.0.0", image="sha256:any"))
    message = str(failed.value)
    assert len(message.splitlines()) == 1 and "without 'never in any answer' in its body" in message, message
