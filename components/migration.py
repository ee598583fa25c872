"""The expand step: one one-shot container per distinct app version, before that version's pool starts.

Which command is the expand step is the app's to say (its definition, ``stacks/app.py``):
- self-describing migrations: ``migrations.expand``, which applies the additive migrations that
  version needs and nothing else;
- expand-only migrations: ``migrations.command``, the app's one migrate command, every run of which
  counts as an expand step (the app promises it only ever adds);
- a database but no migrations, or no database at all: no run (:func:`expand_command` is None).

Each run is ``stacks.topology.migration_container(spec, version, <that command>)`` — the version's
own artefact with the database env the app asked for. An expand step is idempotent and never goes
backwards, so running an older version's expand after a newer one's is a no-op: the order between
versions does not matter, only that two runs never overlap and that a pool never starts before its
version's run has succeeded.

Why one per distinct version rather than one per stack: the program cannot tell which of two image
tags is "newer" (a tag is any Docker tag), and it need not — each pool waits for its own version's
run. When both colours run one version there is one run. The resource (and Docker) name carries the
version: ``<topology name>-<version>``. Adding a version adds a run; a version already run is not
run again; a version no colour uses any more has its exited container removed.

Docker reports a migration's exit status, but the provider does not fail on it; ``succeeded`` turns
a non-zero status into an error that stops `pulumi up` before the version's pool is created.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pulumi
import pulumi_docker as docker

from components.images import AppImage
from components.render import declare_one_shot
from stacks.spec import StackSpec
from stacks.topology import ContainerSpec, migration_container

STEP = "expand"


def expand_command(spec: StackSpec) -> tuple[str, ...] | None:
    """The command that is the app's expand step, or None when the app declares no migrations."""
    return spec.app.expand_command if spec.app.database is not None else None


class MigrationFailed(RuntimeError):
    pass


def migration_docker_name(c: ContainerSpec) -> str:
    """The topology names the stack's migration container once; each version's run gets its own name."""
    return f"{c.name}-{c.version}"


class Migration:
    """One version's expand run: the container, and ``done``, an input for ``depends_on``.

    ``done`` resolves to the container once it has exited 0, and fails (with ``MigrationFailed``)
    otherwise, so whatever lists it in ``depends_on`` is never created after a failed migration.
    """

    def __init__(
        self,
        spec: StackSpec,
        version: str,
        command: tuple[str, ...],
        parent: pulumi.Resource,
        secrets: Mapping[str, pulumi.Input[str]],
        depends_on: Sequence[pulumi.Input[pulumi.Resource]],
        image: pulumi.Input[str] | None = None,
    ) -> None:
        self.spec = migration_container(spec, version, command)
        self.docker_name = migration_docker_name(self.spec)
        # The create waits for the run to exit: bounded by cutover:migrationTimeoutSeconds, the
        # same bound the simulator's run of the same migration has.
        self.container: docker.Container = declare_one_shot(
            self.spec, self.docker_name, parent=parent, secrets=secrets, depends_on=depends_on, image=image, timeout_s=spec.migration_timeout_s
        )
        self.done: pulumi.Output[pulumi.Resource] = self.container.exit_code.apply(self._succeeded)

    def _succeeded(self, exit_code: int | None) -> pulumi.Resource:
        if exit_code != 0:
            raise MigrationFailed(
                f"the {STEP} migration of {self.spec.version} ({self.docker_name}) exited with status {exit_code}; "
                f"nothing of that version was started. See `docker logs {self.docker_name}`, fix the cause, then "
                f"re-run it with `pulumi up --replace <its URN>` (`pulumi stack --show-urns` lists it)."
            )
        return self.container


def declare_migrations(
    spec: StackSpec,
    versions: Sequence[str],
    parent: pulumi.Resource,
    secrets: Mapping[str, pulumi.Input[str]],
    depends_on: Sequence[pulumi.Input[pulumi.Resource]],
    images: Mapping[str, AppImage],
) -> dict[str, Migration]:
    """One run per distinct version, one after another (two runs must never race on the schema).

    None at all when the app declares no migrations (``expand_command``)."""
    command = expand_command(spec)
    if command is None:
        return {}
    runs: dict[str, Migration] = {}
    previous: list[pulumi.Resource] = []
    for version in sorted(set(versions)):
        run = Migration(
            spec, version, command, parent, secrets, depends_on=[*depends_on, images[version].resource, *previous], image=images[version].digest
        )
        runs[version] = run
        previous = [run.container]
    return runs
