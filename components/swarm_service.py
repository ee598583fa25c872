"""SwarmBlueGreenService: a swarm stack (``cutover:engine: swarm``) as pulumi-docker swarm resources.

The services come from ``stacks.swarm_topology`` (pure); this module only translates them field by
field into ``docker.Service`` & co. (docs/cluster.md, "The swarm stack kind"):

- two overlay networks: the app's (attachable) and the control network (attachable, encrypted,
  a fixed subnet: the proxy tasks' runtime API, for the switch's one-shot container);
- the database: a RandomPassword (as on one engine) and one service pinned to the database's node;
- each version's expand migration: a one-shot container on the manager, attached to the overlay
  network (pulumi-docker 5.2.0's Service has no replicated-job mode), before any pool of it;
- each colour: a replicated service, updated in place (rolling, start-first) on a release;
- the proxy: its three files as swarm configs and a global service on the traffic nodes, on both
  networks, with the control subnet in its env.

The switch across every proxy task is simulator/swarm_switch.py. Not here yet (docs/cluster.md):
the LiveColour provider driving it, the deploy's gates and smoke tests, the ledger record, and images reaching the workers from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.database import PASSWORD_LENGTH
from components.images import app_image, database_image, proxy_image
from components.migration import declare_migrations
from components.render import _secret_entry, go_duration, network_labels
from stacks.ownership import PULUMI, owner_labels
from stacks.spec import COLOURS, StackSpec
from stacks.swarm_topology import (
    RESTART_CONDITION,
    RESTART_DELAY_S,
    UPDATE_MONITOR_S,
    UPDATE_PARALLELISM,
    ServiceSpec,
    NetworkSpec,
    stack_networks,
    stack_services,
)
from stacks.topology import DB_PASSWORD_SECRET, HealthcheckSpec

# How many tasks of an update may fail before swarm rolls it back by itself: none.
MAX_FAILURE_RATIO = "0"


@dataclass(frozen=True)
class SwarmBlueGreenServiceArgs:
    spec: StackSpec


class SwarmBlueGreenService(pulumi.ComponentResource):
    kind = "swarm"

    def __init__(self, name: str, args: SwarmBlueGreenServiceArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("cutover:index:SwarmBlueGreenService", name, None, opts)
        spec = args.spec
        self.spec = spec
        services = {s.name: s for s in stack_services(spec)}

        # The app overlay (every service; attachable: the migration's container joins it) and the
        # control overlay (the proxy service and the switch's one-shot container only; encrypted).
        self.network, self.control_network = (declare_network(n, spec, self) for n in stack_networks(spec))

        secrets: Mapping[str, pulumi.Output[str]] = {}
        self.database: Optional[docker.Service] = None
        self.password: Optional[pulumi.Output[str]] = None
        if spec.app.read_write:
            # As on one engine (components/database.py): generated once, kept in the state, secret.
            password = random.RandomPassword(f"{name}-database-password", length=PASSWORD_LENGTH, special=False, opts=pulumi.ResourceOptions(parent=self))
            self.password = pulumi.Output.secret(password.result)
            secrets = {DB_PASSWORD_SECRET: self.password}
            (db,) = [s for s in services.values() if s.role == "database"]
            db_image = database_image(spec, parent=self)
            self.database = declare_service(db, self, secrets, self.network, depends_on=[db_image], retain_on_delete=spec.keep_data_on_destroy)

        versions = {colour: spec.version_of(colour) for colour in COLOURS}
        self.images = {version: app_image(spec, version, parent=self) for version in sorted(set(versions.values()))}
        # The expand runs: a container on the manager, once the database service exists. (A
        # service exists before its task is healthy: the migration tool's own connect retries
        # cover the database's start, as they do when the database restarts on one engine.)
        self.migrations = (
            declare_migrations(spec, list(versions.values()), parent=self, secrets=secrets, depends_on=[self.network, self.database], images=self.images)
            if self.database is not None
            else {}
        )

        self.pools: dict[str, docker.Service] = {}
        for colour in COLOURS:
            (pool,) = [s for s in services.values() if s.colour == colour]
            version = versions[colour]
            gate = [self.migrations[version].done] if version in self.migrations else ([self.database] if self.database is not None else [])
            self.pools[colour] = declare_service(pool, self, secrets, self.network, depends_on=[self.images[version].resource, *gate])

        (proxy,) = [s for s in services.values() if s.role == "proxy"]
        self.proxy_configs = [
            docker.ServiceConfig(
                c.name,
                name=c.name,
                data=_base64(c.content),
                # Immutable in swarm: new content is a new config (its name carries the digest);
                # the new one must exist before the proxy service moves onto it, so the old one is
                # deleted after (Pulumi's default create-before-delete).
                opts=pulumi.ResourceOptions(parent=self),
            )
            for c in proxy.configs
        ]
        self.proxy = declare_service(
            proxy, self, secrets, self.network, depends_on=[proxy_image(spec, parent=self)], configs=self.proxy_configs, extra_networks=[self.control_network]
        )

        self.live_colour = pulumi.Output.from_input(spec.live_colour)
        self.live_url = pulumi.Output.from_input(spec.live_url())
        self.preview_url = pulumi.Output.from_input(spec.preview_url())
        self.register_outputs({"liveColor": self.live_colour, "liveUrl": self.live_url, "previewUrl": self.preview_url})


def declare_network(n: NetworkSpec, spec: StackSpec, parent: pulumi.Resource) -> docker.Network:
    """``n`` as an overlay ``docker.Network``."""
    return docker.Network(
        n.name,
        name=n.name,
        driver="overlay",
        attachable=n.attachable,
        # Docker's overlay option: IPsec between the nodes for this network's traffic.
        options={"encrypted": ""} if n.encrypted else None,
        ipam_configs=[docker.NetworkIpamConfigArgs(subnet=n.subnet)] if n.subnet else None,
        labels=network_labels(n.labels),
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=True),
    )


def _base64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def declare_service(
    s: ServiceSpec,
    parent: pulumi.Resource,
    secrets: Mapping[str, pulumi.Input[str]],
    network: docker.Network,
    depends_on: list = (),
    configs: list[docker.ServiceConfig] = (),
    retain_on_delete: bool = False,
    extra_networks: list[docker.Network] = (),
) -> docker.Service:
    """``s`` as a ``docker.Service``; the logical name is the swarm service's name."""
    if len(extra_networks) != len(s.extra_networks):  # a wiring bug
        raise ValueError(f"{s.name} joins {len(s.extra_networks)} extra network(s), {len(extra_networks)} were passed")
    return docker.Service(
        s.name,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[network, *extra_networks, *depends_on],
            # A fixed name: the old service must be gone before its replacement takes the name.
            delete_before_replace=True,
            retain_on_delete=retain_on_delete,
        ),
        **service_args(s, secrets, network.id, configs=[c.id for c in configs], extra_network_ids=[n.id for n in extra_networks]),
    )


