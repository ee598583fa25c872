"""A switch changes one thing: the switch command's environment. No container is replaced.

pulumi-docker replaces a container when any of its inputs change, so "identical inputs for every
container" is exactly "the switch neither replaces nor restarts the proxy or an app container".
"""

from __future__ import annotations

import pytest
from pulumi_harness import COMMAND, flatten, run_program


def _inputs_by_resource(run) -> dict[tuple[str, str], dict]:
    return {(r.type, r.name): flatten(r.inputs) for r in run.resources}


@pytest.mark.parametrize("stack", ["dev", "ci", "prod"])
def test_switching_colour_changes_only_the_switch_environment(stack):
    blue = _inputs_by_resource(run_program(stack, {"cutover:liveColor": "blue"}))
    green = _inputs_by_resource(run_program(stack, {"cutover:liveColor": "green"}))
    assert blue.keys() == green.keys()

    differences = {
        (resource, path)
        for resource in blue
        for path in set(blue[resource]) | set(green[resource])
        if blue[resource].get(path) != green[resource].get(path)
    }
    assert differences == {((COMMAND, "cutover-switch"), "environment.LIVE_COLOR")}
    assert blue[(COMMAND, "cutover-switch")]["environment.LIVE_COLOR"] == "blue"
    assert green[(COMMAND, "cutover-switch")]["environment.LIVE_COLOR"] == "green"


def test_rollback_is_the_same_flip_in_reverse():
    there = run_program("dev", {"cutover:liveColor": "green"})
    back = run_program("dev", {"cutover:liveColor": "blue"})
    original = run_program("dev")
    assert _inputs_by_resource(back) == _inputs_by_resource(original)
    assert there.outputs["live_colour"] == "green" and back.outputs["live_colour"] == "blue"

