"""The simulator's edge to a swarm's manager: ServiceSpec (stacks/swarm_topology.py) -> the Docker
SDK's services API, and back (tasks per node, their state and health).

``service_kwargs`` is pure: the same ServiceSpec, field by field, that components/swarm_service.py
gives pulumi-docker, as keyword arguments of ``client.services.create``/``Service.update``. The
rest talks to the manager: configs, overlay networks, create / update-in-place (only when the
spec's fingerprint label changed), waiting with deadlines, listing tasks, removing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import docker
import docker.errors
import docker.types

from simulator.errors import CutoverError
from stacks.ownership import SIMULATOR, owner_labels
from stacks.swarm_topology import (
    RESTART_CONDITION,
    RESTART_DELAY_S,
    UPDATE_MONITOR_S,
    UPDATE_PARALLELISM,
    NetworkSpec,
    ServiceSpec,
)
from stacks.topology import secret_value

SECOND_NS = 1_000_000_000
FINGERPRINT_LABEL = "cutover.fingerprint"
# As components/swarm_service.py: no task of an update may fail before swarm rolls it back.
MAX_FAILURE_RATIO = 0
# Swarm's tmpfs takes a mode but no owner (as in the Pulumi component): sticky, world-writable.
TMPFS_MODE = 0o1777
POLL_S = 0.5


def service_kwargs(s: ServiceSpec, secrets: Mapping[str, str], network_ids: Mapping[str, str], config_ids: Mapping[str, str]) -> dict:
    """Keyword arguments for ``client.services.create(**kwargs)`` that reproduce ``s`` (pure).

    ``secrets`` maps a secret's name to its value (the database password), ``network_ids`` a
    network's name to its ID (the service joins the first, with its aliases), ``config_ids`` a
    config's name to its ID.
    """
    c = s.container
    env = {**dict(c.env), **{variable: secret_value(template, secrets[name]) for variable, name, template in c.secret_env}}
    health = c.healthcheck
    rollout = dict(parallelism=UPDATE_PARALLELISM, order=s.update_order, monitor=UPDATE_MONITOR_S * SECOND_NS, max_failure_ratio=MAX_FAILURE_RATIO)
    kwargs = {
        "image": c.image,
        "name": s.name,
        "hostname": c.hostname,
        "env": [f"{k}={v}" for k, v in sorted(env.items())],
        # Constant per service, like the Pulumi component's (a container label is replace-on-change there).
        "container_labels": dict(s.container_labels),
        # Service labels may change in place: the version and the fingerprint live here.
        "labels": owner_labels(s.labels_with_fingerprint(), SIMULATOR),
        "healthcheck": docker.types.Healthcheck(
            test=list(health.test), interval=health.interval_s * SECOND_NS, timeout=health.timeout_s * SECOND_NS,
            retries=health.retries, start_period=health.start_period_s * SECOND_NS,
        ) if health else None,
        "stop_signal": c.stop_signal,
        # The app's drain budget: swarm sends stop_signal, waits this long, then kills.
        "stop_grace_period": c.stop_timeout_s * SECOND_NS,
        "read_only": c.read_only,
        "cap_drop": list(c.cap_drop),
        "cap_add": list(c.cap_add),
        "mounts": [
            *(docker.types.Mount(target=v.container_path, source=v.volume, type="volume") for v in c.volumes),
            *(docker.types.Mount(target=path, source=None, type="tmpfs", tmpfs_mode=TMPFS_MODE) for path, _ in c.tmpfs),
        ],
        "configs": [
            docker.types.ConfigReference(config_ids[f.name], f.name, filename=f.path, uid=f.uid, gid=f.gid, mode=f.mode) for f in s.configs
        ],
        # The stack's overlay (with the service's aliases), then its other networks (the proxy: control).
        "networks": [
            docker.types.NetworkAttachmentConfig(target=network_ids[next(iter(network_ids))], aliases=list(s.aliases)),
            *(docker.types.NetworkAttachmentConfig(target=network_ids[name], aliases=[]) for name in s.extra_networks),
        ],
        "constraints": list(s.constraints),
        "preferences": [_preference(p) for p in s.prefs],
        "restart_policy": docker.types.RestartPolicy(condition=RESTART_CONDITION, delay=RESTART_DELAY_S * SECOND_NS),
        "mode": docker.types.ServiceMode("global") if s.replicas is None else docker.types.ServiceMode("replicated", s.replicas),
        "update_config": docker.types.UpdateConfig(failure_action="rollback", **rollout),
        "rollback_config": docker.types.RollbackConfig(failure_action="pause", **rollout),
        # DNS round robin, no VIP (no IPVS needed); ports on the node that runs the task (host mode).
        "endpoint_spec": docker.types.EndpointSpec(mode=s.endpoint_mode, ports={p.published: (p.target, "tcp", p.mode) for p in s.ports}),
    }
    if c.user:
        kwargs["user"] = c.user
    if c.command:
        kwargs["args"] = list(c.command)
    return kwargs


def _preference(text: str) -> tuple[str, str]:
    """``spread=node.id`` -> ("spread", "node.id"), the SDK's placement preference."""
    strategy, _, descriptor = text.partition("=")
    return (strategy, descriptor)


