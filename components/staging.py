"""Which colour a `pulumi up` may change, decided from the config and what the proxy says now (pure).

The colour live *now* (before this ``up``) keeps running exactly what it runs: its containers, its
backend in the proxy and its version stamp are declared with ``ignore_changes`` on every input, so
any pool setting (image, health path and interval, environment, stop signal, pool size ...) lands
on the idle colour only, and reaches the other colour at the first ``up`` in which that colour is
idle. A change of the live colour's *version* is refused instead of silently deferred: the config
would otherwise claim a version that is not running.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from components.observed import ObservedState
from stacks.spec import COLOURS, StackSpec, other_colour


@dataclass(frozen=True)
class Staging:
    # The colour serving traffic before this `up` (None: no proxy yet, nothing is held back).
    live_now: str | None
    # The colour the switch makes live (cutover:liveColor).
    target: str
    # Containers per colour: the live colour keeps the size its backend has now.
    pool_sizes: dict[str, int]

    def frozen(self, colour: str) -> bool:
        """Whether ``colour``'s containers, backend and stamp keep their current inputs."""
        return colour == self.live_now

    @property
    def after_switch(self) -> str:
        """The colour whose pool and backend change only once traffic is on ``target``."""
        return other_colour(self.target)

    def pool_spec(self, spec: StackSpec, colour: str) -> StackSpec:
        """``spec`` with ``colour``'s pool size (the live colour's may differ from poolSize)."""
        size = self.pool_sizes[colour]
        return spec if size == spec.pool_size else replace(spec, pool_size=size)


def refusal(spec: StackSpec, observed: ObservedState) -> str | None:
    """One sentence when the config changes the version of the colour that is live now."""
    live = observed.live
    if live is None:
        return None
    running = observed.versions.get(live)
    wanted = spec.version_of(live)
    if running is None or running == wanted:
        return None
    idle = other_colour(live)
    return (
        f"stacks/Pulumi.{spec.stack}.yaml: cutover:{live}Version would change {live}, the colour serving live traffic now, "
        f"from {running} to {wanted}; set cutover:{live}Version back to {running}, release {wanted} to {idle} "
        f"(cutover:{idle}Version) and switch to it."
    )


def plan(spec: StackSpec, observed: ObservedState) -> Staging:
    """The staging for this `up`; raises ``ValueError`` with ``refusal``'s sentence."""
    sentence = refusal(spec, observed)
    if sentence:
        raise ValueError(sentence)
    sizes = {colour: spec.pool_size for colour in COLOURS}
    if observed.live is not None:
        # Growing or shrinking the live pool would add or stop containers that serve traffic.
        sizes[observed.live] = observed.server_totals.get(observed.live) or spec.pool_size
    return Staging(live_now=observed.live, target=spec.live_colour, pool_sizes=sizes)
