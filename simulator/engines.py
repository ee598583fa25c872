"""Which engine kinds the simulator drives: one Docker engine today. A swarm stack
(``cutover:engine: swarm``, docs/cluster.md) is refused with one sentence before anything is
touched, rather than half-run as if its manager were a single engine (its containers would land on
the manager alone, outside the swarm's placement, and clash with the services Pulumi declares)."""

from __future__ import annotations

from simulator.errors import CutoverError
from stacks.spec import StackSpec, load_stack


def refusal(spec: StackSpec) -> str | None:
    """The sentence that refuses ``spec``, or None when the simulator can drive it."""
    if spec.is_swarm:
        return (
            f"stack {spec.stack!r} targets a Docker Swarm (cutover:engine: swarm), which is not yet supported by the simulator; "
            f"deploy it with `pulumi up --stack {spec.stack}` (docs/cluster.md)."
        )
    return None


def check_supported(stack: str) -> None:
    """Raise CutoverError (exit 1, one sentence) for a stack the simulator cannot drive."""
    message = refusal(load_stack(stack))
    if message:
        raise CutoverError(message)
