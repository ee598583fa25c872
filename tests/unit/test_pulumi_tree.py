"""The resource tree the Pulumi program declares for each stack (Pulumi mocks, no engine)."""

from __future__ import annotations

import pytest
from pulumi_harness import (
    APP_POOL,
    COMMAND,
    CONTAINER,
    DATABASE,
    DOCKER_PROVIDER,
    IMAGE,
    LIVE_COLOUR,
    NETWORK,
    PROXY,
    RANDOM_PASSWORD,
    SERVICE,
    VOLUME,
    ROOT,
    labels,
    run_program,
)

from stacks.proxy_config import render_backend, render_base_config
from stacks.spec import COLOURS, load_stack
from stacks.topology import app_container_names

STACKS = ("dev", "ci", "prod")


@pytest.fixture(scope="module", params=STACKS)
def run(request):
    return run_program(request.param)


def _role(container) -> str:
    return labels(container.inputs)["cutover.role"]


def _versions(spec) -> set[str]:
    return {spec.version_of(colour) for colour in COLOURS}


def test_one_network_one_database_one_proxy_two_pools_one_switch(run):
    spec = load_stack(run.stack)
    assert len(run.of_type(NETWORK)) == 1
    assert len(run.of_type(SERVICE)) == 1
    assert len(run.of_type(DATABASE)) == 1
    assert len(run.of_type(PROXY)) == 1
    # The switch, one backend and one version stamp per colour, and the app's prepare step once per version.
    prepares = [f"app-prepare-{v}" for v in sorted({spec.blue_version, spec.green_version})]
    backends = [f"cutover-backend-{colour}" for colour in COLOURS]
    # And the switch's record in the stack's ledger.
    names = ["cutover-switch-record", "cutover-version-blue", "cutover-version-green", *backends, *prepares]
    assert sorted(c.name for c in run.of_type(COMMAND)) == sorted(names)
    assert len(run.of_type(RANDOM_PASSWORD)) == 1
    # The proxy's state volume, the database's data volume and the ledger.
    assert sorted(v.name for v in run.of_type(VOLUME)) == [f"cutover-{run.stack}-{v}" for v in ("db-data", "ledger", "proxy-state")]

    (database,) = run.of_type(DATABASE)
    children = run.children_of(database)
    assert [_role(c) for c in children if c.type == CONTAINER] == ["database"]
    assert [v.name for v in children if v.type == VOLUME] == [f"cutover-{run.stack}-db-data"]
    assert [r.type for r in children if r.type == RANDOM_PASSWORD] == [RANDOM_PASSWORD]
    assert [i.inputs["imageName"] for i in children if i.type == IMAGE] == ["cutover-postgres:15-2"]

    (proxy,) = run.of_type(PROXY)
    proxy_containers = [r for r in run.children_of(proxy) if r.type == CONTAINER]
    assert [labels(c.inputs)["cutover.role"] for c in proxy_containers] == ["proxy"]

    pools = run.of_type(APP_POOL)
    assert sorted(p.name for p in pools) == sorted(f"cutover-{colour}" for colour in COLOURS)
    for pool in pools:
        members = [r for r in run.children_of(pool) if r.type == CONTAINER]
        assert len(members) == spec.pool_size, pool.name
        colour = pool.name.removeprefix("cutover-")
        assert {labels(m.inputs)["cutover.colour"] for m in members} == {colour}

    # One migration run per distinct version (both colours run one version in every stack file).
    migrations = [c for c in run.of_type(CONTAINER) if _role(c) == "migration"]
    assert sorted(m.name for m in migrations) == sorted(f"cutover-{run.stack}-migrate-{v}" for v in _versions(spec))
    # database + proxy + both pools + the migrations.
    assert len(run.of_type(CONTAINER)) == 2 + 2 * spec.pool_size + len(_versions(spec))


