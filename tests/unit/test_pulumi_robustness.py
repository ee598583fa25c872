"""Data and robustness on the Pulumi path (issue 10, part 6), under Pulumi's mocks:

- the database's container and volume survive `pulumi destroy` (retain_on_delete) unless
  cutover:keepDataOnDestroy is false;
- every Docker object the program creates carries cutover.managed-by=pulumi, and a stack whose
  containers the simulator manages is refused before anything is registered;
- each migration run's create is bounded by cutover:migrationTimeoutSeconds;
- images are built for the engine's platform (read from the engine, not this machine);
- containers name the network by its resource's ID (a real dependency);
- every input is written the way the provider reads it back (no diff after `pulumi refresh`);
- bad config is a pulumi.RunError of one sentence.
"""

from __future__ import annotations

import dataclasses
import re

import pulumi
import pytest
from pulumi_harness import CONTAINER, IMAGE, NETWORK, VOLUME, labels, run_program, write_app

from components import engine
from components.render import container_args, docker_capabilities, go_duration
from stacks.ownership import MANAGED_BY
from stacks.spec import load_stack
from stacks.topology import stack_containers

APP_WITH_CAPABILITY = """\
format: cutover-app/1
name: lowport
image:
  build: {}
port: 80
health:
  path: /up
  command: [/bin/up]
smoke:
  - path: /up
security:
  capabilities: [NET_BIND_SERVICE, CHOWN]
"""


def _one_sentence(error: BaseException) -> str:
    assert type(error) is pulumi.RunError, type(error)
    message = str(error)
    assert "\n" not in message and message.endswith(".") and not re.search(r"[.!?]\s", message), message
    return message


@pytest.fixture(scope="module")
def dev():
    return run_program("dev")


def _role(r) -> str:
    return labels(r.inputs).get("cutover.role", "")


def _migrations(run):
    return [c for c in run.of_type(CONTAINER) if c.inputs.get("attach")]


# -- 1. the data outlives `pulumi destroy` ---------------------------------------------------------


def test_the_database_container_and_volume_are_kept_on_destroy_by_default(dev):
    (db,) = [c for c in dev.of_type(CONTAINER) if _role(c) == "database"]
    data = dev.named(VOLUME, "cutover-dev-db-data")
    assert db.retain_on_delete and data.retain_on_delete
    # Nothing else is kept but the audit ledger: the rest is rebuilt from the stack file.
    kept = sorted(r.name for r in dev.resources if r.retain_on_delete)
    assert kept == sorted(["cutover-dev-db", "cutover-dev-db-data", "cutover-dev-ledger"])


def test_keep_data_on_destroy_false_lets_destroy_delete_them():
    run = run_program("dev", {"cutover:keepDataOnDestroy": "false"})
    (db,) = [c for c in run.of_type(CONTAINER) if _role(c) == "database"]
    assert not db.retain_on_delete and not run.named(VOLUME, "cutover-dev-db-data").retain_on_delete
    # The ledger is an audit trail, kept whatever this key says.
    assert run.named(VOLUME, "cutover-dev-ledger").retain_on_delete


def test_a_label_change_never_replaces_a_volume(dev):
    # A volume's labels are replace-on-change, and replacing a volume deletes its data.
    for volume in dev.of_type(VOLUME):
        if volume.name != "cutover-dev-ledger":  # declared by the service (its own options)
            assert "labels" in volume.ignore_changes, volume.name


# -- 2. owners ------------------------------------------------------------------------------------


def test_every_docker_object_the_program_creates_is_marked_as_pulumis(dev):
    objects = [*dev.of_type(CONTAINER), *dev.of_type(NETWORK), *dev.of_type(VOLUME)]
    assert len(objects) > 5
    for r in objects:
        assert labels(r.inputs).get(MANAGED_BY) == "pulumi", r.name


def test_a_stack_the_simulator_manages_is_refused_before_anything_is_registered():
    with pytest.raises(pulumi.RunError) as caught:
        run_program("dev", existing_containers={"cutover-dev-proxy": "cutover", "cutover-dev-blue-1": "cutover"})
    message = _one_sentence(caught.value)
    assert message.startswith("stack dev is managed by the cutover simulator")
    assert "cutover-dev-blue-1, cutover-dev-proxy" in message and "cutover down --stack dev" in message
    assert caught.value.registrations == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize("owner", ["pulumi", None])
def test_its_own_containers_and_unlabelled_ones_are_not_refused(owner):
    # None: made before the label existed; nobody's in particular.
    run = run_program("dev", existing_containers={"cutover-dev-proxy": owner})
    assert run.of_type(CONTAINER)


def test_the_engine_is_asked_through_the_stacks_own_docker_host():
    run = run_program("prod")
    listing = [env for command, env in run.local_runs if command.startswith("docker ps")]
    assert listing == [{"DOCKER_HOST": "ssh://deploy@prod-docker.internal"}]
    (command,) = {command for command, _ in run.local_runs if command.startswith("docker ps")}
    assert "label=cutover.stack=prod" in command and "label=cutover.project=cutover" in command and "--all" in command


# -- 3. migration timeout -------------------------------------------------------------------------


def test_a_migration_runs_create_is_bounded_by_the_configured_timeout(dev):
    runs = _migrations(dev)
    assert runs
    for run in runs:
        assert run.custom_timeouts == {"create": "10m0s", "update": "", "delete": ""}, run.name
    # Long-running containers wait for health (wait_timeout), not for an exit.
    assert all(c.custom_timeouts is None for c in dev.of_type(CONTAINER) if not c.inputs.get("attach"))


