"""The program deploys whatever the app definition declares, and nothing of the demo it once assumed.

- the read-only static site (examples/static-site: nginx on 9090, SIGQUIT, no Docker healthcheck,
  no database), from its own stack file as a user would copy it into stacks/;
- an expand-only app (one migrate command, its password inside a URL);
- an app with a database but no migrations;
- a prebuilt app (``image.repository``) that the program must never build.

The demo's own stacks are covered by the other test_pulumi_* files; parity field by field for the
static site and the expand-only app is in test_pulumi_parity.py.
"""

from __future__ import annotations

import re

import pytest
from pulumi_harness import (
    APP_POOL,
    COMMAND,
    CONTAINER,
    DATABASE,
    DATABASE_NO_MIGRATIONS_APP,
    EXPAND_ONLY_APP,
    IMAGE,
    LIVE_COLOUR,
    NETWORK,
    PREBUILT_APP,
    RANDOM_PASSWORD,
    REMOTE_IMAGE,
    ROOT,
    VOLUME,
    is_secret,
    labels,
    plain_strings,
    run_program,
    unwrap_secret,
    write_app,
)

from stacks.spec import COLOURS, load_stack

STATIC_DIR = ROOT / "examples" / "static-site"


def _role(container) -> str:
    return labels(container.inputs)["cutover.role"]


def _containers(run, role: str):
    return [c for c in run.of_type(CONTAINER) if _role(c) == role]


def _env_names(container) -> set[str]:
    envs = container.inputs["envs"]
    return {e.split("=", 1)[0] for e in (unwrap_secret(envs) if is_secret(envs) else envs)}


# --- the read-only static site ------------------------------------------------------------------


@pytest.fixture(scope="module")
def static():
    return run_program("static-ci", stacks_dir=STATIC_DIR)


def test_static_site_spec_is_the_one_the_simulator_loads(static):
    # The harness hands the program the stack file's values with cutover:app made relative to
    # stacks/; it must still be the very app the simulator reads from examples/static-site.
    assert static.config["cutover:app"] == "../examples/static-site/cutover-app.yaml"
    assert static.spec() == load_stack("static-ci", stacks_dir=STATIC_DIR)
    assert not static.spec().app.read_write


def test_read_only_app_has_no_database_no_password_and_no_migration(static):
    assert static.of_type(DATABASE) == []
    assert static.of_type(RANDOM_PASSWORD) == [] and static.secret_values == ()
    assert _containers(static, "database") == [] and _containers(static, "migration") == []
    assert static.outputs["migration_containers"] == {}
    assert sorted(v.name for v in static.of_type(VOLUME)) == ["cutover-static-ci-ledger", "cutover-static-ci-proxy-state"]
    assert {i.inputs["imageName"] for i in static.of_type(IMAGE)} == {"cutover-proxy:3", "cutover-state:1", "cutover-static-site:1.0.0"}
    # Nothing is secret, and nobody is told about a database that does not exist.
    for r in static.resources:
        assert not is_secret(r.inputs.get("envs")), r.name
    assert static.outputs["database_host"] is None
    assert "databaseHost" not in static.exports
    assert set(static.exports) == {"liveColor", "liveUrl", "previewUrl", "blue", "green", "switchOutput"}


def test_read_only_pools_depend_on_their_image_and_the_network_only(static):
    (network,) = static.of_type(NETWORK)
    (image,) = [i for i in static.of_type(IMAGE) if i.name.startswith("app-image-")]
    switch = static.named(LIVE_COLOUR, "cutover-switch")
    apps = _containers(static, "app")
    assert len(apps) == 2 * static.spec().pool_size
    for app in apps:
        # The colour that is not made live changes only after the switch (test_pulumi_staging.py).
        after_switch = {switch.urn} if labels(app.inputs)["cutover.colour"] != static.spec().live_colour else set()
        assert set(app.dependencies) == {image.urn, network.urn, *after_switch}, app.name


def _backends(run) -> str:
    """Both colours' backend sections, as the proxy-backend commands hand them to the proxy."""
    return "\n".join(run.named(COMMAND, f"cutover-backend-{colour}").inputs["environment"]["CUTOVER_BACKEND"] for colour in COLOURS)


