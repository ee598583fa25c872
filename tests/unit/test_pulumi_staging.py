"""Changes land on the idle colour: the program reads which colour is live *now* from the proxy and
freezes it (ignore_changes on every input of its containers, its backend and its stamp), refuses a
change of its version, and orders the switch between the two colours.

The proxy's answer is the harness's (``proxy=``): the real one is `docker exec <proxy> proxy-state`
through pulumi-command's ``local.run`` invoke, which the mocks answer instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
from pulumi_harness import COMMAND, CONTAINER, LIVE_COLOUR, DOCKER_PROVIDER, SERVICE, RUN, VOLUME, ProxyState, deployed, labels, run_program

from components.observed import NOTHING_LIVE, ObservedState, ObservedStateError, parse_proxy_state, state_command
from components.render import every_container_input
from components.staging import plan
from stacks.spec import load_stack


def _snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _apps(run, colour: str):
    apps = [c for c in run.of_type(CONTAINER) if labels(c.inputs).get("cutover.role") == "app" and labels(c.inputs)["cutover.colour"] == colour]
    return sorted(apps, key=lambda c: c.name)


def _one_sentence(message: str) -> bool:
    return message.count(". ") == 0 and message.endswith(".") and "\n" not in message


# --- reading the proxy (pure) ---------------------------------------------------------------------


def test_no_proxy_container_means_nothing_is_live():
    assert parse_proxy_state("{}\n") == NOTHING_LIVE
    assert NOTHING_LIVE.live is None


def test_the_contracts_json_line_is_read_as_it_is():
    line = '{"live": "blue", "versions": {"blue": "1.0.0", "green": "1.1.0"}, "servers": {"blue": {"total": 2, "up": 2}, "green": {"total": 2, "up": 0}}}'
    assert parse_proxy_state(line) == ObservedState(live="blue", versions={"blue": "1.0.0", "green": "1.1.0"}, server_totals={"blue": 2, "green": 2})
    # A colour never stamped is absent from "versions".
    assert parse_proxy_state('{"live": "green", "versions": {}, "servers": {}}').versions == {}


@pytest.mark.parametrize("text", ["not json", "[]", '{"live": "purple"}', '{"versions": {}}'])
def test_an_answer_that_is_not_the_contracts_is_refused(text):
    with pytest.raises(ObservedStateError):
        parse_proxy_state(text)


def test_the_state_command_fails_when_the_engine_cannot_be_reached():
    command = state_command("cutover-prod-proxy")
    # `set -e` and `docker ps` first: an unreachable engine fails the invoke rather than printing
    # "{}", which would read as "no proxy" and freeze nothing.
    assert command.startswith("set -e; ")
    assert 'docker ps --all --quiet --filter "name=^/cutover-prod-proxy$"' in command
    assert "docker exec cutover-prod-proxy proxy-state" in command


# --- the program reads it --------------------------------------------------------------------------


def test_the_program_reads_the_proxy_through_the_stacks_engine():
    run = run_program("prod")
    (invoke,) = [args for token, args in run.invokes if token == RUN and "proxy-state" in args["command"]]
    assert invoke["command"] == state_command("cutover-prod-proxy")
    assert invoke["environment"] == {"DOCKER_HOST": "ssh://deploy@prod-docker.internal"}


def test_an_unreachable_engine_stops_the_program_with_one_sentence():
    with pytest.raises(pulumi.RunError) as caught:
        run_program("prod", proxy=RuntimeError("error during connect: dial unix /var/run/docker.sock: connect: no such file"))
    assert type(caught.value) is pulumi.RunError
    message = str(caught.value)
    assert "cutover-prod-proxy" in message and "ssh://deploy@prod-docker.internal" in message and "nothing was changed" in message
    assert _one_sentence(message), message
    # Nothing declared but the provider and the (empty) service component itself.
    assert {r.type for r in caught.value.registrations} <= {DOCKER_PROVIDER, SERVICE}  # type: ignore[attr-defined]


def test_first_up_freezes_nothing():
    run = run_program("prod")
    # (Volumes ignore their labels always: a label change would replace a volume, and its data.)
    assert not any(r.ignore_changes for r in run.resources if r.type != VOLUME)


# --- the live colour is frozen ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def blue_live():
    # prod with blue live, then a new health interval, pool size and idle version in one `up`.
    return run_program(
        "prod",
        {"cutover:healthIntervalMs": "2000", "cutover:poolSize": "4", "cutover:greenVersion": "1.1.0"},
        proxy=deployed("prod", live="blue"),
    )


def test_every_input_of_the_live_colours_containers_is_ignored(blue_live):
    every = {_snake_to_camel(name) for name in every_container_input()}
    assert {"image", "envs", "labels", "healthcheck", "uploads", "ports", "networksAdvanced"} <= every
    # Names the engine knows: the provider schema's input names (plus 5.2.0's one unschema'd input).
    facts = json.loads((Path(__file__).parent / "facts" / "pulumi-docker-5.2.0-replace-on-change.json").read_text())
    schema = facts["resources"][CONTAINER]
    assert every == set(schema["inputs"]) | set(schema["inputsWithoutSchema"])
    for container in _apps(blue_live, "blue"):
        assert set(container.ignore_changes) == every, container.name
        # Every input it has is among them (what the program sets today is a subset of the type's).
        assert set(container.inputs) <= every, container.name
    for container in _apps(blue_live, "green"):
        assert not container.ignore_changes, container.name
    (proxy,) = [c for c in blue_live.of_type(CONTAINER) if c.name == "cutover-prod-proxy"]
    assert not proxy.ignore_changes


def test_the_live_colours_backend_and_stamp_keep_their_text_but_follow_a_new_proxy(blue_live):
    for kind in ("backend", "version"):
        frozen = blue_live.named(COMMAND, f"cutover-{kind}-blue")
        assert {"create", "environment", "update", "delete", "dir"} <= set(frozen.ignore_changes), kind
        # Not its trigger: a replaced proxy gets the backend it had, re-run from the state's text.
        assert "triggers" not in frozen.ignore_changes
        assert not blue_live.named(COMMAND, f"cutover-{kind}-green").ignore_changes, kind


def test_the_live_pool_keeps_its_size_the_idle_pool_takes_the_new_one(blue_live):
    assert [c.name for c in _apps(blue_live, "blue")] == [f"cutover-prod-blue-{i}" for i in (1, 2, 3)]
    assert [c.name for c in _apps(blue_live, "green")] == [f"cutover-prod-green-{i}" for i in (1, 2, 3, 4)]
    green = blue_live.named(COMMAND, "cutover-backend-green").inputs["environment"]["CUTOVER_BACKEND"]
    assert "server green-4 cutover-prod-green-4:8000" in green and "inter 2000ms" in green


def test_the_idle_colour_takes_the_new_settings(blue_live):
    for container in _apps(blue_live, "green"):
        assert container.inputs["healthcheck"]["interval"] == "2s", container.name
        assert labels(container.inputs)["cutover.version"] == "1.1.0", container.name


# --- the refusal -------------------------------------------------------------------------------------


def test_changing_the_live_colours_version_is_refused_with_one_sentence():
    with pytest.raises(pulumi.RunError) as caught:
        run_program("prod", {"cutover:blueVersion": "1.1.0"}, proxy=deployed("prod", live="blue"))
    assert type(caught.value) is pulumi.RunError
    message = str(caught.value)
    assert message == (
        "stacks/Pulumi.prod.yaml: cutover:blueVersion would change blue, the colour serving live traffic now, "
        "from 1.0.0 to 1.1.0; set cutover:blueVersion back to 1.0.0, release 1.1.0 to green "
        "(cutover:greenVersion) and switch to it."
    )
    assert _one_sentence(message)
    # Refused before anything is declared.
    # Nothing declared but the provider and the (empty) service component itself.
    assert {r.type for r in caught.value.registrations} <= {DOCKER_PROVIDER, SERVICE}  # type: ignore[attr-defined]


def test_the_refusal_holds_in_an_up_that_flips_too():
    # Traffic is on blue until the switch runs: its containers cannot be replaced in this `up`.
    with pytest.raises(pulumi.RunError, match="cutover:blueVersion would change blue"):
        run_program("prod", {"cutover:blueVersion": "1.1.0", "cutover:liveColor": "green"}, proxy=deployed("prod", live="blue"))


def test_the_live_colour_is_what_the_proxy_says_not_what_the_config_says():
    # Flipped outside Pulumi (cutover switch): green serves, so green is the one frozen and refused.
    with pytest.raises(pulumi.RunError, match="cutover:greenVersion would change green"):
        run_program("prod", {"cutover:greenVersion": "1.1.0"}, proxy=deployed("prod", live="green"))
    run = run_program("prod", {"cutover:blueVersion": "1.1.0"}, proxy=deployed("prod", live="green"))
    assert all(c.ignore_changes for c in _apps(run, "green")) and not any(c.ignore_changes for c in _apps(run, "blue"))


def test_a_colour_never_stamped_is_not_refused():
    spec = load_stack("prod")
    staging = plan(spec, ObservedState(live="blue"))
    assert staging.frozen("blue") and not staging.frozen("green")


# --- the order around the switch ----------------------------------------------------------------------


def _deps(run, name: str, type_: str = COMMAND) -> set[str]:
    return set(run.named(type_, name).dependencies)


@pytest.mark.parametrize("target", ["blue", "green"])
def test_the_switch_waits_for_the_target_colour_and_the_other_colour_waits_for_the_switch(target):
    other = "green" if target == "blue" else "blue"
    run = run_program("prod", {"cutover:liveColor": target, "cutover:greenVersion": "1.1.0"}, proxy=deployed("prod", live="blue"))
    switch = run.named(LIVE_COLOUR, "cutover-switch")
    assert (switch.inputs["colour"], switch.inputs["wait_seconds"]) == (target, 60)
    needs = set(switch.dependencies)
    assert {c.urn for c in _apps(run, target)} <= needs
    assert {run.named(COMMAND, f"cutover-backend-{target}").urn, run.named(COMMAND, f"cutover-version-{target}").urn} <= needs
    # Never the colour traffic leaves (or stays off): that one changes after the switch.
    assert not {c.urn for c in _apps(run, other)} & needs
    for container in _apps(run, other):
        assert switch.urn in container.dependencies, container.name
    for kind in ("backend", "version"):
        assert switch.urn in _deps(run, f"cutover-{kind}-{other}"), kind
        assert switch.urn not in _deps(run, f"cutover-{kind}-{target}"), kind


def test_each_backend_is_installed_in_the_proxy_once_its_pool_exists():
    run = run_program("prod")
    proxy = run.named(CONTAINER, "cutover-prod-proxy")
    for colour in ("blue", "green"):
        backend = run.named(COMMAND, f"cutover-backend-{colour}")
        assert backend.inputs["create"] == f"docker exec -e CUTOVER_BACKEND cutover-prod-proxy proxy-backend {colour}"
        # The text is in the environment only, never in the command.
        assert f"backend {colour}" in backend.inputs["environment"]["CUTOVER_BACKEND"]
        assert backend.inputs["environment"]["DOCKER_HOST"] == "ssh://deploy@prod-docker.internal"
        assert backend.inputs["triggers"] == [f"{proxy.name}-id"]
        assert proxy.urn in backend.dependencies and {c.urn for c in _apps(run, colour)} <= set(backend.dependencies)


def test_proxy_state_is_what_the_harness_was_told():
    state = ProxyState(live="green", versions={"green": "2.0.0"}, servers={"green": 2})
    assert parse_proxy_state(state.json()) == ObservedState(live="green", versions={"green": "2.0.0"}, server_totals={"green": 2})


# --- the invoke's shell command, run for real against a stand-in `docker` ------------------------------

FAKE_DOCKER = r"""#!/bin/sh
# A stand-in for the docker CLI: what FAKE_MODE says the engine holds. `exec ... sh -c SCRIPT` runs
# SCRIPT here with the proxy's state directory moved to $FAKE_STATE.
case "$1" in
  ps) [ "$FAKE_MODE" = unreachable ] && { echo "Cannot connect to the Docker daemon" >&2; exit 1; }
      [ "$FAKE_MODE" = none ] || echo 0123456789ab; exit 0 ;;
  exec) shift; name=$1; shift
      [ "$FAKE_MODE" = stopped ] && { echo "Error response from daemon: container $name is not running" >&2; exit 1; }
      if [ "$1" = proxy-state ]; then echo '{"live": "green", "versions": {"green": "2.0.0"}, "servers": {"green": {"total": 2, "up": 2}}}'; exit 0; fi
      if [ "$1" = sh ] && [ "$3" = "command -v proxy-state" ]; then [ "$FAKE_MODE" = current ]; exit; fi
      if [ "$1" = sh ]; then exec sh -c "$(printf '%s' "$3" | sed "s#/var/lib/haproxy/state#$FAKE_STATE#g")"; fi
      exit 3 ;;
