"""What a killed cutover command left behind, judged from what is observed: pure, no Docker.

SIGKILL cannot be caught, so a command killed half-way can leave the stack in a state no command
meant: idle servers forced into maintenance in HAProxy, an idle pool half replaced, a one-shot
container (a migration run, an image inspection, a ledger writer) still there. The edge
(simulator/repair.py) gathers a :class:`Seen` and calls :func:`find_leftovers`; each
:class:`Finding` is either safe to repair at the start of the next changing command
(``automatic``) or names the one command that repairs it (``fix``).

A stale lock is the ledger's to judge (``Ledger.stale_reason``); the edge passes its verdict in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.planner import ObservedContainer
from simulator.proxy_api import ServerState
from stacks.spec import COLOURS, other_colour

# HAProxy statuses that only an operator's (our) 'set server ... state' gives a server. HAProxy's
# own "MAINT (resolution)" (a name that does not resolve: the container is gone) is not one of
# them; it ends by itself when the container is back.
FORCED_STATES = ("MAINT", "DRAIN")

# One-shot containers cutover runs and removes itself; one still there outlived its command.
ONE_SHOT_ROLES = ("migration", "inspect", "ledger-writer", "adopt")

# Commands that replace the idle pool, and the ones after which its state is what was meant.
REPLACING = ("deploy", "promote")
SETTLING = ("up", "finalize")


@dataclass(frozen=True)
class OneShot:
    name: str
    role: str
    status: str  # Docker's: created, running, exited, dead...
    version: str | None = None


@dataclass(frozen=True)
class Seen:
    """Everything the judgement needs, observed by the edge."""

    stack: str
    pool_size: int
    live: str | None  # None when the proxy is not running
    containers: tuple[ObservedContainer, ...] = ()
    servers: dict[str, tuple[ServerState, ...]] = field(default_factory=dict)
    one_shots: tuple[OneShot, ...] = ()
    rows: tuple[dict, ...] = ()  # the ledger's commands (simulator.ledger.commands), oldest first
    lock_held_by: str | None = None  # a live holder of the lock other than us: a command is running
    stale_lock: str | None = None  # why the lock left there is stale (the next command releases it)
    holding_lock: bool = False  # True at the start of a changing command: we hold the lock


@dataclass(frozen=True)
class Finding:
    kind: str  # forced-state | half-replaced | one-shot | stale-lock
    subject: str  # what it is about: "green/green-1", a container name, the lock
    problem: str  # one sentence, no trailing full stop
    automatic: bool  # repaired by the next changing command
    fix: str | None = None  # otherwise: the one command that repairs it
    colour: str | None = None
    server: str | None = None

    def describe(self) -> str:
        if self.automatic:
            return f"{self.problem}; the next changing command repairs it"
        return f"{self.problem}: run '{self.fix}'"


def find_leftovers(seen: Seen) -> list[Finding]:
    """What the stack has that no command meant, in the order to repair it.

    While another command holds the lock, what looks half-done may be in progress: nothing is
    judged then (the holder is the one to ask).
    """
    if seen.lock_held_by is not None and not seen.holding_lock:
        return []
    findings = _forced_states(seen) + _idle_pool(seen) + _one_shots(seen)
    if seen.stale_lock and not seen.holding_lock:
        findings.append(Finding("stale-lock", f"cutover-{seen.stack}-lock", f"the stack's lock is stale: {seen.stale_lock}", True))
    return findings


def _forced_states(seen: Seen) -> list[Finding]:
    findings = []
    for colour in COLOURS:
        for server in seen.servers.get(colour, ()):
            if server.status in FORCED_STATES:
                findings.append(Finding(
                    "forced-state", f"{colour}/{server.server}",
                    f"{colour}/{server.server} is held in {server.status} in HAProxy by a cutover command that did not finish",
                    True, colour=colour, server=server.server,
                ))
    return findings


def needs_history(seen: Seen) -> bool:
    """Whether the judgement needs the ledger's rows: only an idle pool that is not whole is
    judged by them (reading the ledger costs a round trip to the engine on every command)."""
    return seen.live is not None and not _idle_members(seen)[2]


def _idle_members(seen: Seen) -> tuple[list[ObservedContainer], list[str], bool]:
    idle = other_colour(seen.live)
    members = sorted((c for c in seen.containers if c.role == "app" and c.colour == idle), key=lambda c: c.name)
    stopped = [m.name for m in members if not m.running]
    versions = {m.version for m in members if m.version}
    return members, stopped, len(members) == seen.pool_size and not stopped and len(versions) == 1


def _idle_pool(seen: Seen) -> list[Finding]:
    if seen.live is None:
        return []  # no proxy: the stack is down or not up yet, 'up' is the answer, not a repair
    idle = other_colour(seen.live)
    members, stopped, whole = _idle_members(seen)
    cause = _unfinished_replacement(seen.rows, idle)
    versions = sorted({m.version for m in members if m.version})
    # An empty idle pool is what 'finalize' leaves on purpose; it is a leftover only when the last
    # change to that colour was a replacement that did not finish.
    if whole or (not members and cause is None):
        return []
    parts = [f"{idle} has {len(members)} of {seen.pool_size} containers" if len(members) < seen.pool_size else f"{idle}'s pool is half replaced"]
    if stopped:
        parts.append(f"{', '.join(stopped)} stopped")
    if len(versions) > 1:
        parts.append(f"mixed versions {', '.join(versions)}")
    if cause is not None:
        version = cause.get("version") or (cause.get("args") or {}).get("version")
        parts.append(f"left by {'an interrupted' if cause.get('outcome') == 'interrupted' else 'a failed'} {cause.get('command')} of {version} (ledger seq {cause.get('seq')})")
    else:
        version = versions[-1] if len(versions) == 1 else None
    if cause is not None and cause.get("command") == "promote":
        fix = f"cutover promote {version} --to {seen.stack}"
    elif cause is not None and cause.get("command") == "finalize":
        # It was retiring this pool: finishing the finalize is the repair.
        fix = f"cutover finalize --stack {seen.stack}"
    else:
        fix = f"cutover deploy {version or 'VERSION'} --stack {seen.stack}"
    return [Finding("half-replaced", idle, ", ".join(parts), False, fix=fix, colour=idle)]


def _unfinished_replacement(rows: tuple[dict, ...], colour: str) -> dict | None:
    """The last command that replaced ``colour``'s pool, if it did not end ok and nothing settled
    the pool after it."""
    for row in reversed(rows):
        command = row.get("command")
        if command in SETTLING and row.get("outcome") == "ok":
            return None
        if (command in REPLACING or command == "finalize") and _replaced_colour(row) == colour:
            return row if row.get("outcome") in ("interrupted", "failed") else None
    return None


def _replaced_colour(row: dict) -> str | None:
    """The idle colour a deploy or promote worked on: the other one than live at its start."""
    if row.get("colour") in COLOURS:
        return row["colour"]
    live = (row.get("colours_before") or {}).get("live")
    return other_colour(live) if live in COLOURS else None


def _one_shots(seen: Seen) -> list[Finding]:
    findings = []
    for one in seen.one_shots:
        if one.role not in ONE_SHOT_ROLES:
            continue
        if one.role == "ledger-writer" and one.status == "running":
            # A read by 'status' or 'audit', which take no lock, may be running right now.
            continue
        what = {"migration": "migration run", "inspect": "image inspection", "ledger-writer": "ledger writer", "adopt": "volume hand-over"}[one.role]
        of = f" of {one.version}" if one.version else ""
        findings.append(Finding("one-shot", one.name, f"the {what}{of} {one.name} outlived its command ({one.status})", True))
    return findings