def test_read_only_proxy_sends_traffic_to_the_apps_port(static):
    config = _backends(static)
    servers = re.findall(r"^\s+server (\S+) (\S+)$", config, re.MULTILINE)
    assert servers == [
        (f"{colour}-{i}", f"cutover-static-ci-{colour}-{i}:9090") for colour in COLOURS for i in range(1, static.spec().pool_size + 1)
    ]
    assert ":8000" not in config
    # The proxy's and the app's health probe: the path the definition declares.
    assert "option httpchk GET /healthz" in config


def test_read_only_app_containers_stop_the_apps_way_and_carry_no_healthcheck(static):
    for app in _containers(static, "app"):
        inputs = app.inputs
        # nginx finishes in-flight requests on SIGQUIT (SIGTERM would be its fast shutdown).
        assert inputs["stopSignal"] == "SIGQUIT", app.name
        assert inputs["stopTimeout"] == 20 and inputs["destroyGraceSeconds"] == 20, app.name
        # No health.command in the definition: no Docker healthcheck, so `up` cannot wait on one.
        assert inputs.get("healthcheck") is None, app.name
        assert inputs["wait"] is False, app.name
        assert inputs["restart"] == "unless-stopped" and app.delete_before_replace, app.name
        assert not inputs.get("command"), app.name  # the image's own CMD


def test_read_only_app_gets_no_env_the_demo_uses(static):
    demo = load_stack("dev").app
    # Every name the demo declares, plus those cutover used to hard-code for it.
    demo_names = {*demo.env, *demo.database.env, "APP_COLOUR", "APP_INSTANCE", "APP_VERSION"}
    assert {"APP_PORT", "DATABASE_PASSWORD"} <= demo_names
    for app in _containers(static, "app"):
        names = _env_names(app)
        # What cutover gives every app, and nothing else: the site declares no env of its own.
        assert names == {"CUTOVER_COLOUR", "CUTOVER_INSTANCE", "CUTOVER_VERSION"}, app.name
        assert not names & demo_names, app.name
        version = labels(app.inputs)["cutover.version"]
        assert f"CUTOVER_VERSION={version}" in app.inputs["envs"], app.name


def test_read_only_app_image_is_built_from_its_own_directory(static):
    (image,) = [i for i in static.of_type(IMAGE) if i.name.startswith("app-image-")]
    build = image.inputs["build"]
    assert image.inputs["imageName"] == "cutover-static-site:1.0.0"
    assert build["context"] == "examples/static-site"
    assert build["dockerfile"] == "examples/static-site/Dockerfile"
    assert build["args"] == {"BASE_IMAGE": "cutover/base:bookworm", "SITE_RELEASE": "1.0.0"}
    assert image.inputs["skipPush"] is True


def test_read_only_switch_waits_for_the_proxy_and_the_live_pool(static):
    switch = static.named(LIVE_COLOUR, "cutover-switch")
    live = static.spec().live_colour
    for container in _containers(static, "proxy") + _containers(static, "app"):
        if labels(container.inputs).get("cutover.colour") in (None, live):
            assert container.urn in switch.dependencies, container.name
    assert static.outputs["switch_output"] == "live=blue"
    assert len(static.of_type(APP_POOL)) == 2


# --- an expand-only app -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    app_file = write_app(tmp_path_factory.mktemp("ledger"), EXPAND_ONLY_APP, dockerfile="build/Containerfile")
    return run_program("dev", {"cutover:app": str(app_file), "cutover:blueVersion": "2.0.0", "cutover:greenVersion": "2.1.0"})


def test_expand_only_app_runs_its_declared_command_once_per_version(ledger):
    runs = {labels(m.inputs)["cutover.version"]: m for m in _containers(ledger, "migration")}
    assert sorted(runs) == ["2.0.0", "2.1.0"]
    for version, run in runs.items():
        assert run.inputs["command"] == ["/opt/ledger/bin/ledger-migrate", "up", "--no-prompt"], version
        # By image ID: the digest the version's image resource reported, not its tag.
        (image,) = [i for i in ledger.of_type(IMAGE) if i.inputs["imageName"] == f"ledger:{version}"]
        assert run.inputs["image"] == image.state["repoDigest"]
        assert run.name == f"cutover-dev-migrate-{version}"
        assert run.inputs["attach"] is True and run.inputs["mustRun"] is False
    # Each pool waits for its own version's run; the runs never overlap.
    for app in _containers(ledger, "app"):
        assert runs[labels(app.inputs)["cutover.version"]].urn in app.dependencies, app.name
    assert runs["2.0.0"].urn in runs["2.1.0"].dependencies