@dataclass(frozen=True)
class TaskView:
    """One task of a service as the manager lists it (and its container's health, from its node)."""

    service: str
    task: str  # the task's ID
    container: str | None  # its container's ID on its node
    slot: int | None
    node: str  # the node's hostname
    state: str  # swarm's: new ... starting, running, failed, shutdown
    desired: str
    image: str
    version: str | None  # the service label cutover.version the task was made from (None: unknown)
    health: str | None  # healthy, unhealthy, starting, none (no check) or None (node not asked)


class SwarmDriver:
    """One stack's services on a swarm's manager. ``node_engine(hostname)`` gives a client for a
    node's own engine (for container health), or None when the node cannot be reached."""

    def __init__(self, manager: docker.DockerClient, say: Callable[[str], None] = print,
                 node_engine: Callable[[str], docker.DockerClient | None] = lambda hostname: None) -> None:
        self.client = manager
        self.say = say
        self.node_engine = node_engine

    # -- networks and configs -------------------------------------------------------------------

    def ensure_network(self, network: NetworkSpec) -> tuple[str, bool]:
        """The network's ID, and whether it was created now."""
        found = self.client.networks.list(names=[network.name], filters={"driver": "overlay"})
        found = [n for n in found if n.name == network.name]
        if found:
            return found[0].id, False
        created = self.client.networks.create(
            network.name, driver="overlay", attachable=network.attachable, scope="swarm",
            # Docker's overlay option: IPsec between the nodes for this network's traffic.
            options={"encrypted": ""} if network.encrypted else None,
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=network.subnet)]) if network.subnet else None,
            labels=owner_labels(network.labels, SIMULATOR),
        )
        return created.id, True

    def ensure_config(self, name: str, content: str, labels: Mapping[str, str]) -> tuple[str, bool]:
        """The config's ID (its name carries its content's digest: same name, same content)."""
        found = [c for c in self.client.configs.list(filters={"name": name}) if c.name == name]
        if found:
            return found[0].id, False
        created = self.client.configs.create(name=name, data=content.encode(), labels=owner_labels(labels, SIMULATOR))
        return created.id, True

    def remove_configs(self, stack: str, keep: set[str] = frozenset(), strict: bool = False) -> list[str]:
        """Remove the stack's configs but ``keep``; one still mounted by a task is left for the
        next run, unless ``strict`` (then the engine's refusal is raised)."""
        removed = []
        for config in self.client.configs.list(filters={"label": f"cutover.stack={stack}"}):
            if config.name not in keep:
                try:
                    config.remove()
                    removed.append(config.name)
                except docker.errors.APIError:
                    if strict:
                        raise
        return removed

    # -- services -------------------------------------------------------------------------------

    def service(self, name: str):
        try:
            return self.client.services.get(name)
        except docker.errors.NotFound:
            return None

    def stack_services(self, stack: str) -> list:
        return self.client.services.list(filters={"label": f"cutover.stack={stack}"})

    def apply(self, s: ServiceSpec, kwargs: dict) -> str:
        """Create the service, or update it in place when its fingerprint changed; returns
        "created", "updated" or "unchanged"."""
        current = self.service(s.name)
        if current is None:
            self.client.services.create(**kwargs)
            return "created"
        if (current.attrs["Spec"].get("Labels") or {}).get(FINGERPRINT_LABEL) == s.fingerprint():
            return "unchanged"
        # Everything is given: nothing of the old spec survives by omission.
        current.update(**kwargs)
        return "updated"

    def scale(self, name: str, replicas: int) -> None:
        service = self.service(name)
        if service is None:
            raise CutoverError(f"service {name} does not exist; run 'cutover up' first.")
        service.scale(replicas)

    def version_index(self, name: str) -> int | None:
        """The service's version index: it moves on every change to the service's spec."""
        service = self.service(name)
        return None if service is None else service.attrs["Version"]["Index"]

    def remove(self, name: str) -> bool:
        service = self.service(name)
        if service is None:
            return False
        service.remove()
        return True

    # -- tasks ----------------------------------------------------------------------------------

    def tasks(self, name: str, with_health: bool = True) -> list[TaskView]:
        """The service's tasks that should run, with their node, state, version and health."""
        service = self.service(name)
        if service is None:
            return []
        hostnames = {n.id: n.attrs["Description"]["Hostname"] for n in self.client.nodes.list()}
        views = []
        for task in service.tasks(filters={"desired-state": "running"}):
            spec = task["Spec"]["ContainerSpec"]
            container_id = (task["Status"].get("ContainerStatus") or {}).get("ContainerID")
            node = hostnames.get(task.get("NodeID"), task.get("NodeID") or "-")
            health = self._health(node, container_id) if with_health and task["Status"]["State"] == "running" else None
            views.append(TaskView(name, task["ID"], container_id, task.get("Slot"), node, task["Status"]["State"], task["DesiredState"], spec["Image"],
                                  _env_value(spec.get("Env") or [], "CUTOVER_VERSION"), health))
        return sorted(views, key=lambda t: (t.slot or 0, t.node))

    def _health(self, node: str, container_id: str | None) -> str | None:
        engine = self.node_engine(node)
        if engine is None or not container_id:
            return None
        try:
            state = engine.api.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return None
        return (state.get("Health") or {}).get("Status", "none")

    def needs_change(self, s: ServiceSpec) -> bool:
        """Whether ``apply(s)`` would create or update the service."""
        current = self.service(s.name)
        return current is None or (current.attrs["Spec"].get("Labels") or {}).get(FINGERPRINT_LABEL) != s.fingerprint()

    def converged(self, name: str) -> tuple[bool, str]:
        """Whether service ``name`` runs as many tasks as it should (its replicas; for a global
        service, one per ready node its constraints admit), every one running, healthy and made
        from the service's current spec; and what is still missing, in words."""
        service = self.service(name)
        if service is None:
            return False, "no service"
        spec = service.attrs["Spec"]
        update = service.attrs.get("UpdateStatus") or {}
        if update.get("State") in ("rollback_started", "rollback_completed", "rollback_paused", "paused"):
            raise CutoverError(f"swarm gave up the update of {name} ({update['State']}: {update.get('Message', '')}); see 'docker service ps {name}' on the manager.")
        mode = spec["Mode"]
        want = mode["Replicated"].get("Replicas", 1) if "Replicated" in mode else self._eligible_nodes(spec["TaskTemplate"].get("Placement") or {})
        wanted = spec["TaskTemplate"]["ContainerSpec"]
        raw = [t for t in service.tasks(filters={"desired-state": "running"})]
        current = {t["ID"] for t in raw if _same_container_spec(t["Spec"]["ContainerSpec"], wanted)}
        views = {t.task: t for t in self.tasks(name)}
        good = [v for task_id, v in views.items() if task_id in current and v.state == "running" and v.health in (None, "healthy", "none")]
        if len(good) == want and len(raw) == want:
            return True, ""
        return False, f"{len(good)}/{want} running and healthy at the current spec ({len(raw)} tasks, {len(raw) - len(current)} of an older spec)"

    def _eligible_nodes(self, placement: dict) -> int:
        """How many ready, active nodes a global service's constraints admit (label constraints)."""
        constraints = [c.replace(" ", "") for c in placement.get("Constraints") or []]
        wanted = dict(c.removeprefix("node.labels.").split("==", 1) for c in constraints if c.startswith("node.labels."))
        count = 0
        for node in self.client.nodes.list():
            labels = node.attrs["Spec"].get("Labels") or {}
            if node.attrs["Status"]["State"] == "ready" and node.attrs["Spec"].get("Availability") == "active" and all(labels.get(k) == v for k, v in wanted.items()):
                count += 1
        return count

    def wait_converged(self, name: str, deadline_s: float) -> float:
        """Wait until ``converged``; returns the seconds it took (CutoverError past the deadline)."""
        began = time.monotonic()
        last = [""]

        def done() -> bool:
            ok, missing = self.converged(name)
            last[0] = missing
            return ok

        _wait(done, deadline_s, lambda: f"{name}: {last[0]}")
        return round(time.monotonic() - began, 2)


def _env_value(env: list[str], variable: str) -> str | None:
    for entry in env:
        name, _, value = entry.partition("=")
        if name == variable:
            return value
    return None


def _same_container_spec(task: dict, service: dict) -> bool:
    """A task made from the service's current container spec (swarm copies it into each task)."""
    return task == service


def _wait(condition: Callable[[], bool], deadline_s: float, what: Callable[[], str]) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise CutoverError(f"not reached within {deadline_s:g} s: {what()}.")
        time.sleep(POLL_S)