def service_args(
    s: ServiceSpec, secrets: Mapping[str, pulumi.Input[str]], network_id: pulumi.Input[str], configs: list[pulumi.Input[str]] = (), extra_network_ids: list[pulumi.Input[str]] = ()
) -> dict:
    """Keyword arguments for ``pulumi_docker.Service`` that reproduce ``s``."""
    c = s.container
    container_spec = docker.ServiceTaskSpecContainerSpecArgs(
        image=c.image,
        hostname=c.hostname,
        env=_env(s, secrets),
        # Constant per service (replace-on-change inside taskSpec): no version, no fingerprint.
        labels=[docker.ServiceTaskSpecContainerSpecLabelArgs(label=k, value=v) for k, v in s.container_labels],
        healthcheck=_healthcheck(c.healthcheck),
        stop_signal=c.stop_signal,
        # The app's own drain budget: swarm sends stop_signal, waits this long, then kills.
        stop_grace_period=go_duration(c.stop_timeout_s),
        read_only=c.read_only,
        cap_drops=list(c.cap_drop),
        cap_adds=list(c.cap_add),
        mounts=[
            *(docker.ServiceTaskSpecContainerSpecMountArgs(type="volume", source=v.volume, target=v.container_path) for v in c.volumes),
            # Swarm's tmpfs takes a mode but no owner: sticky and world-writable, like /tmp, so the
            # image's non-root user can make its socket there (on one engine: uid=, gid=).
            *(docker.ServiceTaskSpecContainerSpecMountArgs(type="tmpfs", target=path, tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(mode=0o1777)) for path, _ in c.tmpfs),
        ],
        configs=[
            docker.ServiceTaskSpecContainerSpecConfigArgs(config_id=config_id, config_name=f.name, file_name=f.path, file_uid=f.uid, file_gid=f.gid, file_mode=f.mode)
            for config_id, f in zip(configs, s.configs)
        ],
        **({"user": c.user} if c.user else {}),
        **({"args": list(c.command)} if c.command else {}),
    )
    task_spec = docker.ServiceTaskSpecArgs(
        container_spec=container_spec,
        networks_advanceds=[
            docker.ServiceTaskSpecNetworksAdvancedArgs(id=network_id, aliases=list(s.aliases)),
            *(docker.ServiceTaskSpecNetworksAdvancedArgs(id=i, aliases=[]) for i in extra_network_ids),
        ],
        placement=docker.ServiceTaskSpecPlacementArgs(constraints=list(s.constraints), prefs=list(s.prefs)),
        restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(condition=RESTART_CONDITION, delay=go_duration(RESTART_DELAY_S)),
    )
    rollout = dict(
        parallelism=UPDATE_PARALLELISM,
        order=s.update_order,
        monitor=go_duration(UPDATE_MONITOR_S),
        max_failure_ratio=MAX_FAILURE_RATIO,
    )
    args = {
        "name": s.name,
        "task_spec": task_spec,
        "mode": docker.ServiceModeArgs(global_=True) if s.replicas is None else docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=s.replicas)),
        "update_config": docker.ServiceUpdateConfigArgs(failure_action="rollback", **rollout),
        "rollback_config": docker.ServiceRollbackConfigArgs(failure_action="pause", **rollout),
        # Service labels may change in place: the version and the fingerprint live here.
        "labels": [docker.ServiceLabelArgs(label=k, value=v) for k, v in sorted(owner_labels(s.labels_with_fingerprint(), PULUMI).items())],
    }
    # Every service: DNS round robin, no VIP (stacks/swarm_topology.py ENDPOINT_MODE); ports, if
    # any, in host mode (a dnsrr service cannot publish through the routing mesh).
    args["endpoint_spec"] = docker.ServiceEndpointSpecArgs(
        mode=s.endpoint_mode,
        ports=[docker.ServiceEndpointSpecPortArgs(target_port=p.target, published_port=p.published, publish_mode=p.mode, protocol="tcp") for p in s.ports],
    )
    return args


def _env(s: ServiceSpec, secrets: Mapping[str, pulumi.Input[str]]) -> pulumi.Input[Mapping[str, str]]:
    plain = dict(s.container.env)
    if not s.container.secret_env:
        return plain
    missing = sorted({name for _, name, _ in s.container.secret_env if name not in secrets})
    if missing:  # a wiring bug in the caller
        raise ValueError(f"{s.name} needs the secret(s) {', '.join(missing)}, which were not passed to it")
    # The same substitution as components/render.py; the whole map stays a secret Output.
    filled = {variable: _secret_entry(variable, template, secrets[name]).apply(lambda entry: entry.split("=", 1)[1]) for variable, name, template in s.container.secret_env}
    return pulumi.Output.secret(pulumi.Output.all(**plain, **filled))


def _healthcheck(h: HealthcheckSpec | None) -> docker.ServiceTaskSpecContainerSpecHealthcheckArgs | None:
    if h is None:
        return None
    return docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
        tests=list(h.test), interval=go_duration(h.interval_s), timeout=go_duration(h.timeout_s), retries=h.retries, start_period=go_duration(h.start_period_s)
    )