esac
exit 4
"""


@pytest.fixture
def fake_docker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    # An older proxy's (cutover-proxy:2) state volume: colour and version maps, its full config.
    (state / "colours.map").write_text("live blue\npreview green\n")
    (state / "versions.map").write_text("blue 1.0.0\ngreen 1.1.0\n")
    (state / "haproxy.cfg").write_text(
        "backend blue\n    server blue-1 cutover-prod-blue-1:8000\n    server blue-2 cutover-prod-blue-2:8000\n"
        "backend green\n    server green-1 cutover-prod-green-1:8000\n"
    )

    def run(mode: str):
        import os
        import subprocess

        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_MODE": mode, "FAKE_STATE": str(state)}
        return subprocess.run(["sh", "-c", state_command("cutover-prod-proxy")], env=env, capture_output=True, text=True, timeout=20)

    return run


def test_the_command_reads_a_current_proxy_through_proxy_state(fake_docker):
    done = fake_docker("current")
    assert done.returncode == 0, done.stderr
    assert parse_proxy_state(done.stdout) == ObservedState(live="green", versions={"green": "2.0.0"}, server_totals={"green": 2})


def test_the_command_says_nothing_is_live_without_a_proxy_container(fake_docker):
    done = fake_docker("none")
    assert done.returncode == 0 and parse_proxy_state(done.stdout) == NOTHING_LIVE


def test_the_command_reads_an_older_proxys_state_files(fake_docker):
    done = fake_docker("legacy")
    assert done.returncode == 0, done.stderr
    assert parse_proxy_state(done.stdout) == ObservedState(live="blue", versions={"blue": "1.0.0", "green": "1.1.0"}, server_totals={"blue": 2, "green": 1})


@pytest.mark.parametrize("mode", ["unreachable", "stopped"])
def test_the_command_fails_when_it_cannot_know(fake_docker, mode):
    # Never "{}": an engine or proxy we cannot read must not look like a first `up`.
    done = fake_docker(mode)
    assert done.returncode != 0 and "{}" not in done.stdout
