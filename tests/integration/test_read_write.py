"""Read-write deployments against a real PostgreSQL: gated and atomic migrations, rollback on the
expanded schema, and no rollback once the schema is contracted. No lost write across switches and a
rollback under read-write load: test_cutover.py's rehearsal (one rehearsal proves both)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import docker
import pytest
import requests

from simulator.operations import Simulator
from stacks.spec import load_stack, other_colour
from stacks.topology import DATABASE_NAME, app_container_name, database_container_name
from tests.conftest import REPO_ROOT, TEST_STACK, run_cli
from tests.demo_migrations import DROP_COLUMN, DROP_COLUMN_FILE, DROP_COLUMN_REPLACES

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def sim(ci_stack) -> Simulator:
    return Simulator(ci_stack, say=lambda line: None)


def items_columns(spec) -> set[str]:
    container = docker.from_env().containers.get(database_container_name(spec))
    query = "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'"
    result = container.exec_run(["psql", "-tA", "-d", DATABASE_NAME, "-c", query], user="postgres")
    assert result.exit_code == 0, result.output
    return set(result.output.decode().split())


def schema_revision(spec) -> str | None:
    """The demo's schema revision, read where Alembic keeps it (cutover itself asks the app's `current`)."""
    container = docker.from_env().containers.get(database_container_name(spec))
    result = container.exec_run(["psql", "-tA", "-d", DATABASE_NAME, "-c", "SELECT version_num FROM alembic_version"], user="postgres")
    assert result.exit_code == 0, result.output
    return result.output.decode().strip() or None


def idle_container_ids(spec, sim) -> dict[str, str]:
    client = docker.from_env()
    idle = other_colour(sim.live_colour())
    return {n: client.containers.get(n).id for n in (app_container_name(spec, idle, i) for i in range(1, spec.pool_size + 1))}


def prebuilt_artefact(tag: str, migration_name: str, migration_source: str, drop: str | None = None) -> str:
    """An artefact 'built elsewhere': the demo's source plus one extra migration (and minus ``drop``),
    made the demo's own way (its prepare step builds the zipapp, its Dockerfile the image), labelled
    as not built by cutover, so cutover deploys it as it is."""
    # The schema at 2.0.0's expand step (0002), whatever ran before: the migrations below follow it.
    assert run_cli("deploy", "--stack", TEST_STACK, "2.0.0").returncode == 0
    version = tag.split(":", 1)[1]
    with tempfile.TemporaryDirectory(prefix="cutover-demo-variant-") as tmp:
        context = Path(tmp) / "demo"
        shutil.copytree(REPO_ROOT / "examples/demo", context, ignore=shutil.ignore_patterns("dist", "__pycache__", "*.pyc"))
        versions = context / "migrations/versions"
        if drop:
            (versions / drop).unlink()
        (versions / migration_name).write_text(textwrap.dedent(migration_source))
        prepared = subprocess.run(
            [sys.executable, "build_artefact.py", "--out", "dist/cutover-demo.pyz"],
            cwd=context, capture_output=True, text=True, timeout=600,
        )
        assert prepared.returncode == 0, prepared.stderr
        docker.from_env().images.build(
            path=str(context), tag=tag, rm=True, forcerm=True,
            buildargs={"APP_VERSION": version, "BASE_IMAGE": load_stack(TEST_STACK).base_image},
            labels={"cutover.built-from": "elsewhere"},
        )
    return tag


def test_failed_migration_leaves_everything_as_it_was(ci_stack, sim):
    tag = prebuilt_artefact(
        "cutover-demo:4.0.0-broken",
        "0003_breaks_half_way.py",
        '''
        from alembic import op
        revision = "0003"
        down_revision = "0002"
        phase = "expand"
        release = 4
        def upgrade():
            op.execute("ALTER TABLE items ADD COLUMN half_done bigint")
            op.execute("SELECT 1 / 0")
        ''',
        drop="0003_require_body_length.py",
    )
    live, revision, idle_ids = sim.live_colour(), schema_revision(ci_stack), idle_container_ids(ci_stack, sim)

    result = run_cli("deploy", "--stack", TEST_STACK, tag.split(":")[1])

    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "migration of 4.0.0-broken failed and was rolled back" in message and "division by zero" in message.lower()
    assert "half_done" not in items_columns(ci_stack)
    assert schema_revision(ci_stack) == revision
    assert idle_container_ids(ci_stack, sim) == idle_ids  # the idle colour was never touched
    assert sim.live_colour() == live
    assert requests.get(f"{ci_stack.live_url()}/version", timeout=5).status_code == 200


def test_drop_column_in_expand_is_blocked_before_anything_runs(ci_stack, sim):
    tag = prebuilt_artefact(
        "cutover-demo:5.0.0-dropcol",
        DROP_COLUMN_FILE,
        DROP_COLUMN,
        drop=DROP_COLUMN_REPLACES,
    )
    revision, idle_ids = schema_revision(ci_stack), idle_container_ids(ci_stack, sim)

    result = run_cli("deploy", "--stack", TEST_STACK, tag.split(":")[1])

    assert result.returncode == 1
    message = result.stderr.strip()
    assert "blocked by the migration lint gate" in message, message
    assert "0003_drop_body_length.py: rule ban-drop-column at line" in message, message
    assert "body_length" in items_columns(ci_stack)
    assert schema_revision(ci_stack) == revision
    assert idle_container_ids(ci_stack, sim) == idle_ids


def test_rollback_works_on_expanded_schema_and_is_refused_after_finalize(ci_stack, sim):
    # v1 live, v2 deployed with its expand migration, then switch and roll back: v1 on the new schema.
    assert run_cli("deploy", "--stack", TEST_STACK, "1.0.0").returncode == 0
    assert run_cli("switch", "--stack", TEST_STACK).returncode == 0
    assert run_cli("deploy", "--stack", TEST_STACK, "2.2.0").returncode == 0
    assert "body_length" in items_columns(ci_stack)
    assert run_cli("switch", "--stack", TEST_STACK).returncode == 0
    rolled_back = run_cli("rollback", "--stack", TEST_STACK)
    assert rolled_back.returncode == 0, rolled_back.stderr
    live = requests.get(f"{ci_stack.live_url()}/version", timeout=5).json()
    assert live["version"] == "1.0.0"
    created = requests.post(f"{ci_stack.live_url()}/items", json={"body": "v1 on the expanded schema"}, timeout=5)
    assert created.status_code == 201
    assert requests.get(f"{ci_stack.live_url()}/items/{created.json()['id']}", timeout=5).status_code == 200

    # Go forward again and give up rollback: the v1 colour is retired, the contract step runs.
    assert run_cli("switch", "--stack", TEST_STACK).returncode == 0
    finalized = run_cli("finalize", "--stack", TEST_STACK)
    assert finalized.returncode == 0, finalized.stderr
    assert schema_revision(ci_stack) == "0003"
    entries = [e for e in sim.ledger.entries() if e.get("command") == "finalize" and e.get("phase") == "end"]
    assert entries[-1]["outcome"] == "ok" and entries[-1]["applied"] == ["0003"]

    refused = run_cli("rollback", "--stack", TEST_STACK)
    assert refused.returncode == 1
    # The colour to go back to was retired by finalize: nothing warm to return to.
    assert "refusing to roll back" in refused.stderr and "retired since" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert requests.get(f"{ci_stack.live_url()}/version", timeout=5).json()["version"] == "2.2.0"

    redeploy_old = run_cli("deploy", "--stack", TEST_STACK, "1.0.0")
    assert redeploy_old.returncode == 1
    assert "version 1.0.0 cannot run on the database" in redeploy_old.stderr
