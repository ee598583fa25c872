"""The stack operations on a swarm stack (``cutover:engine: swarm``): up, deploy, status, scale, down.

The services are stacks/swarm_topology.py's, the same the Pulumi program declares; this module
decides the order and waits, simulator/swarm_driver.py talks to the manager. Images are built on
this machine (as the single-engine simulator builds them) and put on every node of the local
swarm (``Cluster.distribute``: by digest from the artefact store when it runs, else streamed);
services name them by image ID, so a node never tries to pull a tag. The ledger and its lock are
the single engine's (simulator/ledger.py) on the manager's engine.

The switch and rollback flip every proxy task through one container on the stack's control
network (simulator/swarm_switch.py, images/proxy/proxy-fleet): all or back. The live colour is what
the proxies route to (read the same way); before the proxy service exists, the stack file's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable
from urllib.parse import urlparse

import docker
import docker.errors

from simulator.cluster import API_PORT_LABEL, CLUSTER_LABEL, ROLE_LABEL, Cluster
from simulator.docker_driver import DockerDriver, connect
from simulator.errors import CutoverError, PreflightRefused, Refused
from simulator.images import ImageBuilder, short_id
from simulator.ledger import Ledger, changing
from simulator.operations import PoolStatus, StepClock, SwitchResult, _check_version
from simulator.proxy_api import ProxyAPI
from simulator.schema import schema_for
from simulator.secrets_store import SecretStore
from simulator.swarm_driver import SwarmDriver, TaskView, service_kwargs
from simulator.swarm_switch import ROLE_LABEL as FLEET_ROLE_LABEL
from simulator.swarm_switch import FLEET_ROLE, ProxiesInFlux, ProxyState, fleet_container_prefix, flip_all, read_all
from simulator.switchback import plan_rollback
from stacks.ownership import MANAGED_BY, SIMULATOR, refusal
from stacks.spec import COLOURS, StackSpec, load_stack, other_colour
from stacks.swarm_topology import ServiceSpec, proxy_configs, service_name, stack_networks, stack_services
from stacks.topology import DB_PASSWORD_SECRET, database_container

# From asking swarm to every task running and healthy at the new spec: a rolling start-first update
# of a pool goes one task at a time, each watched UPDATE_MONITOR_S (10 s).
CONVERGE_DEADLINE_S = 180
# A proxy task starting or restarting (the manager and the control network's DNS disagree on the
# set) settles within its start period; reads and flips wait that long before giving up.
PROXIES_SETTLE_S = 60
# A removed service's tasks stop (their stop grace included) before its network and volumes can go.
REMOVE_DEADLINE_S = 90


@dataclass
class SwarmUpResult:
    actions: list[str]
    steps: dict[str, float] = field(default_factory=dict)


@dataclass
class SwarmDeployResult:
    colour: str
    version: str
    image: str
    migrations: list[str]
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)


@dataclass
class ServiceStatus:
    service: str
    version: str | None
    replicas: int | None  # None: global
    version_index: int
    tasks: list[TaskView]

    def per_node(self) -> dict[str, dict[str, int]]:
        """{node: {"running": n, "healthy": n}}: what runs where."""
        nodes: dict[str, dict[str, int]] = {}
        for t in self.tasks:
            row = nodes.setdefault(t.node, {"running": 0, "healthy": 0})
            row["running"] += t.state == "running"
            row["healthy"] += t.state == "running" and t.health in ("healthy", "none", None)
        return nodes


@dataclass
class SwarmStatus:
    stack: str
    live: str
    services: dict[str, ServiceStatus]  # blue, green, proxy, db (the ones that exist)
    proxy_colours: dict[str, dict[str, str]] = field(default_factory=dict)  # {node: {"live": c, "preview": c}}

    @property
    def pools(self) -> dict[str, PoolStatus]:
        """Per colour, as one engine reports it (what `cutover rehearse` reads): the version its
        service runs, its healthy and running tasks across the nodes."""
        found = {}
        for colour in COLOURS:
            service = self.services.get(colour)
            nodes = service.per_node().values() if service else []
            found[colour] = PoolStatus(service.version if service else None, sum(n["healthy"] for n in nodes), sum(n["running"] for n in nodes))
        return found

    def as_dict(self) -> dict:
        return {
            "stack": self.stack, "live": self.live, "proxy_colours": self.proxy_colours,
            "services": {role: {"service": s.service, "version": s.version, "replicas": s.replicas, "version_index": s.version_index,
                                "nodes": s.per_node(), "tasks": [asdict(t) for t in s.tasks]} for role, s in self.services.items()},
        }


@dataclass
class ScaleResult:
    colour: str
    replicas: int
    seconds: float
    proxy_index_before: int | None
    proxy_index_after: int | None


@dataclass
class SwarmSwitchResult(SwitchResult):
    spread_ms: int = 0  # between the first proxy task's flip and the last's
    proxies: list[dict] = field(default_factory=list)  # each task: address, node, before, after, flipped_at_ms
    tasks_up: dict[str, dict[str, int]] = field(default_factory=dict)  # the new colour's healthy tasks per node


class FleetCounters:
    """Every proxy task's frontend counters, summed (what `cutover rehearse` reads of "the proxy")."""

    def __init__(self, proxies: Callable[[], dict[str, ProxyAPI]]) -> None:
        self._proxies = proxies

    def frontend_counters(self, frontend: str) -> dict[str, int]:
        total = {"connections": 0, "requests": 0}
        for proxy in self._proxies().values():
            for key, value in proxy.frontend_counters(frontend).items():
                total[key] += value
        return total