def test_every_service_container_is_health_checked_restarted_and_deleted_before_replace(run):
    services = [c for c in run.of_type(CONTAINER) if _role(c) != "migration"]
    assert sorted({_role(c) for c in services}) == ["app", "database", "proxy"]
    for container in services:
        inputs = container.inputs
        assert inputs["healthcheck"]["tests"], container.name
        assert inputs["restart"] == "unless-stopped", container.name
        # Seen by the recording monitor in the engine request itself, not inferred from our code.
        assert container.delete_before_replace, container.name
        # `up` must wait for health, and a destroy must stop gracefully rather than SIGKILL.
        assert inputs["wait"] is True, container.name
        assert inputs["destroyGraceSeconds"] == inputs["stopTimeout"], container.name
        # A service is never run attached: `up` would wait for it to exit.
        assert not inputs.get("attach"), container.name


def test_migrations_are_one_shot_runs(run):
    spec = load_stack(run.stack)
    migrations = [c for c in run.of_type(CONTAINER) if _role(c) == "migration"]
    assert migrations
    for container in migrations:
        inputs = container.inputs
        # The expand command the app definition declares (the demo's: its own migrate module).
        assert inputs["command"] == list(spec.app.migrations.expand), container.name
        # `up` attaches and waits for the exit; an exited container is success for the provider,
        # which records its exit code (checked by the program, see test_pulumi_migrations.py).
        assert inputs["attach"] is True and inputs["mustRun"] is False, container.name
        assert inputs["restart"] == "no" and not inputs.get("rm"), container.name
        assert inputs.get("healthcheck") is None and inputs["wait"] is False, container.name
        assert container.delete_before_replace, container.name


def test_the_database_is_never_published_on_the_host(run):
    (db,) = [c for c in run.of_type(CONTAINER) if _role(c) == "database"]
    assert db.inputs["ports"] == []
    # The network by its resource's ID (the mock provider answers `<name>-id`).
    assert db.inputs["networksAdvanced"] == [{"name": f"cutover-{run.stack}-id", "aliases": ["db"]}]
    assert db.inputs["volumes"] == [{"volumeName": f"cutover-{run.stack}-db-data", "containerPath": "/var/lib/postgresql/data"}]


def test_fixed_name_network_and_volume_are_deleted_before_replace(run):
    for resource in run.of_type(NETWORK) + run.of_type(VOLUME):
        assert resource.delete_before_replace, resource.name


def test_every_docker_resource_uses_the_stack_docker_host(run):
    (provider,) = run.of_type(DOCKER_PROVIDER)
    assert provider.inputs["host"] == run.config["docker:host"]
    docker_resources = [r for r in run.resources if r.custom and r.type.startswith("docker:")]
    assert docker_resources
    for resource in docker_resources:
        assert resource.provider.startswith(provider.urn + "::"), resource.name


def test_components_parent_their_children(run):
    (service,) = run.of_type(SERVICE)
    (database,) = run.of_type(DATABASE)
    for component in run.of_type(DATABASE) + run.of_type(PROXY) + run.of_type(APP_POOL):
        assert component.parent == service.urn, component.name
    owners = {r.urn for r in run.of_type(DATABASE) + run.of_type(PROXY) + run.of_type(APP_POOL)}
    for container in run.of_type(CONTAINER):
        # Migrations belong to the service: they serve both colours and need the database.
        expected = {service.urn} if _role(container) == "migration" else owners
        assert container.parent in expected, container.name
    (password,) = run.of_type(RANDOM_PASSWORD)
    assert password.parent == database.urn
    for command in run.of_type(COMMAND):
        assert command.parent == service.urn, command.name


def test_the_prepare_step_runs_in_the_context_before_its_image_is_built(run):
    spec = load_stack(run.stack)
    for version in sorted({spec.blue_version, spec.green_version}):
        prepare = run.named(COMMAND, f"app-prepare-{version}")
        image = run.named(IMAGE, f"app-image-{version}")
        assert prepare.inputs["create"] == " ".join(p.replace("{version}", version) for p in spec.app.image.build.prepare)
        assert prepare.inputs["dir"] == image.inputs["build"]["context"] == "examples/demo"
        assert prepare.inputs["environment"] == {"CUTOVER_VERSION": version}
        assert prepare.urn in image.dependencies


