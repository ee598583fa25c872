"""Which colour a swarm stack has live: the one every proxy task routes to (simulator/swarm_ops.py)."""

from __future__ import annotations

import pytest

from simulator.errors import CutoverError
from simulator.operations import PoolStatus
from simulator.swarm_driver import TaskView
from simulator.swarm_ops import ServiceStatus, SwarmStatus, agreed_live
from simulator.swarm_switch import ProxyState


def state(node: str, live: str | None, error: str | None = None) -> ProxyState:
    return ProxyState(f"10.240.1.{len(node)}", node, live, {"blue": 2, "green": 2}, {"blue": 2, "green": 2}, error)


def test_every_task_on_one_colour_is_that_colour():
    assert agreed_live("c", [state("worker-1", "green"), state("worker-2", "green")]) == "green"


def test_tasks_that_disagree_are_named_with_their_colours_in_one_sentence():
    with pytest.raises(CutoverError) as caught:
        agreed_live("c", [state("worker-1", "green"), state("worker-2", "blue")])
    message = str(caught.value)
    assert "worker-1: green, worker-2: blue" in message and "cutover switch --to COLOUR" in message and "\n" not in message


@pytest.mark.parametrize("silent", [state("worker-2", None, "its runtime API did not answer on 10.240.1.8:9999"), state("worker-2", None)])
def test_a_task_that_does_not_say_its_colour_is_named(silent):
    with pytest.raises(CutoverError, match="proxy tasks on worker-2 .* did not say which colour is live"):
        agreed_live("c", [state("worker-1", "blue"), silent])


def test_no_proxy_task_at_all_is_an_error_not_a_colour():
    with pytest.raises(CutoverError, match="no proxy task"):
        agreed_live("c", [])


def test_the_pools_count_healthy_and_running_tasks_across_nodes():
    tasks = [TaskView("cutover-c-green", f"t{i}", None, i, node, st, "running", "sha256:x", "2.0.0", h)
             for i, (node, st, h) in enumerate([("w1", "running", "healthy"), ("w2", "running", "starting"), ("w2", "running", "healthy")])]
    status = SwarmStatus("c", "green", {"green": ServiceStatus("cutover-c-green", "2.0.0", 3, 10, tasks)})
    assert status.pools == {"green": PoolStatus("2.0.0", 2, 3), "blue": PoolStatus(None, 0, 0)}
