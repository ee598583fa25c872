"""The edge of simulator/leftovers.py: observe what a killed command may have left, repair the
safe part at the start of the next changing command, name the rest.

Safe means: it can only bring the stack back to what some command meant. A server forced into
MAINT/DRAIN goes back to ready (HAProxy's health check still decides whether it gets traffic); a
one-shot container is removed (a migration runs in one transaction, so a killed one changed
nothing, and the next deploy runs it again). A half-replaced pool is never rebuilt behind the
operator's back: which version it should run is theirs to say.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import docker.errors

from simulator.errors import CutoverError
from simulator.leftovers import ONE_SHOT_ROLES, Finding, OneShot, Seen, find_leftovers, needs_history
from simulator.ledger import Operation, commands, parse_records
from simulator.parallel import at_once
from simulator.proxy_api import ProxyAPI, servers_by_backend
from stacks.spec import COLOURS, PROJECT
from stacks.topology import proxy_container_name

if TYPE_CHECKING:
    from simulator.operations import Simulator


def observe(sim: "Simulator", holding_lock: bool) -> Seen:
    # The containers, the proxy (colours and stats in one exec) and the one-shots, read at once.
    observed, proxy_read, one_shots = at_once(sim.driver.observe, lambda: _read_proxy(sim), lambda: _one_shots(sim))
    live, rows = proxy_read
    servers = {} if rows is None else {colour: tuple(rows.get(colour, ())) for colour in COLOURS}
    lock_held_by = stale = None
    if not holding_lock:
        holder = sim.ledger.holder()
        if holder is not None:
            stale = sim.ledger.stale_reason(holder)
            if stale is None:
                lock_held_by = holder.labels.get("cutover.lock.command", "?")
    seen = Seen(
        stack=sim.spec.stack,
        pool_size=sim.spec.pool_size,
        live=live,
        containers=tuple(observed.containers.values()),
        servers=servers,
        one_shots=tuple(one_shots),
        lock_held_by=lock_held_by,
        stale_lock=stale,
        holding_lock=holding_lock,
    )
    if needs_history(seen) and sim.ledger.exists():
        lines, _ = sim.ledger.read()
        seen = replace(seen, rows=tuple(commands(parse_records(lines))))
    return seen


def _read_proxy(sim: "Simulator") -> tuple[str | None, dict | None]:
    """The live colour and each backend's servers; (None, None) when the proxy is not running, and
    (None, {}) when it is not answering yet (restarting): that is for 'up' or the command's own
    checks to handle; the pools and servers are not judged without it."""
    try:
        proxy = sim.client.containers.get(proxy_container_name(sim.spec))
    except docker.errors.NotFound:
        return None, None
    if proxy.status != "running":
        return None, None
    try:
        colours, rows = ProxyAPI(proxy).read()
    except CutoverError:
        return None, {}
    return colours["live"], servers_by_backend(rows)


def _one_shots(sim: "Simulator") -> list[OneShot]:
    stack = sim.spec.stack
    found = {}
    # Migration runs and inspections carry the stack's label; ledger writers name their ledger.
    for filters in ({"label": [f"cutover.project={PROJECT}", f"cutover.stack={stack}"]}, {"label": [f"cutover.ledger={stack}"]}):
        for container in sim.client.containers.list(all=True, filters=filters):
            role = container.labels.get("cutover.role", "")
            if role in ONE_SHOT_ROLES:
                found[container.id] = OneShot(container.name, role, container.status, container.labels.get("cutover.version"))
    return sorted(found.values(), key=lambda one: one.name)


def leftovers(sim: "Simulator") -> list[Finding]:
    """What ``cutover status`` shows: the leftovers as they are now (nothing is changed)."""
    return find_leftovers(observe(sim, holding_lock=False))


def repair(sim: "Simulator", operation: Operation) -> None:
    """At the start of a changing command (lock held): repair what is safe, say each repair in one
    line and list it in the command's end record (``repaired``); name what is not."""
    repaired, named = [], []
    try:
        findings = find_leftovers(observe(sim, holding_lock=True))
    except (CutoverError, docker.errors.APIError) as exc:
        # Looking is a courtesy to this command, never a reason to stop it.
        sim.say(f"could not check for leftovers of an earlier command: {exc}")
        return
    for finding in findings:
        if not finding.automatic:
            sim.say(f"leftover: {finding.describe()}")
            named.append(finding.describe())
            continue
        try:
            _repair_one(sim, finding)
        except (CutoverError, docker.errors.APIError) as exc:
            sim.say(f"could not repair {finding.subject}: {exc}")
            continue
        line = f"repaired: {finding.problem} -> {_what_was_done(finding)}"
        sim.say(line)
        repaired.append(line.removeprefix("repaired: "))
    if repaired:
        operation.details["repaired"] = repaired
    if named:
        operation.details["leftovers"] = named


def _repair_one(sim: "Simulator", finding: Finding) -> None:
    if finding.kind == "forced-state":
        sim.proxy.set_server_state(finding.colour, finding.server, "ready")
    elif finding.kind == "one-shot":
        try:
            sim.client.containers.get(finding.subject).remove(force=True)
        except docker.errors.NotFound:
            pass


def _what_was_done(finding: Finding) -> str:
    return {"forced-state": "set back to ready", "one-shot": "removed"}.get(finding.kind, "done")
