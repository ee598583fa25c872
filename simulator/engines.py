"""Which engine kinds the simulator drives, command by command.

One Docker engine: every command. A swarm stack (``cutover:engine: swarm``, docs/cluster.md):
``up``, ``deploy``, ``status``, ``scale``, ``switch``, ``rollback``, ``rehearse`` and ``down`` (simulator/swarm_ops.py, the services API
on the manager); every other command is refused with one sentence before anything is touched,
rather than half-run as if the manager were a single engine (its containers would land on the
manager alone, outside the swarm's placement, beside the stack's services).
"""

from __future__ import annotations

from simulator.errors import CutoverError
from stacks.spec import StackSpec, load_stack

# What the simulator does on a swarm stack today.
SWARM_COMMANDS = ("up", "deploy", "status", "scale", "switch", "rollback", "rehearse", "down")


def refusal(spec: StackSpec, command: str | None = None) -> str | None:
    """The sentence that refuses ``command`` on ``spec``, or None when the simulator can run it.
    ``command`` None: a command the swarm kind does not have."""
    if not spec.is_swarm or command in SWARM_COMMANDS:
        return None
    what = f"'cutover {command}'" if command else "this command"
    return (
        f"{what} on stack {spec.stack!r}, a Docker Swarm (cutover:engine: swarm), is not yet supported by the simulator, "
        f"which runs {', '.join(SWARM_COMMANDS)} there; use `pulumi up --stack {spec.stack}` for the rest (docs/cluster.md)."
    )


def check_supported(stack: str, command: str | None = None) -> StackSpec:
    """The stack's spec; CutoverError (exit 1, one sentence) for a command the simulator cannot run on it."""
    spec = load_stack(stack)
    message = refusal(spec, command)
    if message:
        raise CutoverError(message)
    return spec


def simulator_for(spec: StackSpec, say=print):
    """The executor of ``spec``'s kind: one engine's Simulator or a swarm's SwarmSimulator."""
    if spec.is_swarm:
        from simulator.swarm_ops import SwarmSimulator

        return SwarmSimulator(spec, say=say)
    from simulator.operations import Simulator

    return Simulator(spec, say=say)