def test_the_migration_timeout_follows_the_key():
    run = run_program("dev", {"cutover:migrationTimeoutSeconds": "90"})
    assert {c.custom_timeouts["create"] for c in _migrations(run)} == {"1m30s"}
    # The simulator reads the same key for its own run of the same migration.
    assert run.spec().migration_timeout_s == 90


# -- 4. platform ----------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_images_are_built_for_the_engines_platform(platform):
    run = run_program("dev", engine_platform=platform)
    images = run.of_type(IMAGE)
    assert len(images) >= 3
    assert {i.name: i.inputs["build"]["platform"] for i in images} == {i.name: platform for i in images}
    asked = [env for command, env in run.local_runs if command.startswith("docker version")]
    assert asked and all(env == {"DOCKER_HOST": "unix:///var/run/docker.sock"} for env in asked)


def test_an_engine_that_cannot_be_asked_is_one_sentence(monkeypatch):
    def fail(**kwargs):
        raise Exception("Invoke of command:local:run failed\nexit status 1: Cannot connect to the Docker daemon")

    monkeypatch.setattr(engine.local, "run", fail)
    with pytest.raises(pulumi.RunError) as caught:
        engine.engine_platform(load_stack("ci"))
    message = _one_sentence(caught.value)
    assert "unix:///var/run/docker.sock" in message and "Cannot connect to the Docker daemon" in message


# -- 5. network by ID -----------------------------------------------------------------------------


def test_containers_name_the_network_by_its_resources_id_and_depend_on_it(dev):
    (network,) = dev.of_type(NETWORK)
    for c in dev.of_type(CONTAINER):
        # The mock provider's ID for the network resource (`<name>-id`), never the bare name.
        assert [n["name"] for n in c.inputs["networksAdvanced"]] == [f"{network.name}-id"], c.name
        assert network.urn in c.dependencies, c.name


# -- 6. refresh shows no diff ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "go"),
    # What Go's time.Duration.String() prints (and so the provider reads back from Docker).
    [(0, "0s"), (1, "1s"), (2, "2s"), (59, "59s"), (60, "1m0s"), (61, "1m1s"), (600, "10m0s"), (3600, "1h0m0s"),
     (3661, "1h1m1s"), (86400, "24h0m0s"), (0.5, "500ms"), (1.5, "1.5s"), (0.0015, "1.5ms"), (0.000002, "2µs")],
)
def test_durations_are_written_as_go_reads_them_back(seconds, go):
    assert go_duration(seconds) == go


def test_a_health_interval_of_a_minute_is_written_1m0s():
    run = run_program("dev", {"cutover:healthIntervalMs": "60000"})
    apps = [c for c in run.of_type(CONTAINER) if _role(c) == "app"]
    assert apps and {c.inputs["healthcheck"]["interval"] for c in apps} == {"1m0s"}


def test_every_duration_input_is_in_go_form(dev):
    # Go never writes 60 seconds or more as seconds alone ("90s" reads back as "1m30s").
    go_form = re.compile(r"^(0s|(\d+h)?(\d+m)?\d+(\.\d+)?s|\d+(\.\d+)?(ms|µs|ns))$")
    checked = 0
    for c in dev.of_type(CONTAINER):
        for field in ("interval", "timeout", "startPeriod"):
            if c.inputs.get("healthcheck"):
                value = c.inputs["healthcheck"][field]
                seconds_only = re.fullmatch(r"(\d+)s", value)
                assert go_form.fullmatch(value) and (seconds_only is None or int(seconds_only.group(1)) < 60), (c.name, field, value)
                checked += 1
    assert checked


def test_ports_are_declared_in_the_order_the_provider_reads_them_back(dev):
    proxy = dev.named(CONTAINER, "cutover-dev-proxy")
    internal = [p["internal"] for p in proxy.inputs["ports"]]
    assert len(internal) == 2 and internal == sorted(internal)
    # Whatever order the topology lists them in.
    spec = next(c for c in stack_containers(load_stack("dev")) if c.role == "proxy")
    reversed_ports = dataclasses.replace(spec, ports=tuple(reversed(spec.ports)))
    assert [p.internal for p in container_args(reversed_ports, {})["ports"]] == sorted(internal)


def test_capabilities_are_written_as_docker_stores_them(tmp_path):
    assert docker_capabilities(["ALL"]) == ["ALL"]
    app_file = write_app(tmp_path / "lowport", APP_WITH_CAPABILITY)
    run = run_program("dev", {"cutover:app": str(app_file)})
    apps = [c for c in run.of_type(CONTAINER) if _role(c) == "app"]
    assert apps
    for c in apps:
        assert sorted(c.inputs["capabilities"]["adds"]) == ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"], c.name
        assert c.inputs["capabilities"]["drops"] == ["ALL"], c.name


# -- 7. bad config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cutover:keepDataOnDestroy", "maybe"),
        ("cutover:migrationTimeoutSeconds", "30"),
        ("cutover:migrationTimeoutSeconds", "ten minutes"),
        ("cutover:healthIntervalMs", "60001"),
    ],
)
def test_a_bad_value_of_these_keys_is_one_sentence(key, value):
    with pytest.raises(pulumi.RunError) as caught:
        run_program("dev", {key: value})
    message = _one_sentence(caught.value)
    assert message.startswith(f"stacks/Pulumi.dev.yaml: {key} ")
    assert repr(value) in message or value in message
