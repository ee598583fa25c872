"""BlueGreenService: one stack — its network, the database and the migrations (read-write apps
only), both colours' pools, the proxy and the switch.

What the app is comes from ``spec.app`` (its definition file) through ``stacks.topology``; nothing
here knows any app's port, endpoints, environment or migration tool.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_docker as docker
from pulumi_command import local

from components.app_pool import AppPool, AppPoolArgs
from components.database import Database, DatabaseArgs
from components.images import app_image, state_image
from components.migration import Migration, declare_migrations
from components.proxy import Proxy, ProxyArgs
from components import staging
from components.observed import read_proxy_state
from components.render import network_labels, volume_labels
from components.live_colour import DEFAULT_WAIT_S, LiveColour
from components.release_gates import declare_lint_gates, declare_live_checks, declare_smoke_test
from components.switch import backend_command_args, ledger_record_args, version_command_args
from stacks.docker_objects import ledger_volume, stack_network
from stacks.image_builds import STATE_IMAGE
from stacks.spec import COLOURS, StackSpec
from stacks.topology import pool_containers, stack_containers

# Every input of a command except ``triggers``: what a frozen (live-now) colour's backend and stamp
# keep from the state.
FROZEN_COMMAND_INPUTS = sorted(
    n for n in inspect.signature(local.CommandArgs.__init__).parameters if n not in ("self", "__self__", "triggers")
)


@dataclass(frozen=True)
class BlueGreenServiceArgs:
    spec: StackSpec


class BlueGreenService(pulumi.ComponentResource):
    # None for a read-only app, which has no database.
    database: Optional[Database]
    database_host: Optional[pulumi.Output[str]]
    live_colour: pulumi.Output[str]
    live_url: pulumi.Output[str]
    preview_url: pulumi.Output[str]

    def __init__(self, name: str, args: BlueGreenServiceArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("cutover:index:BlueGreenService", name, None, opts)
        spec = args.spec
        # The same list the simulator creates: every container below is one of these.
        containers = stack_containers(spec)

        # What the proxy says now, before anything is declared: which colour serves traffic decides
        # which resources keep their inputs (ignore_changes is fixed at registration).
        (self.proxy_name,) = [c.name for c in containers if c.role == "proxy"]
        self.observed = read_proxy_state(spec, self.proxy_name)
        try:
            self.staging = staging.plan(spec, self.observed)
        except ValueError as exc:  # the refusal: one sentence, nothing declared
            raise pulumi.RunError(str(exc)) from None

        net = stack_network(spec)
        self.network = docker.Network(
            net.name,
            name=net.name,
            driver=net.driver,
            labels=network_labels(net.labels),
            # A fixed name: the old network must go before a new one can take the name.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

        # First the database (a read-write app only): every app container and every migration run
        # needs it, and its password. A read-only app has none, and so no secret at all.
        secrets: Mapping[str, pulumi.Output[str]] = {}
        self.database = None
        if spec.app.read_write:
            (database_spec,) = [c for c in containers if c.role == "database"]
            self.database = Database(
                f"{name}-database", DatabaseArgs(spec, database_spec, self.network), opts=pulumi.ResourceOptions(parent=self)
            )
            secrets = self.database.secrets

        (proxy_spec,) = [c for c in containers if c.role == "proxy"]
        self.proxy = Proxy(f"{name}-proxy", ProxyArgs(spec, proxy_spec, self.network), opts=pulumi.ResourceOptions(parent=self))

        # One image per version, not per colour: when both colours run the same version they share
        # the artefact instead of building (and racing on) the same tag twice.
        versions = {colour: spec.version_of(colour) for colour in COLOURS}
        self.images = {version: app_image(spec, version, parent=self) for version in sorted(set(versions.values()))}
        # The deploy's gates (components/release_gates.py): each version's pending expand steps are
        # linted before any migration runs; after a run, the live version must still write and read.
        self.lint_gates = declare_lint_gates(spec, versions.values(), self.images, secrets, [self.network, self.database], parent=self)
        # Each version's expand migrations, once the database is healthy (its container waits for
        # that); one run per distinct version, for the same reason as the images (migration.py).
        # Empty when the app declares no migrations (or has no database).
        self.migrations = (
            declare_migrations(
                spec,
                list(versions.values()),
                parent=self,
                secrets=secrets,
                depends_on=[self.network, self.database, *self.lint_gates.values()],
                images=self.images,
            )
            if self.database is not None
            else {}
        )
        self.live_checks = declare_live_checks(spec, self.lint_gates, self.migrations, parent=self)
        # Each colour's pool, its backend in the proxy and its version stamp. The target colour's
        # first, then the switch (which waits for them), then the other colour's: that colour is
        # changed only once traffic has left it. The colour live *now* is frozen (staging.py).
        self.pools: dict[str, AppPool] = {}
        self.backends: dict[str, local.Command] = {}
        self.version_stamps: dict[str, local.Command] = {}
        target, after_switch = self.staging.target, self.staging.after_switch
        self._declare_colour(name, spec, target, versions[target], secrets, after=[])
        # The switch is a LiveColour (components/live_colour.py): its read observes the proxy, so
        # refresh sees a flip made outside Pulumi and up restores the configured colour; it waits for
        # the colour's servers to be UP in HAProxy and refuses one that is not. Before it, the target
        # colour passes the deploy's smoke test (components/release_gates.py) through the port that
        # serves it now. After the target colour's pool (healthy, where it has a Docker
        # healthcheck), its backend (the servers HAProxy checks) and its stamp (so live responses
        # carry their version); never after the other colour's pool: in an `up` that flips, that
        # pool is the one traffic is leaving. A replaced proxy (its container id) flips again: a new
        # proxy starts from the colour on its state volume.
        target_ready = [self.proxy, self.pools[target], self.backends[target], self.version_stamps[target]]
        self.smoke_tests = {target: declare_smoke_test(spec, target, self.images[versions[target]].digest, target_ready, parent=self)}
        self.switch = LiveColour(
            f"{name}-switch",
            proxy=self.proxy.container_name,
            docker_host=spec.docker_host,
            colour=target,
            proxy_id=self.proxy.container_id,
            wait_seconds=DEFAULT_WAIT_S,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*target_ready, self.smoke_tests[target]]),
        )
        self._declare_colour(name, spec, after_switch, versions[after_switch], secrets, after=[self.switch])
        # The other colour through the preview port, once traffic has left it and it is in place.
        self.smoke_tests[after_switch] = declare_smoke_test(
            spec,
            after_switch,
            self.images[versions[after_switch]].digest,
            [self.pools[after_switch], self.backends[after_switch], self.version_stamps[after_switch], self.switch],
            parent=self,
        )
        self.pools = {colour: self.pools[colour] for colour in COLOURS}

        # The switch goes into the stack's audit ledger on its engine, like a `cutover switch`; the
        # ledger volume outlives `pulumi destroy` (retain_on_delete): an audit trail outlives the stack.
        ledger = ledger_volume(spec)
        self.ledger_volume = docker.Volume(
            ledger.name,
            name=ledger.name,
            labels=volume_labels(ledger.labels),
            # A fixed name (delete before replace), and never deleted with the stack.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, retain_on_delete=True),
        )
        self.state_image = state_image(spec, parent=self)
        self.switch_record = local.Command(
            f"{name}-switch-record",
            **ledger_record_args(spec, ledger.name, STATE_IMAGE, self.pools[spec.live_colour].image_digest),
            # Whenever the switch ran again: one record per switch.
            triggers=[self.switch.flipped_at],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.switch, self.ledger_volume, self.state_image]),
        )

        self.database_host = self.database.host if self.database is not None else None
        self.live_colour = pulumi.Output.from_input(spec.live_colour)
        self.live_url = pulumi.Output.from_input(spec.live_url())
        self.preview_url = pulumi.Output.from_input(spec.preview_url())
        outputs = {
            "liveColor": self.live_colour,
            "liveUrl": self.live_url,
            "previewUrl": self.preview_url,
            "switchOutput": self.switch.stdout,
        }
        if self.database_host is not None:
            outputs["databaseHost"] = self.database_host
        self.register_outputs(outputs)

    def _declare_colour(
        self, name: str, spec: StackSpec, colour: str, version: str, secrets: Mapping[str, pulumi.Output[str]], after: list[pulumi.Resource]
    ) -> None:
        """``colour``'s pool, backend and version stamp, each after ``after`` (the switch, or nothing)."""
        frozen = self.staging.frozen(colour)
        # The live colour keeps the size its backend has now (staging.py); the parity tests hold
        # every other colour to stacks.topology's containers.
        pool_spec = self.staging.pool_spec(spec, colour)
        containers = pool_containers(pool_spec, colour, version)
        pool = AppPool(
            f"{name}-{colour}",
            AppPoolArgs(
                colour=colour,
                version=version,
                containers=containers,
                image=self.images[version],
                network=self.network,
                secrets=secrets,
                # Not before this version's expand migration has exited 0; with no migration
                # run, not before the database (a read-only app: the image and network only).
                after=[*_gate(self.migrations.get(version), self.database), *_checked(self.live_checks.get(version)), *after],
                frozen=frozen,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # A frozen command keeps its text and environment; its trigger (the proxy container's id)
        # still counts, so a replaced proxy gets the backend and stamp it had, from the state.
        command_options = {"ignore_changes": FROZEN_COMMAND_INPUTS} if frozen else {}
        self.pools[colour] = pool
        self.backends[colour] = local.Command(
            f"{name}-backend-{colour}",
            **backend_command_args(spec, self.proxy_name, colour, [c.hostname for c in containers]),
            triggers=[self.proxy.container_id],
            # Once its servers exist (HAProxy resolves them through Docker's DNS).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.proxy, pool, *after], **command_options),
        )
        # Which version this colour runs, in the proxy's version map: it stamps every response of
        # that colour with it (X-Cutover-Version), as after the simulator's deploy.
        self.version_stamps[colour] = local.Command(
            f"{name}-version-{colour}",
            **version_command_args(spec, self.proxy_name, colour, version),
            # Like the switch: a replaced proxy gets its map stamped again.
            triggers=[self.proxy.container_id],
            # After its backend: a colour's responses are stamped once the proxy sends to its servers.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.proxy, pool, self.backends[colour], *after], **command_options),
        )


def _checked(check: Optional[pulumi.Resource]) -> list[pulumi.Input[pulumi.Resource]]:
    """A version's pool waits for the live version's check after that version's expand steps."""
    return [check] if check is not None else []


def _gate(migration: Optional[Migration], database: Optional[Database]) -> list[pulumi.Input[pulumi.Resource]]:
    """What a pool waits for besides its image and the network."""
    if migration is not None:
        return [migration.done]
    return [database] if database is not None else []
