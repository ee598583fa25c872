"""BlueGreenService: one stack — its network, the database and the migrations (read-write apps
only), both colours' pools, the proxy and the switch.

What the app is comes from ``spec.app`` (its definition file) through ``stacks.topology``; nothing
here knows any app's port, endpoints, environment or migration tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_docker as docker
from pulumi_command import local

from components.app_pool import AppPool, AppPoolArgs
from components.database import Database, DatabaseArgs
from components.images import app_image, state_image
from components.live_colour import declare_gated_switch
from components.migration import Migration, declare_migrations
from components.proxy import Proxy, ProxyArgs
from components.release_gates import declare_lint_gates, declare_live_checks
from components.switch import ledger_record_args, version_command_args
from stacks.docker_objects import ledger_volume, stack_network
from stacks.image_builds import STATE_IMAGE
from stacks.spec import COLOURS, StackSpec
from stacks.topology import stack_containers


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

        net = stack_network(spec)
        self.network = docker.Network(
            net.name,
            name=net.name,
            driver=net.driver,
            labels=[docker.NetworkLabelArgs(label=k, value=v) for k, v in net.labels],
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
        self.pools = {
            colour: AppPool(
                f"{name}-{colour}",
                AppPoolArgs(
                    colour=colour,
                    version=versions[colour],
                    containers=[c for c in containers if c.role == "app" and c.colour == colour],
                    image=self.images[versions[colour]],
                    network=self.network,
                    secrets=secrets,
                    # Not before this version's expand migration has exited 0; with no migration
                    # run, not before the database (a read-only app: the image and network only).
                    after=[*_gate(self.migrations.get(versions[colour]), self.database), *_checked(self.live_checks.get(versions[colour]))],
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for colour in COLOURS
        }

        # Which version each colour runs, in the proxy's version map: it stamps every response with
        # it (X-Cutover-Version), as after the simulator's deploy. Once that colour's pool is up.
        self.version_stamps = {
            colour: local.Command(
                f"{name}-version-{colour}",
                **version_command_args(spec, proxy_spec.name, colour, versions[colour]),
                # Like the switch: a replaced proxy gets its map stamped again.
                triggers=[self.proxy.container_id],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.proxy, self.pools[colour]]),
            )
            for colour in COLOURS
        }

        # The switch is a LiveColour (components/live_colour.py): its read observes the proxy, so
        # refresh sees a flip made outside Pulumi and up restores the configured colour; it waits
        # for the colour's servers to be UP in HAProxy and refuses one that is not. The colour going
        # live is smoke-tested before it, the other colour after it; after the stamps, so live
        # responses carry their version.
        self.switch, self.smoke_tests = declare_gated_switch(
            f"{name}-switch",
            spec,
            self.proxy,
            images={colour: self.images[versions[colour]].digest for colour in COLOURS},
            ready={colour: [self.pools[colour], self.version_stamps[colour]] for colour in COLOURS},
            switch_after=[self.proxy, *self.pools.values(), *self.version_stamps.values()],
            parent=self,
        )

        # The switch goes into the stack's audit ledger on its engine, like a `cutover switch`; the
        # ledger volume outlives `pulumi destroy` (retain_on_delete): an audit trail outlives the stack.
        ledger = ledger_volume(spec)
        self.ledger_volume = docker.Volume(
            ledger.name,
            name=ledger.name,
            labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in ledger.labels],
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


def _checked(check: Optional[pulumi.Resource]) -> list[pulumi.Input[pulumi.Resource]]:
    """A version's pool waits for the live version's check after that version's expand steps."""
    return [check] if check is not None else []


def _gate(migration: Optional[Migration], database: Optional[Database]) -> list[pulumi.Input[pulumi.Resource]]:
    """What a pool waits for besides its image and the network."""
    if migration is not None:
        return [migration.done]
    return [database] if database is not None else []