def test_images_are_built_locally_never_pushed(run):
    spec = load_stack(run.stack)
    images = {r.inputs["imageName"]: r.inputs for r in run.of_type(IMAGE)}
    expected = {"cutover-proxy:3", "cutover-postgres:15-2", "cutover-state:1"} | {spec.app.image_tag(spec.version_of(c)) for c in COLOURS}
    assert set(images) == expected
    for name, inputs in images.items():
        assert inputs["skipPush"] is True, name
        assert inputs["build"]["args"]["BASE_IMAGE"] == spec.base_image, name
    for colour in COLOURS:
        version = spec.version_of(colour)
        app = images[spec.app.image_tag(version)]
        # The app's own build args, with its {version} placeholder filled in.
        assert app["build"]["args"] == {"BASE_IMAGE": spec.base_image, **spec.app.build_args(version)}
        assert version in app["build"]["args"].values()
        # The demo's definition names its own directory as the context, relative to the project.
        assert app["build"]["context"] == "examples/demo"
        # pulumi-docker reads `dockerfile` from the working directory (the project), not from the
        # context: a bare "Dockerfile" here would build the project root's (there is none).
        assert app["build"]["dockerfile"] == "examples/demo/Dockerfile"
        assert (ROOT / app["build"]["dockerfile"]).is_file()
    assert images["cutover-proxy:3"]["build"]["context"] == "images/proxy"
    assert images["cutover-proxy:3"]["build"]["dockerfile"] == "images/proxy/Dockerfile"
    assert images["cutover-postgres:15-2"]["build"]["context"] == "images/postgres"
    assert images["cutover-postgres:15-2"]["build"]["dockerfile"] == "images/postgres/Dockerfile"
    for name, inputs in images.items():
        assert (ROOT / inputs["build"]["dockerfile"]).is_file(), name


def test_switch_runs_proxy_switch_in_the_proxy_after_the_live_colour_is_up(run):
    spec = load_stack(run.stack)
    # The switch is a LiveColour (components/live_colour.py): it flips with proxy-switch --wait.
    switch = run.named(LIVE_COLOUR, "cutover-switch")
    proxy = run.named(CONTAINER, f"cutover-{run.stack}-proxy")
    # It waits (up to 60 s) for every server of the colour to be UP in HAProxy, or refuses.
    assert switch.inputs["wait_seconds"] == 60
    assert switch.inputs["proxy"] == f"cutover-{run.stack}-proxy"
    assert (switch.inputs["colour"], switch.inputs["docker_host"]) == (spec.live_colour, spec.docker_host)
    # Flipped again whenever the proxy container is replaced (the mock id is "<name>-id").
    assert switch.inputs["proxy_id"] == f"{proxy.name}-id"
    waits_for = set(switch.dependencies)
    # The proxy and every member of the colour it makes live; the database and the migrations come
    # before the pools. The other colour comes after it (test_pulumi_staging.py).
    for container in run.of_type(CONTAINER):
        if _role(container) == "proxy" or (_role(container) == "app" and labels(container.inputs)["cutover.colour"] == spec.live_colour):
            assert container.urn in waits_for, container.name
    # And after that colour's backend and version stamp, so HAProxy checks its servers and a
    # colour made live says which version it runs.
    for kind in ("backend", "version"):
        assert run.named(COMMAND, f"cutover-{kind}-{spec.live_colour}").urn in waits_for, kind