def agreed_live(stack: str, states: list[ProxyState]) -> str:
    """The one colour every proxy task routes to (pure). A task that did not answer, or tasks that
    disagree (a switch cut short), are an error naming them: 'cutover switch --to' settles it."""
    silent = [f"{s.node} ({s.error or 'no live colour'})" for s in states if s.error or s.live is None]
    if silent:
        raise CutoverError(f"stack {stack}'s proxy tasks on {', '.join(silent)} did not say which colour is live; check them with 'cutover status'.")
    lives = {s.live for s in states}
    if len(lives) != 1:
        each = ", ".join(f"{s.node}: {s.live}" for s in states) or "no proxy task"
        raise CutoverError(f"stack {stack}'s proxy tasks disagree on the live colour ({each}); 'cutover switch --to COLOUR' makes them agree.")
    return lives.pop()


def local_cluster(local: docker.DockerClient, docker_host: str) -> Cluster | None:
    """The local swarm (simulator/cluster.py) whose manager's engine is ``docker_host``, if any."""
    url = urlparse(docker_host)
    if url.scheme != "tcp" or url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        return None
    found = local.containers.list(all=True, filters={"label": [f"{ROLE_LABEL}=manager", f"{API_PORT_LABEL}={url.port}"]})
    return Cluster(local, found[0].labels[CLUSTER_LABEL]) if found else None


def pinned(s: ServiceSpec, image_id: str) -> ServiceSpec:
    """``s`` naming its image by ID: a tag could be moved, and a node asked for a tag tries a pull."""
    return replace(s, container=replace(s.container, image=image_id))


