"""Is the stack serving as it should? A pure judgement over what Docker and HAProxy say.

``cutover status`` shows it; monitoring uses its exit status. HAProxy's own server states decide
who really serves live traffic: the live frontend falls back to the other colour when the live one
has no usable server (stacks/proxy_config.py), so "live blue" in the colour map is not enough.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from stacks.spec import other_colour

# `cutover status` exits with this when live traffic has no healthy server of the live colour
# (served by the fallback, or by nothing); 1 stays "the command itself failed".
LIVE_DOWN_EXIT = 2


@dataclass(frozen=True)
class PoolView:
    """One colour as seen by Docker (containers, their health) and by HAProxy (servers UP)."""

    healthy: int  # containers Docker reports healthy
    total: int  # containers that exist
    up: int  # servers HAProxy reports UP
    version: str | None = None


@dataclass(frozen=True)
class Health:
    serving: str | None  # the colour HAProxy sends live traffic to now; None: nothing can serve it
    live_down: bool  # the live colour has no server UP (monitoring: exit LIVE_DOWN_EXIT)
    problems: list[str] = field(default_factory=list)

    @property
    def degraded(self) -> bool:
        return bool(self.problems)

    @property
    def fallback(self) -> bool:
        return self.live_down and self.serving is not None

    def as_dict(self) -> dict:
        return {**asdict(self), "degraded": self.degraded, "fallback": self.fallback}


def assess(stack: str, live: str | None, pool_size: int, pools: dict[str, PoolView], stopped: list[str], proxy_running: bool) -> Health:
    """Who serves live traffic and what is wrong, one sentence per problem, most serious first."""
    fix = f"cutover up --stack {stack}"
    restart = [f"container {name} is stopped; '{fix}' starts it again" for name in stopped]
    if not proxy_running and not stopped and not any(p.total for p in pools.values()):
        return Health(None, True, [f"stack {stack} is not up (it has no containers); '{fix}' creates it"])
    if not proxy_running or live is None:
        return Health(None, True, [f"the proxy is not running: nothing answers on the live port; '{fix}' starts it", *restart])
    problems = []
    idle = other_colour(live)
    if pools[live].up == 0:
        if pools[idle].up > 0:
            serving = idle
            problems.append(
                f"live colour {live} has no server UP in HAProxy: live traffic is served by the fallback, {idle} "
                f"({pools[idle].version or 'unknown version'})"
            )
        else:
            serving = None
            problems.append("no server of either colour is UP in HAProxy: every live request gets 503")
    else:
        serving = live
        if pools[live].up < pool_size or pools[live].healthy < pool_size:
            problems.append(
                f"live pool {live} is below its size: {pools[live].up} of {pool_size} servers UP in HAProxy, "
                f"{pools[live].healthy} of {pool_size} containers healthy"
            )
    problems += restart
    # The idle colour is the fallback; a broken one (not retired: it has containers) is worth saying.
    if pools[idle].total and pools[idle].up < pools[idle].total:
        problems.append(f"idle pool {idle}: {pools[idle].up} of {pools[idle].total} servers UP in HAProxy")
    return Health(serving, pools[live].up == 0, problems)


def observation(health: Health, live: str | None) -> dict:
    """The fields of the ledger record ``status`` appends when it finds live traffic without a
    server of the live colour (the record is one 'end' with no start: no lock is needed)."""
    return {"live": live, "serving": health.serving, "problems": health.problems, "reason": "; ".join(health.problems)}


def same_observation(last: dict | None, fields: dict) -> bool:
    """Whether the ledger's last record already says this (monitoring may poll every few seconds)."""
    return bool(last) and last.get("command") == "observe" and all(last.get(k) == v for k, v in fields.items() if k != "reason")