def test_each_colours_backend_goes_into_the_proxy_once_its_pool_is_up(run):
    """Servers and health settings reach the running proxy by proxy-backend (a hitless reload),
    never as an input of the proxy container."""
    spec = load_stack(run.stack)
    proxy = run.named(CONTAINER, f"cutover-{run.stack}-proxy")
    for colour in COLOURS:
        backend = run.named(COMMAND, f"cutover-backend-{colour}")
        # The section travels in the environment, never the command text.
        assert backend.inputs["create"] == f"docker exec -e CUTOVER_BACKEND cutover-{run.stack}-proxy proxy-backend {colour}"
        expected = render_backend(spec, colour, app_container_names(spec)[colour], spec.app.port)
        assert backend.inputs["environment"] == {"CUTOVER_BACKEND": expected, "DOCKER_HOST": spec.docker_host}
        assert backend.inputs["triggers"] == [f"{proxy.name}-id"]
        members = {c.urn for c in run.of_type(CONTAINER) if _role(c) == "app" and labels(c.inputs)["cutover.colour"] == colour}
        assert members and members <= set(backend.dependencies), colour
        assert proxy.urn in backend.dependencies, colour
        assert backend.urn in run.named(COMMAND, f"cutover-version-{colour}").dependencies, colour
    assert proxy.inputs["uploads"][0]["content"] == render_base_config()


def test_each_colours_version_is_stamped_into_the_proxy_once_its_pool_is_up(run):
    spec = load_stack(run.stack)
    proxy = run.named(CONTAINER, f"cutover-{run.stack}-proxy")
    for colour in COLOURS:
        stamp = run.named(COMMAND, f"cutover-version-{colour}")
        # The script the simulator runs after a deploy; the version travels in the environment.
        assert stamp.inputs["create"] == f'docker exec cutover-{run.stack}-proxy proxy-version {colour} "$VERSION"'
        assert stamp.inputs["environment"] == {"VERSION": spec.version_of(colour), "DOCKER_HOST": spec.docker_host}
        assert stamp.inputs["triggers"] == [f"{proxy.name}-id"]
        members = {c.urn for c in run.of_type(CONTAINER) if _role(c) == "app" and labels(c.inputs)["cutover.colour"] == colour}
        others = {c.urn for c in run.of_type(CONTAINER) if _role(c) == "app"} - members
        assert members and members <= set(stamp.dependencies), colour
        # Its own pool only: a stamp never waits for (or is held back by) the other colour.
        assert not others & set(stamp.dependencies), colour
        assert proxy.urn in stamp.dependencies, colour


def test_outputs_a_user_needs(run):
    spec = load_stack(run.stack)
    out = run.outputs
    assert out["database_host"] == "db" and out["database_name"] == "cutover"
    assert out["live_colour"] == spec.live_colour
    assert out["live_url"] == spec.live_url()
    assert out["preview_url"] == spec.preview_url()
    assert out["switch_output"] == f"live={spec.live_colour}"
    assert out["proxy_container_name"] == f"cutover-{run.stack}-proxy"
    for colour in COLOURS:
        image = spec.app.image_tag(spec.version_of(colour))
        assert out[f"{colour}_version"] == spec.version_of(colour)
        assert out[f"{colour}_image"] == image
        assert out[f"{colour}_image_digest"] == f"sha256:mock-{image}"
        assert out[f"{colour}_container_names"] == [f"cutover-{run.stack}-{colour}-{i}" for i in range(1, spec.pool_size + 1)]
    # What `pulumi stack output` shows: the database's host, never its password.
    assert set(run.exports) == {"databaseHost", "liveColor", "liveUrl", "previewUrl", "blue", "green", "switchOutput"}
    assert run.exports["databaseHost"] == ("db", False)


def test_one_app_image_per_distinct_version():
    others = ("proxy-image", "database-image", "state-image")
    shared = run_program("dev", {"cutover:blueVersion": "1.0.0", "cutover:greenVersion": "1.0.0"})
    assert [r.name for r in shared.of_type(IMAGE) if r.name not in others] == ["app-image-1.0.0"]
    split = run_program("dev", {"cutover:blueVersion": "1.0.0", "cutover:greenVersion": "1.1.0"})
    assert sorted(r.name for r in split.of_type(IMAGE) if r.name not in others) == ["app-image-1.0.0", "app-image-1.1.0"]
    assert split.outputs["green_image"] == "cutover-demo:1.1.0"
