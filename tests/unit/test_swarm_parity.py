"""Both executors make the same swarm services: the Pulumi program's docker.Service inputs (under
Pulumi's mocks) and the services API request the simulator sends (simulator/swarm_driver.py, the
SDK's own request body, no engine) agree field by field once both are written the same way (Go
durations vs nanoseconds, camelCase vs the API's names). Only the owner label differs."""

from __future__ import annotations

import re

import pytest
from docker.models.services import _get_create_service_kwargs
from pulumi_harness import SWARM_SERVICE, is_secret, run_program, unwrap_secret

from simulator.swarm_driver import service_kwargs
from stacks.spec import load_stack
from stacks.swarm_topology import proxy_configs, stack_networks, stack_services
from stacks.topology import DB_PASSWORD_SECRET

OWNER = "cutover.managed-by"
UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def seconds(go: str) -> float:
    """A Go duration ("1m0s", "10s", "500ms") in seconds."""
    parts = re.findall(r"([0-9.]+)(ms|h|m|s)", go)
    assert "".join(n + u for n, u in parts) == go, go
    return sum(float(n) * UNITS[u] for n, u in parts)


def _plain(value):
    return unwrap_secret(value) if is_secret(value) else value


def from_pulumi(inputs: dict) -> dict:
    task = _plain(inputs["taskSpec"])
    c = task["containerSpec"]
    mode = inputs["mode"]
    rollout = lambda u: (u["order"], int(u["parallelism"]), u["failureAction"], seconds(u["monitor"]), float(u["maxFailureRatio"]))  # noqa: E731
    h = c.get("healthcheck")
    return {
        "name": inputs["name"],
        "mode": ("global",) if mode.get("global") else ("replicated", int(mode["replicated"]["replicas"])),
        "endpoint": (inputs["endpointSpec"]["mode"], sorted((int(p["publishedPort"]), int(p["targetPort"]), p["publishMode"]) for p in inputs["endpointSpec"].get("ports") or [])),
        "constraints": task["placement"]["constraints"],
        "prefs": task["placement"]["prefs"],
        "update": rollout(inputs["updateConfig"]),
        "rollback": rollout(inputs["rollbackConfig"]),
        "restart": (task["restartPolicy"]["condition"], seconds(task["restartPolicy"]["delay"])),
        "aliases": [n["aliases"] for n in task["networksAdvanceds"]],
        "labels": {entry["label"]: entry["value"] for entry in inputs["labels"] if entry["label"] != OWNER},
        "image": c["image"], "hostname": c["hostname"], "env": dict(_plain(c["env"])),
        "container_labels": {entry["label"]: entry["value"] for entry in c["labels"]},
        "user": c.get("user"), "read_only": c["readOnly"], "stop": (c["stopSignal"], seconds(c["stopGracePeriod"])),
        "caps": (c["capDrops"], c["capAdds"]), "args": c.get("args") or [],
        "mounts": sorted((m["type"], m.get("source"), m["target"], int((m.get("tmpfsOptions") or {}).get("mode", 0))) for m in c["mounts"]),
        "health": (h["tests"], seconds(h["interval"]), seconds(h["timeout"]), int(h["retries"]), seconds(h["startPeriod"])) if h else None,
        "configs": [(f["configName"], f["fileName"], f["fileUid"], f["fileGid"], int(f["fileMode"])) for f in c["configs"]],
    }


def from_simulator(body: dict) -> dict:
    task = body["task_template"]
    c = task["ContainerSpec"]
    ns = 1e9
    mode = body["mode"]
    rollout = lambda u: (u["Order"], u["Parallelism"], u["FailureAction"], u["Monitor"] / ns, float(u["MaxFailureRatio"]))  # noqa: E731
    h = c.get("Healthcheck")
    return {
        "name": body["name"],
        "mode": ("global",) if "global" in mode else ("replicated", mode["replicated"]["Replicas"]),
        "endpoint": (body["endpoint_spec"]["Mode"], sorted((p["PublishedPort"], p["TargetPort"], p["PublishMode"]) for p in body["endpoint_spec"].get("Ports") or [])),
        "constraints": task["Placement"].get("Constraints") or [],
        "prefs": [f"spread={p['Spread']['SpreadDescriptor']}" for p in task["Placement"].get("Preferences") or []],
        "update": rollout(body["update_config"]),
        "rollback": rollout(body["rollback_config"]),
        "restart": (task["RestartPolicy"]["Condition"], task["RestartPolicy"]["Delay"] / ns),
        "aliases": [n["Aliases"] for n in task["Networks"]],
        "labels": {k: v for k, v in body["labels"].items() if k != OWNER},
        "image": c["Image"], "hostname": c["Hostname"], "env": dict(e.split("=", 1) for e in c.get("Env") or []),
        "container_labels": c["Labels"],
        "user": c.get("User"), "read_only": c["ReadOnly"], "stop": (c["StopSignal"], c["StopGracePeriod"] / ns),
        "caps": (c["CapabilityDrop"], c.get("CapabilityAdd") or []), "args": c.get("Args") or [],
        "mounts": sorted((m["Type"], m.get("Source"), m["Target"], (m.get("TmpfsOptions") or {}).get("Mode", 0)) for m in c["Mounts"]),
        "health": (h["Test"], h["Interval"] / ns, h["Timeout"] / ns, h["Retries"], h["StartPeriod"] / ns) if h else None,
        "configs": [(f["ConfigName"], f["File"]["Name"], f["File"]["UID"], f["File"]["GID"], f["File"]["Mode"]) for f in c.get("Configs") or []],
    }


@pytest.fixture(scope="module")
def both():
    run = run_program("cluster")
    (password,) = run.secret_values
    spec = load_stack("cluster")
    networks = {n.name: f"{n.name}-id" for n in stack_networks(spec)}
    configs = {f.name: f"{f.name}-id" for f in proxy_configs(spec)}
    simulator = {}
    for s in stack_services(spec):
        kwargs = service_kwargs(s, {DB_PASSWORD_SECRET: password}, networks, configs)
        simulator[s.name] = from_simulator(_get_create_service_kwargs("create", dict(kwargs)))
    pulumi = {r.name: from_pulumi(r.inputs) for r in run.of_type(SWARM_SERVICE)}
    return pulumi, simulator


def test_the_same_services(both):
    pulumi, simulator = both
    assert set(pulumi) == set(simulator) == {f"cutover-cluster-{r}" for r in ("db", "proxy", "blue", "green")}


@pytest.mark.parametrize("role", ["db", "proxy", "blue", "green"])
def test_each_service_field_by_field(both, role):
    pulumi, simulator = both
    name = f"cutover-cluster-{role}"
    for field in pulumi[name]:
        assert pulumi[name][field] == simulator[name][field], f"{name}: {field}"


def test_the_comparison_can_fail(both):
    """Proof the normal forms see a difference: one field moved on the simulator's side."""
    pulumi, simulator = both
    moved = dict(simulator["cutover-cluster-blue"], stop=("SIGKILL", 1.0))
    assert moved != pulumi["cutover-cluster-blue"]