class SwarmSimulator:
    def __init__(self, spec: StackSpec, say: Callable[[str], None] = print) -> None:
        if not spec.is_swarm:  # a wiring bug: engines.py dispatches
            raise ValueError(f"stack {spec.stack} is not a swarm stack")
        self.spec = spec
        self.say = say
        self.manager = connect(spec.docker_host)
        self.local = connect()
        self.cluster = local_cluster(self.local, spec.docker_host)
        self._engines: dict[str, docker.DockerClient | None] = {}
        self.swarm = SwarmDriver(self.manager, say, self._node_engine)
        self.secrets = SecretStore(spec.stack, recover=self._recover_secret)
        self.builder = ImageBuilder(self.local, spec, say)
        # One-shot containers (the expand migration) run on the manager, attached to the overlay.
        self.containers = DockerDriver(self.manager, spec, self.secrets.get)
        self.schema = schema_for(self.containers)
        self._app_ids: dict[str, str] = {}
        self._infra_ids: dict[str, str] = {}
        self.schema.image_of = self._app_image
        self.ledger = Ledger(spec.stack, self.manager, self._state_image, say)
        # The proxy tasks as the last ledger snapshot read them (live_colour), for the switch it precedes.
        self._states_read: list[ProxyState] | None = None

    @classmethod
    def for_stack(cls, stack: str, say: Callable[[str], None] = print) -> "SwarmSimulator":
        return cls(load_stack(stack), say)

    # -- the edges of this machine and the nodes ------------------------------------------------

    def _node_engine(self, hostname: str) -> docker.DockerClient | None:
        if hostname not in self._engines:
            nodes = [n for n in self.cluster.existing_plan() if n.container == hostname] if self.cluster else []
            self._engines[hostname] = self.cluster.engine(nodes[0], timeout=10) if nodes else None
        return self._engines[hostname]

    def _on_nodes(self, ref: str) -> str:
        """Put the image ``ref`` of this machine on every node (skipped when each has its ID)."""
        image_id = self.local.images.get(ref).id
        if self.cluster is None:
            raise Refused(
                f"stack {self.spec.stack}'s manager {self.spec.docker_host} is not a local swarm of 'cutover cluster', and images reaching "
                f"the nodes of another swarm are not yet supported; use 'pulumi up --stack {self.spec.stack}' (docs/cluster.md)."
            )
        missing = [n.container for n in self.cluster.existing_plan() if not _has(self._node_engine(n.container), image_id)]
        if missing:
            shipped = self.cluster.distribute(ref)
            self.say(f"{ref} ({short_id(image_id)}) on every node by {shipped.via} in {shipped.total_s:.1f}s (lacking: {', '.join(missing)})")
        return image_id

    def _state_image(self) -> str:
        """The ledger's and lock's image, on the manager (and every node) before the ledger runs."""
        tag = self.builder.ensure_state()
        self._on_nodes(tag)
        return tag

    def _infra_image(self, role: str) -> str:
        """The proxy's or the database's image ID, built here once per command and on every node."""
        if role not in self._infra_ids:
            self._infra_ids[role] = self._on_nodes(self.builder.ensure_proxy() if role == "proxy" else self.builder.ensure_database())
        return self._infra_ids[role]

    def _app_image(self, version: str) -> str:
        """``version``'s artefact: built (or reused) here, on every node, by image ID."""
        if version not in self._app_ids:
            self._app_ids[version] = self._on_nodes(self.builder.ensure_app(version).tag)
        return self._app_ids[version]

    def _recover_secret(self, name: str) -> str | None:
        """A secret this state directory lacks, taken from the running database service's spec
        (a new password would not open a database volume created with the old one)."""
        service = self.swarm.service(service_name(self.spec, "db")) if name == DB_PASSWORD_SECRET else None
        env = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or [] if service else []
        variables = {variable for variable, secret, _ in database_container(self.spec).secret_env if secret == name}
        return next((value for variable, _, value in (e.partition("=") for e in env) if variable in variables), None)

    # -- reading ----------------------------------------------------------------------------------

    def refuse_foreign_stack(self) -> None:
        """A stack whose services Pulumi manages is refused before anything is changed."""
        owners = {s.name: (s.attrs["Spec"].get("Labels") or {}).get(MANAGED_BY) for s in self.swarm.stack_services(self.spec.stack)}
        message = refusal(self.spec.stack, owners, SIMULATOR)
        if message:
            raise CutoverError(message)

    def live_colour(self) -> str:
        """The colour every proxy task routes to; the stack file's before the proxy service exists.
        Proxies that disagree (a switch cut short) are an error naming them: 'cutover switch --to'
        settles it."""
        if self.swarm.service(service_name(self.spec, "proxy")) is None:
            return self.spec.live_colour
        self._states_read = self.proxy_states()
        return agreed_live(self.spec.stack, self._states_read)

    def proxy_states(self) -> list[ProxyState]:
        return self._when_proxies_settle(lambda: read_all(self.manager, self.spec, self._infra_image("proxy")))

    def _when_proxies_settle(self, fleet: Callable):
        """``fleet()`` (a read or a flip), again while a proxy task is starting or stopping (each
        try lists the manager's tasks anew), for PROXIES_SETTLE_S at most; then its refusal."""
        end = time.monotonic() + PROXIES_SETTLE_S
        while True:
            try:
                return fleet()
            except ProxiesInFlux as exc:
                if time.monotonic() >= end:
                    raise
                self.say(f"waiting for the proxy tasks to settle: {exc}")
                time.sleep(1)

    @property
    def proxy(self) -> FleetCounters:
        return FleetCounters(self.proxies)

    def repair_leftovers(self, operation) -> None:
        """A switch container a killed command left on the manager is removed (it holds nothing:
        the proxies' maps are the state, and a switch cut short is settled by 'switch --to')."""
        for container in self.manager.containers.list(all=True, filters={"label": [f"{FLEET_ROLE_LABEL}={FLEET_ROLE}"]}):
            if container.name.startswith(f"{fleet_container_prefix(self.spec)}-"):
                container.remove(force=True)
                self.say(f"removed {container.name}, left by an earlier command")

    def versions(self) -> dict[str, str]:
        """What each colour runs now (its service's label), else what the stack file says."""
        found = {}
        for colour in COLOURS:
            service = self.swarm.service(service_name(self.spec, colour))
            label = (service.attrs["Spec"].get("Labels") or {}).get("cutover.version") if service else None
            found[colour] = label or self.spec.version_of(colour)
        return found

    def services(self, versions: dict[str, str]) -> list[ServiceSpec]:
        """The stack's services as they should run, every image by ID (the ones it runs built and
        distributed first)."""
        images = {v: self._app_image(v) for v in sorted(set(versions.values()))}
        wanted = []
        for s in stack_services(self.spec, versions, images):
            if s.role in ("proxy", "database"):
                s = pinned(s, self._infra_image(s.role))
            wanted.append(s)
        return wanted

    def status(self) -> SwarmStatus:
        found = {}
        for role in (*COLOURS, "proxy", "db"):
            service = self.swarm.service(service_name(self.spec, role))
            if service is None:
                continue
            mode = service.attrs["Spec"]["Mode"]
            found[role] = ServiceStatus(
                service.name, (service.attrs["Spec"].get("Labels") or {}).get("cutover.version"),
                (mode.get("Replicated") or {}).get("Replicas") if "Replicated" in mode else None,
                service.attrs["Version"]["Index"], self.swarm.tasks(service.name),
            )
        colours = {node: proxy.colours() for node, proxy in sorted(self.proxies().items())}
        return SwarmStatus(self.spec.stack, self.live_colour(), found, colours)

    def proxies(self) -> dict[str, ProxyAPI]:
        """{node: its proxy task's runtime API}, through the node's engine (docker exec), for every
        running proxy task on a node this machine reaches."""
        found = {}
        for task in self.swarm.tasks(service_name(self.spec, "proxy"), with_health=False):
            engine = self._node_engine(task.node)
            if task.state == "running" and engine is not None and task.container:
                found[task.node] = ProxyAPI(engine.containers.get(task.container))
        return found

    def _stamp_versions(self) -> list[str]:
        """Each proxy's version map (stamped on every response) says what each colour runs."""
        versions = self.versions()
        stamped = []
        for node, proxy in sorted(self.proxies().items()):
            current = proxy.versions()
            for colour, version in versions.items():
                if current.get(colour) != version:
                    proxy.set_version(colour, version)
                    stamped.append(f"{node}: {colour} {version}")
        return stamped

    def ledger_snapshot(self, live: str | None = None) -> dict:
        """The colours as the ledger records them: the live one, and each pool's version, image
        and running task count (read from the services and their tasks)."""
        self._states_read = None  # set again below if this snapshot reads the proxies
        pools = {}
        for colour in COLOURS:
            service = self.swarm.service(service_name(self.spec, colour))
            tasks = self.swarm.tasks(service.name, with_health=False) if service else []
            labels = (service.attrs["Spec"].get("Labels") or {}) if service else {}
            pools[colour] = {"version": labels.get("cutover.version"),
                             "image": service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] if service else None,
                             "containers": sum(t.state == "running" for t in tasks)}
        if live is None:
            try:
                live = self.live_colour()
            except CutoverError:
                live = None  # proxies that disagree: the record says so by naming none
        return {"live": live, "serving": None, **pools}

    # -- changes ----------------------------------------------------------------------------------

    @changing("up")
    def up(self) -> SwarmUpResult:
        """Networks, the database, each version's expand run, both colours, the proxy; a second
        run finds nothing to do (each service's fingerprint label is the spec it runs)."""
        steps = StepClock()
        actions: list[str] = []
        with steps("images"):
            wanted = {s.role if s.role != "app" else s.colour: s for s in self.services(self.versions())}
        with steps("networks"):
            network_ids = {}
            for network in stack_networks(self.spec):
                network_ids[network.name], created = self.swarm.ensure_network(network)
                if created:
                    actions.append(f"create network {network.name}")
        secrets = {DB_PASSWORD_SECRET: self.secrets.get(DB_PASSWORD_SECRET)} if self.spec.app.read_write else {}
        config_ids = self._configs(actions)

        def apply(s: ServiceSpec) -> bool:
            outcome = self.swarm.apply(s, service_kwargs(s, secrets, network_ids, config_ids))
            if outcome != "unchanged":
                actions.append(f"{outcome[:-1]} service {s.name}")
                self.say(actions[-1])
            return outcome != "unchanged"

        if "database" in wanted:
            with steps("database"):
                if apply(wanted["database"]):
                    self.swarm.wait_converged(wanted["database"].name, CONVERGE_DEADLINE_S)
        changed = []
        with steps("migrate"):
            # Before any pool of a version starts: no task ever runs on a schema older than its own.
            for colour in COLOURS:
                s = wanted[colour]
                if self.swarm.needs_change(s) and self.schema.read_write:
                    applied = self.schema.expand(s.version, None, lint=False)
                    if applied:
                        actions.append(f"expand migrations for {s.version}: {', '.join(applied)}")
        with steps("services"):
            for role in (*COLOURS, "proxy"):
                if apply(wanted[role]):
                    changed.append(wanted[role])
            for s in changed:
                self.swarm.wait_converged(s.name, CONVERGE_DEADLINE_S)
        # Old proxy configs go once no task mounts them (configs are immutable: new content, new name).
        self.swarm.remove_configs(self.spec.stack, keep=set(config_ids))
        if changed:
            self._stamp_versions()
        self.ledger.record("up", "ok", actions=actions, steps=steps.seconds)
        return SwarmUpResult(actions, steps.seconds)

    def _configs(self, actions: list[str]) -> dict[str, str]:
        ids = {}
        for f in proxy_configs(self.spec):
            ids[f.name], created = self.swarm.ensure_config(f.name, f.content, {"cutover.project": "cutover", "cutover.stack": self.spec.stack, "cutover.role": "proxy-config"})
            if created:
                actions.append(f"create config {f.name}")
        return ids

    @changing("deploy")
    def deploy(self, version: str) -> SwarmDeployResult:
        """``version`` on the idle colour: built here, on every node, its expand migrations (a
        one-shot container on the manager), then the idle service rolled start-first until every
        task runs it, healthy. The live colour's service is not touched."""
        _check_version(version)
        missing = [service_name(self.spec, role) for role in (*COLOURS, "proxy") if self.swarm.service(service_name(self.spec, role)) is None]
        if missing:
            raise Refused(f"stack {self.spec.stack} is not up on its swarm ({', '.join(missing)} missing); run 'cutover up --stack {self.spec.stack}' first.")
        began = time.monotonic()
        steps = StepClock()
        live = self.live_colour()
        idle = other_colour(live)
        versions = self.versions()
        with steps("build"):
            image = self._app_image(version)
        with steps("migrate"):
            applied = self.schema.expand(version, versions[live]) if self.schema.read_write else []
            if applied:
                self.say(f"expand migrations applied: {', '.join(applied)}")
        with steps("roll"):
            (s,) = [s for s in self.services({**versions, idle: version}) if s.colour == idle]
            network_ids = {n.name: self.swarm.ensure_network(n)[0] for n in stack_networks(self.spec)}
            secrets = {DB_PASSWORD_SECRET: self.secrets.get(DB_PASSWORD_SECRET)} if self.spec.app.read_write else {}
            outcome = self.swarm.apply(s, service_kwargs(s, secrets, network_ids, {}))
            self.say(f"{outcome} service {s.name} ({version}, image {short_id(image)})")
        with steps("health"):
            self.swarm.wait_converged(s.name, CONVERGE_DEADLINE_S)
            # Before the colour goes live: no response of the new version is stamped old.
            self._stamp_versions()
        result = SwarmDeployResult(idle, version, image, applied, round(time.monotonic() - began, 2), steps.seconds)
        self.ledger.record("deploy", "ok", colour=idle, version=version, image_id=image, seconds=result.seconds, steps=result.steps)
        return result

    @changing("scale")
    def scale(self, colour: str, replicas: int) -> ScaleResult:
        """``colour``'s service to ``replicas`` tasks, nothing else: the proxy finds tasks through
        swarm DNS, so its service is not updated (its version index is recorded before and after).
        Holds until the colour's next deploy, which brings it back to cutover:poolSize."""
        if colour not in COLOURS:
            raise Refused(f"colour must be blue or green, got {colour!r}.")
        if not 1 <= replicas <= 20:
            raise Refused(f"replicas must be from 1 to 20 (the proxy's server slots), got {replicas}.")
        began = time.monotonic()
        name = service_name(self.spec, colour)
        proxy = service_name(self.spec, "proxy")
        before = self.swarm.version_index(proxy)
        self.swarm.scale(name, replicas)
        self.swarm.wait_converged(name, CONVERGE_DEADLINE_S)
        after = self.swarm.version_index(proxy)
        return ScaleResult(colour, replicas, round(time.monotonic() - began, 2), before, after)

    @changing(lambda args: args.pop("action"))
    def switch(self, action: str = "switch", to: str | None = None) -> SwarmSwitchResult:
        """The idle colour live on every proxy task, or on none: preflight (the colour's tasks
        healthy across the nodes, every proxy seeing at least cutover:poolSize of its servers UP),
        then one container on the control network flips every task and reads each back, flipping
        back those done if one fails. Then the old colour drains: in-flight requests finish.

        ``action`` "rollback" goes back to the colour live before the last switch (or is refused:
        simulator/switchback.py); ``to`` settles proxies that disagree, or does nothing when live."""
        if to is not None and to not in COLOURS:
            raise Refused(f"--to must be one of {', '.join(COLOURS)}, got {to!r}.")
        proxy_image = self._infra_image("proxy")
        # This command's ledger snapshot has just read every proxy task, under the lock
        # (simulator/ledger.py): the switch decides on that reading, as one engine's does on its one.
        states, self._states_read = self._states_read or self.proxy_states(), None
        lives = {st.live for st in states}
        if to is not None and lives == {to}:
            self.say(f"{to} is already live on every proxy task; nothing to switch")
            version = self.versions()[to]
            return SwarmSwitchResult(to, to, version, version, time.time(), 0.0, 0.0, True, already_live=True)
        if to is not None and len(lives) > 1:
            current = other_colour(to)  # settling a split: every task goes to ``to``
        else:
            current = agreed_live(self.spec.stack, states)
        now = self.ledger_snapshot(live=current)
        undoes = None
        if action == "rollback":
            try:
                undoes = plan_rollback(self.spec.stack, self.ledger.earlier_commands(), now).undoes_seq
            except Refused as exc:
                self.ledger.record(action, "refused", live=current, reason=str(exc))
                raise
        target = to or other_colour(current)
        tasks_up = self._preflight(target, action)
        versions = self.versions()
        began = time.monotonic()
        report = self._when_proxies_settle(lambda: flip_all(self.manager, self.spec, target, proxy_image))
        flip_seconds = time.monotonic() - began
        flipped = [p.flipped_at_ms for p in report.proxies if p.before != p.after]
        # The last task's flip: from then on no proxy sends a new request to the old colour.
        flipped_at = max(flipped) / 1000 if flipped else time.time()
        self.say(f"{len(report.proxies)} proxy task(s) on {target}, spread {report.spread_ms} ms: "
                 + ", ".join(f"{p.node} {p.before}→{p.after}" for p in report.proxies))
        drained, drain_seconds = self._drain(current)
        result = SwarmSwitchResult(
            from_colour=current, to_colour=target, from_version=versions[current], to_version=versions[target],
            flipped_at=flipped_at, flip_seconds=round(flip_seconds, 4), drain_seconds=round(drain_seconds, 3), drained=drained,
            undoes_seq=undoes, spread_ms=report.spread_ms, proxies=[asdict(p) for p in report.proxies], tasks_up=tasks_up,
        )
        self.ledger.record(action, "ok", **asdict(result))
        return result

    def rollback(self) -> SwarmSwitchResult:
        """Back to the colour and version live before the last switch (still running: instant)."""
        return self.switch(action="rollback")

    def _preflight(self, target: str, action: str) -> dict[str, int]:
        """``target``'s healthy tasks per node, when it has cutover:poolSize of them; refused
        (nothing changed) otherwise. Each proxy's own view is the flip's first check."""
        service = self.swarm.service(service_name(self.spec, target))
        if service is None:
            raise PreflightRefused(f"stack {self.spec.stack} has no {target} service; run 'cutover up --stack {self.spec.stack}' first.")
        nodes: dict[str, int] = {}
        for task in self.swarm.tasks(service.name):
            if task.state == "running" and task.health in ("healthy", "none", None):
                nodes[task.node] = nodes.get(task.node, 0) + 1
        healthy = sum(nodes.values())
        if healthy < self.spec.pool_size:
            where = ", ".join(f"{n} on {node}" for node, n in sorted(nodes.items())) or "none"
            reason = f"{target} has {healthy} healthy task(s) ({where}), fewer than cutover:poolSize {self.spec.pool_size}; live colour unchanged."
            self.ledger.record(action, "refused", target=target, reason=reason)
            raise PreflightRefused(reason)
        return dict(sorted(nodes.items()))

    def _drain(self, colour: str) -> tuple[bool, float]:
        """Until no proxy task has a request open on ``colour``'s servers (or the drain budget is
        spent). Read through each node's engine: the tasks this machine reaches."""
        began = time.monotonic()
        proxies = self.proxies()
        end = began + self.spec.drain_seconds
        while True:
            try:
                open_sessions = sum(p.backend_sessions(colour) for p in proxies.values())
            except CutoverError:
                open_sessions = 1  # a task restarting: not known to be drained yet
            if open_sessions == 0 or time.monotonic() >= end:
                return open_sessions == 0, time.monotonic() - began
            time.sleep(0.1)

    @changing("down")
    def down(self, with_volumes: bool = False, with_ledger: bool = False) -> list[str]:
        """Remove the services, the proxy's configs and the networks; with ``with_volumes`` the
        database's volume and every node's proxy state; the ledger only with ``with_ledger`` too."""
        if with_ledger and not with_volumes:
            raise Refused("--ledger removes the stack's audit ledger and goes only with --volumes (cutover down --volumes --ledger).")
        if with_ledger:
            self.ledger.after_release(lambda: self.say(f"removed the ledger volume {self.ledger.volume}") if self.ledger.remove() else None)
        removed = []
        for role in (*COLOURS, "proxy", "db"):
            if self.swarm.remove(service_name(self.spec, role)):
                removed.append(f"service {service_name(self.spec, role)}")
        self._until_removed(self._no_task_left, "the stack's task containers")
        removed += [f"config {name}" for name in self._until_removed(lambda: self.swarm.remove_configs(self.spec.stack, strict=True), "configs")]
        for network in stack_networks(self.spec):
            if self._until_removed(lambda: self._remove_network(network.name), f"network {network.name}"):
                removed.append(f"network {network.name}")
        if with_volumes:
            # Each node's: the database's data (its node), the proxies' state and socket directories.
            volumes = sorted({v.volume for s in stack_services(self.spec) for v in s.container.volumes})
            for node in self.cluster.existing_plan() if self.cluster else []:
                engine = self._node_engine(node.container)
                for volume in volumes:
                    if self._until_removed(lambda: _remove_volume(engine, volume), f"volume {volume} on {node.container}"):
                        removed.append(f"volume {volume} on {node.container}")
            self.secrets.forget_all()
        self.ledger.record("down", "ok", removed=removed)
        return removed

    def _no_task_left(self) -> bool:
        """Raises (so ``_until_removed`` tries again) while a node still has a container of one of
        the stack's services: removed services' tasks stop within their stop grace."""
        names = {service_name(self.spec, role) for role in (*COLOURS, "proxy", "db")}
        for node in self.cluster.existing_plan() if self.cluster else []:
            engine = self._node_engine(node.container)
            left = [c.name for c in engine.containers.list(all=True, filters={"label": "com.docker.swarm.service.name"})
                    if c.labels.get("com.docker.swarm.service.name") in names]
            if left:
                raise docker.errors.APIError(f"{len(left)} task container(s) still on {node.container}")
        return True

    def _remove_network(self, name: str) -> bool:
        try:
            self.manager.networks.get(name).remove()
        except docker.errors.NotFound:
            return False
        return True

    def _until_removed(self, attempt: Callable[[], list[str] | bool], what: str) -> list[str] | bool:
        """A removed service's tasks take their stop grace to go; what they hold (a network, a
        config, a volume) is busy until then: retry until it goes, within a deadline."""
        end = time.monotonic() + REMOVE_DEADLINE_S
        while True:
            try:
                return attempt()
            except docker.errors.APIError as exc:
                if time.monotonic() > end:
                    raise CutoverError(f"could not remove {what} within {REMOVE_DEADLINE_S} s: {exc.explanation or exc}.") from None
                time.sleep(0.5)


def _has(engine: docker.DockerClient | None, image_id: str) -> bool:
    if engine is None:
        return False
    try:
        engine.images.get(image_id)
        return True
    except docker.errors.ImageNotFound:
        return False


def _remove_volume(engine: docker.DockerClient, name: str) -> bool:
    try:
        engine.volumes.get(name).remove()
    except docker.errors.NotFound:
        return False
    return True
