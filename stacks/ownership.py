"""Who owns a stack's Docker objects: the Pulumi program or the simulator (pure, no Docker).

Both executors create the same containers under the same names, so without a mark either one would
quietly take over (adopt, replace, remove) what the other created and leave the other's state
wrong: Pulumi's state would name containers the simulator recreated; the simulator would remove
containers Pulumi still believes it runs. Each executor labels every Docker object it creates with
``cutover.managed-by`` and refuses a stack whose containers carry the other's mark.

A container without the label (made before the label existed) belongs to nobody in particular:
neither executor refuses it.

The label is not part of ``ContainerSpec`` (each executor adds its own), so the fingerprint —
which both executors compute from the spec — stays the same whichever executor created it.
"""

from __future__ import annotations

from typing import Iterable, Mapping

MANAGED_BY = "cutover.managed-by"
PULUMI = "pulumi"
SIMULATOR = "cutover"
_NAMES = {PULUMI: "Pulumi", SIMULATOR: "the cutover simulator"}


def owner_labels(labels: Mapping[str, str] | Iterable[tuple[str, str]], owner: str) -> dict[str, str]:
    """``labels`` plus the owner's mark."""
    if owner not in _NAMES:  # a wiring bug, not a user error
        raise ValueError(f"unknown owner {owner!r}")
    return {**dict(labels), MANAGED_BY: owner}


def foreign(owners: Mapping[str, str | None], me: str) -> list[str]:
    """The containers (name -> their ``cutover.managed-by``, None if unlabelled) that another
    executor manages, sorted."""
    return sorted(name for name, owner in owners.items() if owner and owner != me)


def parse_listing(text: str) -> dict[str, str | None]:
    """``docker ps --format '{{.Names}}\\t{{.Label "cutover.managed-by"}}'`` output as name -> owner."""
    owners: dict[str, str | None] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, owner = line.partition("\t")
        owners[name.strip()] = owner.strip() or None
    return owners


def refusal(stack: str, owners: Mapping[str, str | None], me: str) -> str | None:
    """One sentence refusing to act on ``stack`` when another executor manages its containers; None
    when ``me`` may go on."""
    others = foreign(owners, me)
    if not others:
        return None
    owner = owners[others[0]]
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    if me == SIMULATOR:
        remedy = f"change it with `pulumi up -s {stack}` instead, or remove it with `pulumi destroy -s {stack}` before using cutover on it"
    else:
        remedy = (
            f"manage it with cutover instead, or remove it with `cutover down --stack {stack}` "
            f"(the database volume stays and the new stack takes it over) before `pulumi up`"
        )
    return f"stack {stack} is managed by {_NAMES.get(owner, repr(owner))} (its containers {shown} carry {MANAGED_BY}={owner}): {remedy}."


def listing_command(stack: str, project: str) -> str:
    """The docker CLI command whose output ``parse_listing`` reads: every container of the stack,
    running or not, with its owner label."""
    return (
        f"docker ps --all --no-trunc --filter label=cutover.project={project} --filter label=cutover.stack={stack} "
        "--format '{{.Names}}\t{{.Label \"cutover.managed-by\"}}'"
    )
