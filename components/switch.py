"""The version stamps and the switch's ledger record: the commands run inside the proxy or on its
engine, and their environment (pure, no resources).

The switch itself is a LiveColour resource (components/live_colour.py): `pulumi config set
cutover:liveColor green && pulumi up` is one runtime-API flip inside the running proxy (no reload,
no container restart), and its read sees a flip made outside Pulumi.
"""

from __future__ import annotations

import json
import shlex

import pulumi

from stacks.proxy_config import render_backend
from stacks.spec import StackSpec


def backend_command_args(spec: StackSpec, proxy_container_name: str, colour: str, servers: list[str]) -> dict[str, object]:
    """Install ``colour``'s backend (health check, interval, servers) in the running proxy.

    ``proxy-backend`` validates the whole config and reloads hitlessly (master-worker: the new
    worker takes over the listening sockets, the old one finishes its requests); the same text is
    a no-op. The text travels in the caller's environment (``docker exec -e NAME`` copies it), never
    in the command, so the command is constant and pulumi-command re-runs it exactly when the text
    changes (``environment``; no ``update`` command, so ``create`` runs again).
    """
    if colour not in ("blue", "green"):  # a wiring bug: the colour is part of the command text
        raise ValueError(f"not a colour: {colour!r}")
    return {
        "create": f"docker exec -e CUTOVER_BACKEND {shlex.quote(proxy_container_name)} proxy-backend {colour}",
        "environment": {
            "CUTOVER_BACKEND": render_backend(spec, colour, servers, spec.app.port),
            "DOCKER_HOST": spec.docker_host,
        },
    }


def version_command_args(spec: StackSpec, proxy_container_name: str, colour: str, version: str) -> dict[str, object]:
    """Tell the proxy which version ``colour`` runs: it stamps it on every response of that colour
    (the X-Cutover-Version header, from its runtime version map), so no app has to say it.

    The same ``proxy-version`` the simulator runs after a deploy; re-run whenever ``VERSION`` changes.
    """
    if colour not in ("blue", "green"):  # a wiring bug: the colour is part of the command text
        raise ValueError(f"not a colour: {colour!r}")
    return {
        "create": f'docker exec {shlex.quote(proxy_container_name)} proxy-version {colour} "$VERSION"',
        "environment": {"VERSION": version, "DOCKER_HOST": spec.docker_host},
    }


def switch_record(spec: StackSpec, artefact: str | None) -> dict:
    """The ledger record of a switch `pulumi up` made: an end record with no start (`pulumi up`
    holds no cutover lock, and says so). Only what the switch itself changes goes in: releasing to
    the idle colour must not look like a switch (the command re-runs whenever its record changes)."""
    live = spec.live_colour
    return {
        "phase": "end",
        "command": "switch",
        "outcome": "ok",
        "actor": "pulumi up",
        "args": {"via": "pulumi", "liveColor": live},
        "to_colour": live,
        "to_version": spec.version_of(live),
        "version": spec.version_of(live),
        "artefact": artefact or None,
        "reason": "pulumi up holds no cutover lock",
    }


def ledger_record_args(spec: StackSpec, volume: str, state_image: str, artefact: pulumi.Input[str]) -> dict[str, object]:
    """Append the switch `pulumi up` made to the stack's ledger, through the same writer the CLI
    uses (``cutover-ledger append`` in a one-shot container of the state image, the ledger volume
    mounted), so the chain has one history whichever tool moved traffic."""
    record = pulumi.Output.all(artefact).apply(lambda values: json.dumps(switch_record(spec, values[0]), sort_keys=True, separators=(",", ":")))
    return {
        # The record travels in the environment, never in the command text.
        "create": f'docker run --rm --network none -v {shlex.quote(volume)}:/ledger {shlex.quote(state_image)} cutover-ledger append "$RECORD"',
        "environment": {"RECORD": record, "DOCKER_HOST": spec.docker_host},
    }
