"""What "back" means: pure decisions over the stack's ledger (its merged command rows).

``plan_rollback`` finds the last flip of the live colour and returns the colour, version and image
that were live before it, or refuses in one sentence: no switch to undo, already undone, the live
colour moved outside cutover, or the colour to go back to was redeployed since.
``unfinished_flip`` finds a switch or rollback that was interrupted after the proxy already flipped,
so a retry completes it instead of flipping back.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.errors import Refused
from stacks.spec import other_colour

# Commands that move the live colour. 'auto-rollback' is recorded inside the switch it undid.
FLIP_COMMANDS = ("switch", "rollback", "auto-rollback")


@dataclass(frozen=True)
class Flip:
    seq: int
    command: str
    from_colour: str
    to_colour: str
    before: dict  # the colours snapshot taken before it: {"live": ..., "blue": {"version", "image"}, ...}
    finished: bool  # False: interrupted, and it may or may not have flipped the proxy


@dataclass(frozen=True)
class RollbackPlan:
    target: str  # the colour to make live again
    version: str | None
    image: str | None
    undoes_seq: int  # the switch it undoes


def flips(rows: list[dict]) -> list[Flip]:
    """The rows that moved (or, interrupted, may have moved) the live colour, oldest first."""
    found = []
    for row in rows:
        if row.get("command") not in FLIP_COMMANDS:
            continue
        before, after = row.get("colours_before") or {}, row.get("colours_after") or {}
        source = row.get("from_colour") or before.get("live")
        target = row.get("to_colour") or after.get("live")
        finished = row.get("outcome") != "interrupted" or bool(after)
        if not finished and source:
            target = other_colour(source)  # where it was going; whether it got there the proxy says
        if source and target and source != target:
            found.append(Flip(row["seq"], row["command"], source, target, before, finished))
    return found


def _last_flip(rows: list[dict], live: str | None) -> tuple[Flip | None, dict | None]:
    """The last flip that is known to have happened (an interrupted one only if the proxy routes
    to where it was going), and a successful ``down`` after it, if any (the stack was removed)."""
    candidates = flips(rows)
    while candidates and not candidates[-1].finished and candidates[-1].to_colour != live:
        candidates.pop()
    flip = candidates[-1] if candidates else None
    removed = next((r for r in reversed(rows) if r.get("command") == "down" and r.get("outcome") == "ok" and (flip is None or r["seq"] > flip.seq)), None)
    return flip, removed


def plan_rollback(stack: str, rows: list[dict], now: dict) -> RollbackPlan:
    """Where ``cutover rollback`` goes, given the ledger's rows and the colours as they are ``now``
    (the same snapshot the ledger records: live colour, each colour's version and image)."""
    live = now.get("live")
    flip, removed = _last_flip(rows, live)
    if removed is not None:
        raise Refused(f"nothing to roll back on stack {stack}: it was removed ('down', seq {removed['seq']}) after its last switch; 'cutover switch' makes the idle colour live.")
    if flip is None:
        raise Refused(f"nothing to roll back on stack {stack}: no switch has made a colour live yet; 'cutover switch' makes the idle colour live.")
    if flip.command != "switch":
        raise Refused(
            f"nothing to roll back on stack {stack}: the last flip ({flip.command}, seq {flip.seq}) already went back to {flip.to_colour}; "
            f"'cutover switch' goes forward to {flip.from_colour} again."
        )
    if live != flip.to_colour:
        raise Refused(
            f"refusing to roll back stack {stack}: the last switch (seq {flip.seq}) made {flip.to_colour} live, but {live or 'no colour'} is live now "
            f"(moved outside cutover?); check 'cutover status', then use 'cutover switch'."
        )
    was, runs = flip.before.get(flip.from_colour) or {}, now.get(flip.from_colour) or {}
    if (was.get("version"), was.get("image")) != (runs.get("version"), runs.get("image")):
        if not runs.get("containers"):
            raise Refused(
                f"refusing to roll back stack {stack}: {flip.from_colour} ran {_describe(was)} before switch seq {flip.seq} but runs nothing now "
                f"(retired since, by 'cutover finalize'?); there is nothing warm to go back to."
            )
        raise Refused(
            f"refusing to roll back stack {stack}: {flip.from_colour} ran {_describe(was)} before switch seq {flip.seq} but runs {_describe(runs)} now "
            f"(redeployed since); 'cutover deploy {was.get('version')}' puts it back on {flip.from_colour}, or 'cutover switch' makes what it runs now live."
        )
    return RollbackPlan(flip.from_colour, was.get("version"), was.get("image"), flip.seq)


def unfinished_flip(rows: list[dict], command: str, live: str | None) -> Flip | None:
    """The ``command`` (switch or rollback) that was the last flip, was interrupted, and had already
    flipped the proxy to its target: a retry of it completes it (drain, record) instead of flipping again."""
    candidates = [f for f in flips(rows) if f.command in ("switch", "rollback")]
    if not candidates:
        return None
    last = candidates[-1]
    if last.command == command and not last.finished and last.to_colour == live:
        return last
    return None


def _describe(colour: dict) -> str:
    version = colour.get("version")
    if not version:
        return "nothing" if not colour.get("containers") else "mixed versions"
    image = colour.get("image")
    return f"{version} ({image.split(':', 1)[-1][:12]})" if image else version
