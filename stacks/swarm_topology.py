"""What a swarm stack *is* in swarm services: one pure function from a StackSpec to service
definitions (docs/cluster.md, "The swarm stack kind").

The blue/green model is the single engine's (stacks/topology.py) and so are the containers' own
settings: each service here is built from the ContainerSpec that topology.py gives the same role,
so an app's image, env, health probe, stop signal and hardening cannot drift between the kinds.
What swarm adds is placement and rollout:

- one replicated service per colour (poolSize tasks, spread over the nodes, started before the old
  task is stopped, so an update never takes the colour below its size);
- the database as one task pinned to the node labelled ``<cutover:databaseLabel>=true`` (its
  volume is local to that node);
- HAProxy as a global service on the nodes labelled ``<cutover:trafficLabel>=true``, each task
  publishing the live and preview ports on its own node (host mode) and finding each colour's
  tasks through ``tasks.<service>`` (stacks/proxy_config.py);
- an attachable overlay network, so the one-shot expand migration (a container on the manager:
  pulumi-docker 5.2.0's Service has no replicated-job mode) can join it;
- a second, encrypted overlay, the control network, joined only by the proxy service and the
  switch's one-shot container: each proxy task's runtime API listens on its address there
  (CUTOVER_CONTROL_SUBNET, images/proxy/proxy-entrypoint), never on a published port.

Replacement facts (pulumi-docker's schema, tests/unit/facts): a Service is replaced when ``name``,
``mode`` or ``auth`` change, and also when a container label, a network attachment (its id or
aliases), ``hosts`` or ``sysctl`` inside ``taskSpec`` change. So everything that moves with a
release (the version, the fingerprint) is a *service* label, and container labels are constant per
colour: a release updates a service in place, a rolling update, never a delete and create.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from stacks.proxy_config import HAPROXY_CONFIG_PATH, LIVE_CONTAINER_PORT, PREVIEW_CONTAINER_PORT, backend_path, render_base_config, render_swarm_backend
from stacks.spec import COLOURS, PROJECT, StackSpec
from stacks.topology import (
    PROXY_UID,
    ContainerSpec,
    VolumeMountSpec,
    app_container,
    database_container,
    migration_container,
    proxy_container,
)

# Swarm's restart policy for long-running tasks: any exit is restarted (on another node if this one
# is gone); the delay keeps a crash-looping task from hammering its node.
RESTART_CONDITION = "any"
RESTART_DELAY_S = 5
# Rolling update of a colour: one task at a time, the new task started (and healthy) before the old
# one stops, watched this long for failure; a failed update rolls back by itself.
UPDATE_PARALLELISM = 1
UPDATE_MONITOR_S = 10
# Every replicated task spread over the nodes, so losing one node loses at most ceil(n/nodes).
SPREAD_OVER_NODES = "spread=node.id"
# How a service's name resolves: DNS round robin (every task's address), never a virtual IP. A VIP
# needs IPVS in the nodes' kernel (absent on the local swarm: dockerd logs "Could not get ipvs
# family information"); dnsrr also holds on real swarms, where the proxy finds tasks through
# tasks.<service> and publishes in host mode, so nothing of ours goes through a VIP or the mesh.
ENDPOINT_MODE = "dnsrr"


@dataclass(frozen=True)
class PublishedPort:
    target: int
    published: int
    # "host": the port is bound on the node that runs the task (one proxy per traffic node), with
    # no routing-mesh hop; swarm cannot bind a published port to one address (docs/cluster.md).
    mode: str = "host"


@dataclass(frozen=True)
class NetworkSpec:
    """One overlay network of a swarm stack."""

    name: str
    # Attachable: a plain container (the migration, the switch) may join it, not only services.
    attachable: bool = True
    # Encrypted (IPsec between nodes): the control network carries admin-level runtime-API lines.
    encrypted: bool = False
    # None: swarm picks one. The control network's is fixed: its proxies find their own address in it.
    subnet: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConfigFileSpec:
    """A swarm config (immutable, replicated by the managers) mounted as a file into each task."""

    name: str
    path: str
    content: str
    # Read by the proxy's user (the image's haproxy, uid 990); a config is root-owned otherwise.
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o444


@dataclass(frozen=True)
class ServiceSpec:
    """One swarm service, described for Pulumi (and, later, the simulator's services API)."""

    name: str
    role: str  # "proxy", "app" or "database"
    # The container its tasks run, as topology.py describes it for one engine.
    container: ContainerSpec
    # None: global mode (one task per eligible node); else the replicated task count.
    replicas: int | None
    constraints: tuple[str, ...] = ()
    prefs: tuple[str, ...] = (SPREAD_OVER_NODES,)
    # Names on the stack's overlay network besides the service's own.
    aliases: tuple[str, ...] = ()
    # Networks besides the stack's overlay (the proxy: the control network), no alias on them.
    extra_networks: tuple[str, ...] = ()
    ports: tuple[PublishedPort, ...] = ()
    endpoint_mode: str = ENDPOINT_MODE
    configs: tuple[ConfigFileSpec, ...] = ()
    # "start-first": a new task before the old one stops (a colour never shrinks); "stop-first" when
    # two tasks cannot coexist (a host port, a database volume).
    update_order: str = "start-first"
    colour: str | None = None
    version: str | None = None
    # Service labels: they may change in place (version, fingerprint), unlike container labels.
    labels: tuple[tuple[str, str], ...] = field(default=())
    # Container labels: constant per service, since a change to one replaces the service.
    container_labels: tuple[tuple[str, str], ...] = field(default=())

    def fingerprint(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def labels_with_fingerprint(self) -> dict[str, str]:
        return {**dict(self.labels), "cutover.fingerprint": self.fingerprint()}


def overlay_network_name(spec: StackSpec) -> str:
    return f"{PROJECT}-{spec.stack}"


# The proxies' runtime API on the control network (images/proxy: CUTOVER_CONTROL_PORT's default).
CONTROL_PORT = 9999
CONTROL_SUBNET_ENV = "CUTOVER_CONTROL_SUBNET"


def control_network_name(spec: StackSpec) -> str:
    return f"{PROJECT}-{spec.stack}-control"


def control_subnet(spec: StackSpec) -> str:
    """A /24 in 10.240.0.0/16 fixed by the stack's name. Fixed, because each proxy task finds its
    control address by it before HAProxy starts (the service's env cannot name an address swarm
    has not chosen yet); by name, so two stacks on one swarm rarely meet. When they do, Docker
    refuses the second network as overlapping: one sentence at deploy time, nothing half-made."""
    n = int(hashlib.sha256(spec.stack.encode()).hexdigest()[:8], 16) % 256
    return f"10.240.{n}.0/24"


def stack_networks(spec: StackSpec) -> list[NetworkSpec]:
    """The stack's overlays: the app network every service joins, and the control network."""
    labels = stack_network_labels(spec)
    return [
        NetworkSpec(overlay_network_name(spec), labels=labels),
        NetworkSpec(control_network_name(spec), encrypted=spec.control_encrypted, subnet=control_subnet(spec), labels=labels),
    ]


def stack_network_labels(spec: StackSpec) -> tuple[tuple[str, str], ...]:
    return (("cutover.engine", "swarm"), ("cutover.project", PROJECT), ("cutover.stack", spec.stack))


def service_name(spec: StackSpec, role: str) -> str:
    """``cutover-<stack>-blue``, ``-green``, ``-proxy``, ``-db``: the DNS names on the overlay."""
    return f"{PROJECT}-{spec.stack}-{role}"


def traffic_constraint(spec: StackSpec) -> str:
    return f"node.labels.{spec.traffic_label}==true"


def database_constraint(spec: StackSpec) -> str:
    return f"node.labels.{spec.database_label}==true"


def _service_labels(spec: StackSpec, role: str, colour: str | None = None, version: str | None = None) -> tuple[tuple[str, str], ...]:
    labels = {"cutover.project": PROJECT, "cutover.stack": spec.stack, "cutover.role": role, "cutover.engine": "swarm"}
    if colour:
        labels["cutover.colour"] = colour
    if version:
        labels["cutover.version"] = version
    return tuple(sorted(labels.items()))


def _constant_labels(spec: StackSpec, role: str, colour: str | None = None) -> tuple[tuple[str, str], ...]:
    # No version and no fingerprint: these are container labels (replace-on-change).
    labels = {"cutover.project": PROJECT, "cutover.stack": spec.stack, "cutover.role": role}
    if colour:
        labels["cutover.colour"] = colour
    return tuple(sorted(labels.items()))


def _as_task(c: ContainerSpec, name: str, hostname: str) -> ContainerSpec:
    """A single-engine container turned into a task template: no fixed name, a hostname from the
    task's slot (swarm fills the template per task), no Docker restart policy (swarm restarts).

    A tmpfs that must belong to the image's user (``uid=`` in its options: postgres's and HAProxy's
    socket directories) becomes a named volume on the task's node: swarm's tmpfs takes a mode but
    no owner, and copies the image directory's mode onto a root-owned tmpfs, so postgres could not
    create its lock file there (measured on the local swarm). A fresh volume takes the image
    directory's owner and mode."""
    owned = tuple(VolumeMountSpec(f"{name}{path.replace('/', '-')}", path) for path, options in c.tmpfs if "uid=" in options)
    tmpfs = tuple((path, options) for path, options in c.tmpfs if "uid=" not in options)
    return replace(c, name=name, hostname=hostname, restart=RESTART_CONDITION, labels=(), tmpfs=tmpfs, volumes=(*c.volumes, *owned))


def colour_service(spec: StackSpec, colour: str, version: str, image: str | None = None) -> ServiceSpec:
    """``colour``'s pool: poolSize tasks of ``version``'s image, spread over the nodes."""
    name = service_name(spec, colour)
    c = app_container(spec, colour, 1, version, image)
    # Each task names itself, as each container of a pool does on one engine (CUTOVER_INSTANCE).
    env = tuple((k, "{{.Service.Name}}-{{.Task.Slot}}" if k == "CUTOVER_INSTANCE" else v) for k, v in c.env)
    task = replace(_as_task(c, name, "{{.Service.Name}}-{{.Task.Slot}}"), env=env)
    return ServiceSpec(
        name=name,
        role="app",
        container=task,
        replicas=spec.pool_size,
        # The traffic nodes, as the proxies: the database's node (the manager on the local swarm)
        # carries no pool, so losing it never takes app tasks with it, nor the reverse.
        constraints=(traffic_constraint(spec),),
        colour=colour,
        version=version,
        labels=_service_labels(spec, "app", colour, version),
        container_labels=_constant_labels(spec, "app", colour),
    )


def database_service(spec: StackSpec) -> ServiceSpec:
    """PostgreSQL: one task, on the database's node only (its volume lives there). Stop-first: two
    postgres processes must never share one data directory."""
    c = database_container(spec)
    return ServiceSpec(
        name=service_name(spec, "db"),
        role="database",
        container=_as_task(c, service_name(spec, "db"), c.hostname),
        replicas=1,
        constraints=(database_constraint(spec),),
        prefs=(),
        # The apps' env names the database "db" (topology.DATABASE_HOSTNAME), as on one engine.
        aliases=(c.hostname,),
        update_order="stop-first",
        labels=_service_labels(spec, "database"),
        container_labels=_constant_labels(spec, "database"),
    )


def proxy_configs(spec: StackSpec) -> tuple[ConfigFileSpec, ...]:
    """The proxy's three files as swarm configs, where the image's entrypoint reads them: the base
    config and each colour's backend. A config's name carries a digest of its content: swarm
    configs are immutable, so new content is a new config and the proxy service rolls onto it."""
    files = [(HAPROXY_CONFIG_PATH, render_base_config())]
    files += [(backend_path(c), render_swarm_backend(spec, c, service_name(spec, c), spec.app.port)) for c in COLOURS]
    configs = []
    for path, content in files:
        stem = path.rsplit("/", 1)[1].removesuffix(".cfg")
        digest = hashlib.sha256(content.encode()).hexdigest()[:12]
        configs.append(ConfigFileSpec(f"{PROJECT}-{spec.stack}-proxy-{stem}-{digest}", path, content, str(PROXY_UID), str(PROXY_UID)))
    return tuple(configs)


def proxy_service(spec: StackSpec) -> ServiceSpec:
    """HAProxy on every traffic node. Stop-first: the new task needs the node's ports the old one
    holds (SIGUSR1, HAProxy's soft stop, lets the old one finish its requests first)."""
    c = proxy_container(spec)
    # The base config comes as a swarm config, not an upload; the state volume (per node) keeps
    # each task's colour map across restarts.
    task = replace(_as_task(c, service_name(spec, "proxy"), c.hostname), uploads=(), ports=(), env=(*c.env, (CONTROL_SUBNET_ENV, control_subnet(spec))))
    return ServiceSpec(
        name=service_name(spec, "proxy"),
        role="proxy",
        container=task,
        replicas=None,
        constraints=(traffic_constraint(spec),),
        prefs=(),
        extra_networks=(control_network_name(spec),),
        ports=(PublishedPort(LIVE_CONTAINER_PORT, spec.live_port), PublishedPort(PREVIEW_CONTAINER_PORT, spec.preview_port)),
        configs=proxy_configs(spec),
        update_order="stop-first",
        labels=_service_labels(spec, "proxy"),
        container_labels=_constant_labels(spec, "proxy"),
    )


def swarm_migration_container(spec: StackSpec, version: str, command: tuple[str, ...], image: str | None = None) -> ContainerSpec:
    """The expand run: the single engine's one-shot container, run on the manager and attached to
    the (attachable) overlay network, where the database answers as ``db``."""
    return migration_container(spec, version, command, image)


def stack_services(spec: StackSpec, versions: dict[str, str] | None = None, images: dict[str, str] | None = None) -> list[ServiceSpec]:
    """Every long-running service of a swarm stack; ``versions``/``images`` as stack_containers."""
    if not spec.is_swarm:  # a wiring bug: a single-engine stack is stacks.topology's
        raise ValueError(f"stack {spec.stack} is not a swarm stack")
    images = images or {}
    versions = versions or {c: spec.version_of(c) for c in COLOURS}
    services = [database_service(spec)] if spec.app.read_write else []
    services.append(proxy_service(spec))
    services.extend(colour_service(spec, c, versions[c], images.get(versions[c])) for c in COLOURS)
    return services

