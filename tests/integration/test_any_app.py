"""Bring your own app: a read-only nginx site that shares no code with the demo, deployed by the same
commands; bad app definitions refused in one sentence with nothing left behind. Real Docker, real
HAProxy, real Locust load on 127.0.0.1."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import requests
import yaml

from stacks.proxy_config import COLOUR_HEADER, SERVER_HEADER, VERSION_HEADER
from stacks.spec import load_stack
from tests.conftest import REPO_ROOT, remove_app_images, run_cli

pytestmark = pytest.mark.docker

SITE_DIR = REPO_ROOT / "examples/static-site"
SITE_STACK = "static-ci"


def site_cli(*args: str, stacks_dir: Path = SITE_DIR, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli("--stacks-dir", str(stacks_dir), *args, timeout=timeout)


def stack_objects(stack: str) -> dict[str, set[str]]:
    """Every container (by role), network and volume Docker has for ``stack``."""
    client = docker.from_env()
    labels = {"label": [f"cutover.stack={stack}"]}
    return {
        "containers": {c.labels.get("cutover.role", "?") for c in client.containers.list(all=True, filters=labels)},
        "networks": {n.name for n in client.networks.list(filters=labels)},
        # The stack's audit ledger outlives it (and records a failed up): not one of its objects here.
        "volumes": {v.name for v in client.volumes.list(filters={"label": f"cutover.stack={stack}"}) if (v.attrs.get("Labels") or {}).get("cutover.role") != "ledger"},
    }


@pytest.fixture(scope="module")
def site(state_dir):
    site_cli("down", "--stack", SITE_STACK, "--volumes")
    remove_app_images(load_stack(SITE_STACK, SITE_DIR).app.name)
    result = site_cli("up", "--stack", SITE_STACK, timeout=1200)
    assert result.returncode == 0, f"cutover up failed:\n{result.stdout}\n{result.stderr}"
    # Nothing of a database, a schema or a migration in what a read-only deployment prints.
    assert not any(word in result.stdout.lower() for word in ("migrat", "schema", "database", "-db")), result.stdout
    yield load_stack(SITE_STACK, SITE_DIR)
    site_cli("down", "--stack", SITE_STACK, "--volumes")


def test_a_read_only_app_has_no_database(site):
    objects = stack_objects(SITE_STACK)
    assert objects["containers"] == {"proxy", "app"}
    assert objects["volumes"] == {f"cutover-{SITE_STACK}-proxy-state"}


def test_the_image_has_no_version_endpoint_no_app_version_and_another_port(site):
    image = docker.from_env().images.get(site.app.image_tag(site.blue_version))
    env = dict(e.partition("=")[::2] for e in image.attrs["Config"].get("Env") or [])
    assert "APP_VERSION" not in env and "9090/tcp" in image.attrs["Config"]["ExposedPorts"]
    assert requests.get(f"{site.live_url()}/version", timeout=5).status_code == 404
    # Who served it comes from the proxy alone.
    answer = requests.get(site.live_url() + "/", timeout=5)
    assert answer.headers[COLOUR_HEADER] == site.live_colour
    assert answer.headers[VERSION_HEADER] == site.blue_version
    assert answer.headers[SERVER_HEADER].startswith(f"{site.live_colour}-")


def test_deploy_switch_and_rollback_under_load_drop_nothing(site, tmp_path):
    summary_path, record_path = tmp_path / "summary.json", tmp_path / "record.csv"
    result = subprocess.run(
        [sys.executable, "-m", "simulator", "--stacks-dir", str(SITE_DIR), "rehearse", "--stack", SITE_STACK, "--users", "20",
         "--phase-seconds", "4", "--to-version", "2.0.0", "--steps", "deploy,switch,rollback,switch", "--out", str(record_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout and "write" not in result.stdout.split("PASSED")[1].split("\n")[0]
    with open(record_path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 2000
    assert all(200 <= int(row["status"]) < 300 for row in rows)
    # The colour and version of every single response are known, from the proxy's headers.
    assert all(row["colour"] in ("blue", "green") and row["version"] in ("1.0.0", "2.0.0") for row in rows)
    assert {row["version"] for row in rows} == {"1.0.0", "2.0.0"}
    # The cutover report beside the CSV, both paths printed.
    for report in (record_path.with_suffix(".html"), record_path.with_suffix(".png")):
        assert report.stat().st_size > 0 and str(report) in result.stdout, report
    status = json.loads(site_cli("status", "--stack", SITE_STACK, "--json").stdout)
    assert {pool["version"] for pool in status["pools"].values()} == {"1.0.0", "2.0.0"}
    page = requests.get(site.live_url() + "/", timeout=5)
    assert page.headers[VERSION_HEADER] == "2.0.0" and "Release 2.0.0" in page.text


# -- bad app definitions: one sentence, nothing changed --------------------------------------------


def app_copy(tmp_path: Path, stack: str, host_port: int, **changes) -> Path:
    """The static site under a stack of its own, its app definition changed as given."""
    directory = tmp_path / "site"
    shutil.copytree(SITE_DIR, directory)
    app_file = directory / "cutover-app.yaml"
    app = yaml.safe_load(app_file.read_text())
    for key, value in changes.items():
        if value is None:
            app.pop(key, None)
        else:
            app[key] = value
    app_file.write_text(yaml.safe_dump(app, sort_keys=False))
    config = yaml.safe_load((SITE_DIR / f"Pulumi.{SITE_STACK}.yaml").read_text())
    config["config"].update({"cutover:livePort": host_port, "cutover:previewPort": host_port + 1, "cutover:poolSize": 1})
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(config))
    return directory


def assert_refused_in_one_sentence(result: subprocess.CompletedProcess, *named: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for text in named:
        assert text in message, f"{text!r} not in {message!r}"


def test_a_missing_port_is_refused_before_anything_exists(tmp_path, state_dir):
    directory = app_copy(tmp_path, "byo-noport", 19180, port=None)
    result = site_cli("up", "--stack", "byo-noport", stacks_dir=directory)
    assert_refused_in_one_sentence(result, "missing required field 'port'", str(directory / "cutover-app.yaml"))
    assert stack_objects("byo-noport") == {"containers": set(), "networks": set(), "volumes": set()}


def test_a_health_path_that_does_not_answer_is_named_and_the_new_stack_removed(tmp_path, state_dir):
    directory = app_copy(tmp_path, "byo-badhealth", 19190, health={"path": "/no-such-page"})
    try:
        result = site_cli("up", "--stack", "byo-badhealth", stacks_dir=directory)
        assert_refused_in_one_sentence(result, "health.path /no-such-page answers 404")
        assert stack_objects("byo-badhealth") == {"containers": set(), "networks": set(), "volumes": set()}
    finally:
        site_cli("down", "--stack", "byo-badhealth", "--volumes", stacks_dir=directory)


def test_a_failing_migrate_command_is_one_sentence_and_nothing_starts(tmp_path, state_dir):
    """A read-write app whose one (expand-only) migrate command fails: nothing of it is left."""
    directory = app_copy(
        tmp_path,
        "byo-badmigrate",
        19200,
        database={"env": {"DATABASE_URL": "postgresql://{user}:{password}@{host}:{port}/{name}"}},
        migrations={"command": ["sh", "-c", "echo 'migrate: relation widgets already exists' >&2; exit 3"], "expand_only": True},
    )
    try:
        result = site_cli("up", "--stack", "byo-badmigrate", stacks_dir=directory)
        assert_refused_in_one_sentence(result, "migrate command of 1.0.0", "exited 3", "relation widgets already exists")
        assert stack_objects("byo-badmigrate") == {"containers": set(), "networks": set(), "volumes": set()}
    finally:
        site_cli("down", "--stack", "byo-badmigrate", "--volumes", stacks_dir=directory)


# -- a read-write app whose one migrate command cannot describe itself ----------------------------

APPLY_SQL = '''\
"""Apply every /srv/sql/*.sql not applied yet, in one transaction (a stand-in for any migrate tool)."""
import glob, os
import psycopg2
conn = psycopg2.connect(os.environ["DATABASE_URL"])
with conn, conn.cursor() as cur:
    cur.execute("SET lock_timeout = '5s'")
    cur.execute("CREATE TABLE IF NOT EXISTS applied_sql (name text PRIMARY KEY)")
    cur.execute("SELECT name FROM applied_sql")
    done = {row[0] for row in cur.fetchall()}
    for path in sorted(glob.glob("/srv/sql/*.sql")):
        name = os.path.basename(path)
        if name not in done:
            cur.execute(open(path).read())
            cur.execute("INSERT INTO applied_sql VALUES (%s)", (name,))
            print("applied", name)
'''


def expand_only_app(tmp_path: Path) -> Path:
    """The demo's service with an expand-only migrate command over plain SQL files."""
    context = tmp_path / "expand-only"
    shutil.copytree(REPO_ROOT / "examples/demo", context)
    (context / "sql").mkdir()
    (context / "sql/0001_create_items.sql").write_text("CREATE TABLE items (id bigserial PRIMARY KEY, body text NOT NULL, body_length integer);\n")
    (context / "apply_sql.py").write_text(APPLY_SQL)
    (context / "Dockerfile").write_text((context / "Dockerfile").read_text() + "COPY apply_sql.py /srv/app/\nCOPY sql/ /srv/sql/\n")
    (context / ".dockerignore").write_text("cutover-app.yaml\nPulumi.*.yaml\n")
    app = yaml.safe_load((context / "cutover-app.yaml").read_text())
    app.update(
        name="cutover-expand-only",
        locustfile=None,
        database={"env": {
            "DATABASE_HOST": "{host}", "DATABASE_NAME": "{name}", "DATABASE_USER": "{user}", "DATABASE_PASSWORD": "{password}",
            "DATABASE_URL": "postgresql://{user}:{password}@{host}:{port}/{name}",
        }},
        # The demo's one-file artefact runs any script with its own dependencies (psycopg2).
        migrations={"command": ["python3", "/srv/cutover-demo.pyz", "run", "/srv/app/apply_sql.py"], "expand_only": True, "sql_dir": "/srv/sql"},
    )
    app.pop("locustfile")
    (context / "cutover-app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    config = yaml.safe_load((SITE_DIR / f"Pulumi.{SITE_STACK}.yaml").read_text())
    config["config"].update({"cutover:livePort": 19210, "cutover:previewPort": 19211, "cutover:poolSize": 1})
    (context / "Pulumi.byo-expand.yaml").write_text(yaml.safe_dump(config))
    return context


def columns(stack: str) -> set[str]:
    database = docker.from_env().containers.get(f"cutover-{stack}-db")
    query = "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'"
    result = database.exec_run(["psql", "-tA", "-d", "cutover", "-c", query], user="postgres")
    assert result.exit_code == 0, result.output
    return set(result.output.decode().split())


def test_expand_only_migrations_are_linted_by_file_and_the_live_version_checked(tmp_path, state_dir):
    context = expand_only_app(tmp_path)
    stack = "byo-expand"
    remove_app_images("cutover-expand-only")
    try:
        up = site_cli("up", "--stack", stack, stacks_dir=context, timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "0001_create_items.sql" in up.stdout

        (context / "sql/0002_add_note.sql").write_text("ALTER TABLE items ADD COLUMN note text;\n")
        deployed = site_cli("deploy", "--stack", stack, "2.0.0", stacks_dir=context, timeout=900)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "expand migrations applied: 0002_add_note.sql" in deployed.stdout
        assert "live version 1.0.0 still passes its smoke checks and write probe" in deployed.stdout
        assert "note" in columns(stack)

        (context / "sql/0003_drop_body_length.sql").write_text("ALTER TABLE items DROP COLUMN body_length;\n")
        client = docker.from_env()
        idle_before = client.containers.get(f"cutover-{stack}-green-1").id
        blocked = site_cli("deploy", "--stack", stack, "3.0.0", stacks_dir=context, timeout=900)
        assert_refused_in_one_sentence(blocked, "blocked by the migration lint gate", "0003_drop_body_length.sql", "ban-drop-column")
        assert "body_length" in columns(stack)  # nothing ran
        assert client.containers.get(f"cutover-{stack}-green-1").id == idle_before  # the idle colour was not touched

        finalize = site_cli("finalize", "--stack", stack, stacks_dir=context)
        assert_refused_in_one_sentence(finalize, "nothing to finalize", "expand-only migrations")
    finally:
        site_cli("down", "--stack", stack, "--volumes", stacks_dir=context)
