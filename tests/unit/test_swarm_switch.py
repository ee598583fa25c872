"""The pure half of the switch on a swarm (simulator/swarm_switch.py): which proxy tasks a switch
must reach, the fleet's command line, its JSON read into a report (and its errors into Refused or
CutoverError), the spread; and the control network in the swarm topology."""

from __future__ import annotations

import dataclasses
import json

import pytest

from simulator.errors import CutoverError, Refused
from simulator.swarm_switch import ProxiesInFlux, ProxyTask, expected_proxy_tasks, fleet_answer, fleet_command, flip_report, proxy_states
from stacks.spec import load_stack
from stacks.swarm_topology import control_network_name, control_subnet, proxy_service, stack_networks, stack_services

CONTROL = "cutover-cluster-control"


def _task(node: str, address: str | None, state: str = "running", desired: str = "running", network: str = CONTROL) -> dict:
    attachments = [{"Network": {"Spec": {"Name": "cutover-cluster"}}, "Addresses": ["10.0.1.9/24"]}]
    if address:
        attachments.append({"Network": {"Spec": {"Name": network}}, "Addresses": [f"{address}/24"]})
    return {"ID": f"task-on-{node}-xxxxxxxx", "NodeID": node, "Status": {"State": state}, "DesiredState": desired, "NetworksAttachments": attachments}


NAMES = {"n1": "worker-1", "n2": "worker-2", "m": "manager"}


def test_expected_tasks_are_the_running_ones_on_traffic_nodes_with_their_control_address_sorted_by_node():
    tasks = [
        _task("n2", "10.240.5.4"),
        _task("n1", "10.240.5.3"),
        _task("n1", "10.240.5.9", state="shutdown", desired="shutdown"),  # the task it replaced
        _task("n2", "10.240.5.8", state="starting"),  # not serving yet: not expected, DNS must agree
        _task("m", "10.240.5.2"),  # on a node without the traffic label (relabelled away)
    ]
    assert expected_proxy_tasks(tasks, NAMES, {"n1", "n2"}, CONTROL) == [ProxyTask("10.240.5.3", "worker-1"), ProxyTask("10.240.5.4", "worker-2")]


def test_a_running_proxy_task_without_a_control_address_is_an_error_naming_its_node():
    with pytest.raises(CutoverError, match="on node worker-1 has no address on cutover-cluster-control"):
        expected_proxy_tasks([_task("n1", None)], NAMES, {"n1"}, CONTROL)


def test_the_fleet_command_lines():
    proxies = [ProxyTask("10.240.5.3", "worker-1"), ProxyTask("10.240.5.4", "worker-2")]
    assert fleet_command("flip", "tasks.p", proxies, "green", 2) == ["flip", "--min-up", "2", "green", "tasks.p", "10.240.5.3=worker-1", "10.240.5.4=worker-2"]
    assert fleet_command("read", "tasks.p", proxies) == ["read", "tasks.p", "10.240.5.3=worker-1", "10.240.5.4=worker-2"]
    with pytest.raises(ValueError):
        fleet_command("flip", "tasks.p", proxies, "red")


def _flipped(address: str, at: int) -> dict:
    return {"address": address, "node": f"node-{address[-1]}", "before": "blue", "after": "green", "flipped_at_ms": at}


def test_a_flip_report_and_its_spread():
    answer = fleet_answer("some noise\n" + json.dumps({"ok": True, "error": None, "colour": "green", "proxies": [_flipped("10.0.0.3", 1000), _flipped("10.0.0.4", 1042)]}))
    report = flip_report(answer)
    assert report.colour == "green" and report.spread_ms == 42 and [p.node for p in report.proxies] == ["node-3", "node-4"]
    assert json.loads(report.as_json())["spread_ms"] == 42


def test_a_failure_before_any_flip_is_refused_and_after_one_is_an_error():
    with pytest.raises(Refused, match="sees the colour down"):
        flip_report({"ok": False, "error": "proxy 1 sees the colour down", "proxies": []})
    with pytest.raises(CutoverError, match="flipped back") as failed:
        flip_report({"ok": False, "error": "proxy 2 refused; flipped back to their colour: 1, 2.", "proxies": [_flipped("10.0.0.3", 1)]})
    assert not isinstance(failed.value, Refused)


def test_tasks_in_flux_are_their_own_refusal_so_a_read_or_flip_can_wait_for_them_to_settle():
    flux = {"ok": False, "error": "the manager expects proxy tasks at 10.240.1.2 but tasks.p answers 10.240.1.2 10.240.1.9 on the control network: a task is starting, stopping or unreachable; try again when they agree.", "proxies": []}
    for read in (proxy_states, flip_report):
        with pytest.raises(ProxiesInFlux):
            read(flux)
    other = {"ok": False, "error": "proxy task 10.240.1.2 on node w1 refuses green: down", "proxies": []}
    for read in (proxy_states, flip_report):
        with pytest.raises(Refused) as caught:
            read(other)
        assert not isinstance(caught.value, ProxiesInFlux)


def test_a_container_that_printed_no_report_is_one_sentence():
    with pytest.raises(CutoverError, match="printed no report: exec failed"):
        fleet_answer("exec failed\n")
    with pytest.raises(CutoverError, match="not JSON"):
        fleet_answer("{not json\n")


def test_read_states_keep_an_unanswering_proxy_with_its_error():
    answer = {"ok": True, "proxies": [
        {"address": "10.0.0.3", "node": "w1", "live": "blue", "up": {"blue": 2, "green": 0}, "servers": {"blue": 2, "green": 1}, "error": None},
        {"address": "10.0.0.4", "node": "w2", "live": None, "up": {}, "servers": {}, "error": "its runtime API did not answer on 10.0.0.4:9999"},
    ]}
    first, second = proxy_states(answer)
    assert first.live == "blue" and first.up["blue"] == 2 and second.error and second.live is None


def test_the_control_network_is_the_proxys_only_and_its_subnet_is_fixed_by_the_stack():
    spec = load_stack("cluster")
    app, control = stack_networks(spec)
    assert control.name == control_network_name(spec) == "cutover-cluster-control" and control.attachable
    # Encrypted unless the stack says otherwise (the local swarm's cluster stack does: docs).
    assert not control.encrypted and stack_networks(dataclasses.replace(spec, control_encrypted=True))[1].encrypted
    assert not app.encrypted and app.subnet is None
    assert control.subnet == control_subnet(spec) and control.subnet.startswith("10.240.") and control.subnet.endswith(".0/24")
    on_control = [s.name for s in stack_services(spec) if control.name in s.extra_networks]
    assert on_control == ["cutover-cluster-proxy"]
    assert ("CUTOVER_CONTROL_SUBNET", control.subnet) in proxy_service(spec).container.env