def test_expand_only_app_gets_its_own_env_names_and_its_password_only_inside_secrets(ledger):
    (password,) = ledger.secret_values
    for container in _containers(ledger, "app") + _containers(ledger, "migration"):
        envs = container.inputs["envs"]
        assert is_secret(envs), container.name
        values = unwrap_secret(envs)
        version = labels(container.inputs)["cutover.version"]
        # The template, filled in: the password inside the URL the app asked for.
        assert f"LEDGER_DB_URL=postgresql://cutover:{password}@db:5432/cutover?sslmode=disable" in values, container.name
        assert "LEDGER_DB_HOST=db" in values and f"LEDGER_BUILD=ledger-{version}" in values, container.name
        assert not any(v.startswith(("DATABASE_", "APP_")) for v in values), container.name
    for app in _containers(ledger, "app"):
        assert app.inputs["stopSignal"] == "SIGINT" and app.inputs["stopTimeout"] == 15, app.name
        assert app.inputs["healthcheck"]["tests"] == ["CMD", "/opt/ledger/bin/ready"], app.name
        assert app.inputs["wait"] is True, app.name
    for r in ledger.resources:
        assert not any(password in s for s in plain_strings(r.inputs)), r.name
    assert "cutover-dev-blue-1:7000" in _backends(ledger)


def test_an_app_outside_the_project_is_built_from_absolute_paths(ledger):
    app_dir = ledger.spec().app.directory
    images = {i.inputs["imageName"]: i.inputs["build"] for i in ledger.of_type(IMAGE) if i.name.startswith("app-image-")}
    assert set(images) == {"ledger:2.0.0", "ledger:2.1.0"}
    for tag, build in images.items():
        assert build["context"] == app_dir
        assert build["dockerfile"] == f"{app_dir}/build/Containerfile"
        assert build["args"]["LEDGER_RELEASE"] == tag.split(":", 1)[1]


# --- a database, no migrations ------------------------------------------------------------------


def test_a_database_without_migrations_has_no_run_and_pools_wait_for_the_database(tmp_path):
    app_file = write_app(tmp_path / "notes", DATABASE_NO_MIGRATIONS_APP)
    run = run_program("dev", {"cutover:app": str(app_file)})
    assert len(run.of_type(DATABASE)) == 1 and len(run.of_type(RANDOM_PASSWORD)) == 1
    assert _containers(run, "migration") == [] and run.outputs["migration_containers"] == {}
    (db,) = _containers(run, "database")
    (password,) = run.secret_values
    for app in _containers(run, "app"):
        # Not before the database container, which `up` waits on until it is healthy (the SDK sends
        # a dependency on the Database component as one on each of its resources).
        assert db.urn in app.dependencies, app.name
        assert f"NOTES_PGPASSWORD={password}" in unwrap_secret(app.inputs["envs"]), app.name


# --- a prebuilt app -----------------------------------------------------------------------------


def test_a_prebuilt_app_is_referenced_never_built_and_never_deleted(tmp_path):
    app_file = write_app(tmp_path / "storefront", PREBUILT_APP)
    run = run_program("dev", {"cutover:app": str(app_file), "cutover:blueVersion": "3.0.0", "cutover:greenVersion": "3.1.0"})
    # Read-only: no database image; the ledger's writer, and nothing of the app.
    assert {i.inputs["imageName"] for i in run.of_type(IMAGE)} == {"cutover-proxy:3", "cutover-state:1"}
    remotes = {r.inputs["name"]: r for r in run.of_type(REMOTE_IMAGE)}
    assert set(remotes) == {"acme/storefront:3.0.0", "acme/storefront:3.1.0"}
    for remote in remotes.values():
        # The team's artefact: cutover must not remove it from the engine on destroy or replace.
        assert remote.inputs["keepLocally"] is True
        assert not remote.inputs.get("build")
    by_id = {r.state["imageId"]: r for r in remotes.values()}
    for app in _containers(run, "app"):
        # The container runs the image ID the engine reported for the team's tag.
        remote = by_id[app.inputs["image"]]
        assert remote.inputs["name"] == f"acme/storefront:{labels(app.inputs)['cutover.version']}"
        assert remote.urn in app.dependencies, app.name
    assert run.outputs["blue_image"] == "acme/storefront:3.0.0"
    assert run.outputs["green_image_digest"] == "sha256:mock-local-acme/storefront:3.1.0"
