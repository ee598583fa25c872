"""A switch changes one thing: the switch command's environment. No container is replaced.

pulumi-docker replaces a container when any of its inputs change, so "identical inputs for every
container" is exactly "the switch neither replaces nor restarts the proxy, an app container or the
database, and re-runs no migration". The mock password is stable per stack, as the real one is
(generated once, then kept in the state), so the secret environments are compared too.
"""

from __future__ import annotations

import json

import pytest
from pulumi_harness import COMMAND, CONTAINER, IMAGE, LINT_GATE, LIVE_CHECK, LIVE_COLOUR, RANDOM_PASSWORD, SMOKE_TEST, VOLUME, flatten, run_program

from components.release_gates import LintGateProvider, LiveCheckProvider, SmokeTestProvider

from stacks.spec import load_stack


def _inputs_by_resource(run) -> dict[tuple[str, str], dict]:
    return {(r.type, r.name): flatten(r.inputs) for r in run.resources}


@pytest.mark.parametrize("stack", ["dev", "ci", "prod"])
def test_switching_colour_changes_only_the_switch_environment(stack):
    blue_run, green_run = run_program(stack, {"cutover:liveColor": "blue"}), run_program(stack, {"cutover:liveColor": "green"})
    blue, green = _inputs_by_resource(blue_run), _inputs_by_resource(green_run)
    assert blue.keys() == green.keys()
    # Everything is compared, the database, its password and the migration run included.
    version = load_stack(stack).blue_version
    assert {(CONTAINER, f"cutover-{stack}-db"), (CONTAINER, f"cutover-{stack}-migrate-{version}")} <= blue.keys()
    assert any(kind == RANDOM_PASSWORD for kind, _ in blue)

    differences = {
        (resource, path)
        for resource in blue
        for path in set(blue[resource]) | set(green[resource])
        if blue[resource].get(path) != green[resource].get(path)
    }
    # The release gates carry the stack's config (their provider rebuilds the spec from it), so
    # its liveColor differs there too; their diff judges only what they check, so none runs again.
    gates = {resource for resource in blue if resource[0] in (LINT_GATE, LIVE_CHECK, SMOKE_TEST)}
    assert {kind for kind, _ in gates} == {LINT_GATE, LIVE_CHECK, SMOKE_TEST}
    assert {d for d in differences if d[0] in gates} == {(gate, "config.cutover:liveColor") for gate in gates}
    providers = {LINT_GATE: LintGateProvider(), LIVE_CHECK: LiveCheckProvider(), SMOKE_TEST: SmokeTestProvider()}
    for kind, name in gates:
        olds, news = blue_run.named(kind, name).inputs, green_run.named(kind, name).inputs
        assert providers[kind].diff("id", olds, news).changes is False, name
    # The switch, and its record in the stack's ledger: nothing else.
    assert differences - {d for d in differences if d[0] in gates} == {
        ((LIVE_COLOUR, "cutover-switch"), "colour"), ((COMMAND, "cutover-switch-record"), "environment.RECORD")
    }
    assert blue[(LIVE_COLOUR, "cutover-switch")]["colour"] == "blue"
    assert green[(LIVE_COLOUR, "cutover-switch")]["colour"] == "green"
    for run, colour in ((blue, "blue"), (green, "green")):
        record = json.loads(run[(COMMAND, "cutover-switch-record")]["environment.RECORD"])
        assert (record["command"], record["outcome"], record["to_colour"]) == ("switch", "ok", colour)


def test_the_switch_is_recorded_in_the_stacks_ledger_on_its_engine():
    run = run_program("dev", {"cutover:liveColor": "green", "cutover:greenVersion": "2.0.0"})
    record_command = run.named(COMMAND, "cutover-switch-record")
    switch = run.named(LIVE_COLOUR, "cutover-switch")
    (ledger,) = [v for v in run.of_type(VOLUME) if v.name == "cutover-dev-ledger"]
    (state,) = [i for i in run.of_type(IMAGE) if i.inputs["imageName"] == "cutover-state:1"]
    assert {switch.urn, ledger.urn, state.urn} <= set(record_command.dependencies)
    # The CLI's own writer appends it (chained, numbered, on the engine's clock), to the CLI's volume.
    assert record_command.inputs["create"] == 'docker run --rm --network none -v cutover-dev-ledger:/ledger cutover-state:1 cutover-ledger append "$RECORD"'
    assert record_command.inputs["environment"]["DOCKER_HOST"] == run.config["docker:host"]
    record = json.loads(record_command.inputs["environment"]["RECORD"])
    green_image = next(i for i in run.of_type(IMAGE) if i.inputs["imageName"] == "cutover-demo:2.0.0")
    assert (record["to_version"], record["artefact"], record["actor"]) == ("2.0.0", green_image.state["repoDigest"], "pulumi up")


def test_rollback_is_the_same_flip_in_reverse():
    there = run_program("dev", {"cutover:liveColor": "green"})
    back = run_program("dev", {"cutover:liveColor": "blue"})
    original = run_program("dev")
    assert _inputs_by_resource(back) == _inputs_by_resource(original)
    assert there.outputs["live_colour"] == "green" and back.outputs["live_colour"] == "blue"

