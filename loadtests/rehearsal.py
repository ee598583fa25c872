"""``cutover rehearse``: a cutover scenario under Locust load, measured request by request.

The scenario is a fixed lifecycle (the shape of a Molecule scenario): bring the stack up, load it,
then run each step — deploy to the idle colour, switch, roll back, switch again — while the load
keeps going, holding the load for a while after every step. It ends with a per-phase table and a
per-flip table, writes every request to a CSV file and beside it the cutover report (an HTML page
and a PNG of the timeline, loadtests/html_report.py), and exits 1 if a single request failed or a
request sent after a flip reached the old colour.
"""

from __future__ import annotations

# Locust (imported by the runner) must patch the standard library before anything else loads.
from loadtests.runner import LoadRun  # noqa: I001  (import order matters)

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, NoReturn

from rich.console import Console
from rich.table import Table

from loadtests.html_report import write_report
from loadtests.read_back import missing_writes
from loadtests.options import MIXES, check_phase_seconds, check_users, parse_steps
from loadtests.report import FlipFigures, PhaseFigures, acknowledged_writes, flip_figures, phase_figures, write_csv
from simulator.errors import CutoverError
from simulator.ledger import state_dir
from loadtests.users import excluded_tags, rehearsal_users
from simulator.engines import simulator_for
from simulator.operations import Simulator
from stacks.spec import SpecError, load_stack

# Wide enough for the tables when the output is a log file rather than a terminal.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)


class _Parser(argparse.ArgumentParser):
    """Bad input is one sentence and exit status 1, as everywhere in cutover (not argparse's usage
    block and 2: it would list options 'cutover rehearse' does not have)."""

    def error(self, message: str) -> NoReturn:
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/bold red] {message.rstrip('.')}.")
        sys.exit(1)


def _checked(check: Callable, convert: Callable = str) -> Callable:
    def parse(text: str):
        try:
            return check(convert(text))
        except ValueError as exc:
            # argparse prefixes the option's name: "argument --users: 0 users would send no load..."
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(prog="cutover rehearse", description=__doc__)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--users", type=_checked(check_users, _number(int)), default=40)
    parser.add_argument("--phase-seconds", type=_checked(check_phase_seconds, _number(float)), default=8.0)
    parser.add_argument("--to-version", default=None, help="version to deploy (default: the live major version + 1)")
    parser.add_argument("--from-version", default=None)
    parser.add_argument("--steps", type=_checked(parse_steps), default="deploy,switch,rollback,switch",
                        help="comma-separated steps, each one of: deploy, switch, rollback")
    parser.add_argument("--mix", choices=MIXES, default="read-write",
                        help="read-write: everything the users do; read: leaves out tasks tagged 'write' (and the write probe)")
    parser.add_argument("--max-requests", type=int, default=500_000, help="stop the load after this many requests")
    parser.add_argument("--out", default=None, help="CSV file for the per-request record; the report (.html, .png) goes beside it")
    parser.add_argument("--summary", default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if isinstance(args.steps, str):  # the default is not passed through type
        args.steps = parse_steps(args.steps)
    return args


def _number(kind: type) -> Callable[[str], float]:
    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None

    return convert


def rehearse(args: argparse.Namespace) -> dict:
    """The rehearsal as one changing command in the stack's ledger: it holds the lock throughout,
    its steps are recorded under it, and its end record carries the load summary and verdict."""
    sim = simulator_for(load_stack(args.stack), say=lambda line: console.print(f"  [dim]{line}[/dim]"))
    arguments = {"steps": args.steps, "mix": args.mix, "users": args.users, "phase_seconds": args.phase_seconds,
                 "from_version": args.from_version, "to_version": args.to_version}
    sim.refuse_foreign_stack()  # as every changing command does first: not a stack Pulumi manages
    with sim.ledger.command("rehearse", arguments, sim.ledger_snapshot) as operation:
        sim.repair_leftovers(operation)  # as every changing command does first (simulator/repair.py)
        summary = _rehearse(sim, args)
        operation.details["load"] = {k: v for k, v in summary.items() if k != "writes_missing_by_url"}
        operation.details["version"] = args.to_version
        problems = verdict(summary)
        if problems:
            operation.outcome = "failed"
            operation.details["reason"] = "; ".join(problems)
    return summary


def _rehearse(sim: Simulator, args: argparse.Namespace) -> dict:
    # An app with nothing to write (no write probe, no locustfile of its own) has only a read mix.
    mix = args.mix if sim.spec.app.write_probe or sim.spec.app.locustfile else "read"
    console.print(f"[bold]rehearsal on stack {args.stack}[/bold]: {' → '.join(args.steps)} under {args.users} keep-alive {mix} users")
    sim.up()
    status = sim.status()
    if args.from_version and status.pools[status.live].version != args.from_version:
        raise CutoverError(f"--from-version {args.from_version} is not live (live {status.live} runs {status.pools[status.live].version}).")
    if args.to_version is None:
        args.to_version = next_version(status.pools[status.live].version or "0")
    counters_before = sim.proxy.frontend_counters("live")

    # Bounded by design: the time budget covers every step generously and the load stops itself.
    budget_s = args.phase_seconds * (len(args.steps) + 1) + 120 * args.steps.count("deploy") + 60 * len(args.steps)
    app = sim.spec.app
    load = LoadRun(
        sim.spec.live_url(),
        args.users,
        max_seconds=budget_s,
        max_requests=args.max_requests,
        user_classes=rehearsal_users(app),
        write_probe=app.write_probe,
        exclude_tags=excluded_tags(args.mix),
    )
    users_from = f"the app's locustfile {app.locustfile}" if app.locustfile else "the app's smoke checks" + (" and write probe" if app.write_probe else "")
    console.print(f"  load: {users_from}")
    flips: list[tuple[str, str, float, int]] = []
    step_starts: list[float] = []
    load.begin_phase(f"0 baseline ({status.live} {status.pools[status.live].version})")
    load.start()
    try:
        load.hold(args.phase_seconds)
        for number, step in enumerate(args.steps, start=1):
            if not load.running:
                raise CutoverError(f"the load stopped early ({load.stopped_because}); raise --max-requests or shorten the scenario.")
            step_starts.append(time.time())
            if step == "deploy":
                result = sim.deploy(args.to_version)
                load.begin_phase(f"{number} after deploy {result.version} to {result.colour}")
            else:
                result = sim.rollback() if step == "rollback" else sim.switch()
                label = f"{number} after {step} to {result.to_colour} ({result.to_version})"
                load.begin_phase(label)
                flips.append((label, result.to_colour, result.flipped_at, len(step_starts)))
                console.print(f"  {step}: {result.from_colour} → {result.to_colour} in {result.flip_seconds * 1000:.0f} ms, old colour drained in {result.drain_seconds:.2f}s")
            load.hold(args.phase_seconds)
    finally:
        load.stop()
    counters_after = sim.proxy.frontend_counters("live")

    records = load.records
    # Every write that was acknowledged must be readable afterwards, through both colours.
    acked = acknowledged_writes(records)
    missing = {url: missing_writes(app, url, acked) for url in (sim.spec.live_url(), sim.spec.preview_url())} if acked else {}
    lost = frozenset().union(*missing.values())
    phases = phase_figures(records, lost)
    step_starts.append(float("inf"))
    flip_rows = [flip_figures(records, label, colour, at, until=step_starts[index]) for label, colour, at, index in flips]
    out = Path(args.out) if args.out else state_dir(args.stack) / f"rehearsal-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    write_csv(records, out)
    html_path, png_path = write_report(records, phases, flip_rows, out, f"rehearsal on stack {args.stack}: {' → '.join(args.steps)}")
    duration = (max(r.finished for r in records) - min(r.started for r in records)) if records else 0.0
    summary = {
        "stack": args.stack,
        "steps": args.steps,
        "requests": len(records),
        "failures": sum(1 for r in records if r.failed),
        "failure_samples": sorted({r.error or f"HTTP {r.status}" for r in records if r.failed})[:5],
        "versions": sorted({r.version for r in records if r.version}),
        "seconds": round(duration, 2),
        "requests_per_second": round(len(records) / duration, 1) if duration else 0.0,
        "write_probe": app.write_probe is not None,
        "writes_acknowledged": len(acked),
        "writes_lost": len(lost),
        "writes_missing_by_url": {url: len(ids) for url, ids in missing.items()},
        "connections": counters_after["connections"] - counters_before["connections"],
        "proxy_requests": counters_after["requests"] - counters_before["requests"],
        "phases": [asdict(p) for p in phases],
        "flips": [asdict(f) for f in flip_rows],
        "stopped_because": load.stopped_because,
        "record": str(out),
        "report_html": str(html_path),
        "report_png": str(png_path),
    }
    _print_tables(phases, flip_rows, summary)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2))
    return summary


def next_version(version: str) -> str:
    """1.4.2 -> 2.0.0; anything without a leading number gets a suffix."""
    major, _, _ = version.partition(".")
    return f"{int(major) + 1}.0.0" if major.isdigit() else f"{version}-next"


def _print_tables(phases: list[PhaseFigures], flips: list[FlipFigures], summary: dict) -> None:
    # A read-only app (no write probe) has no writes to count: no columns for them.
    writes = summary["write_probe"]
    table = Table(title="per phase")
    columns = ("phase", "requests", "failures", *(("writes", "lost") if writes else ()), "versions served", "p50 ms", "p99 ms")
    for column in columns:
        table.add_column(column, justify="left" if column in ("phase", "versions served") else "right")
    for p in phases:
        versions = ", ".join(f"{v}: {n}" for v, n in p.versions.items())
        style = "red" if p.failures or p.lost else None
        cells = (str(p.writes), str(p.lost)) if writes else ()
        table.add_row(p.phase, str(p.requests), str(p.failures), *cells, versions, f"{p.p50_ms:.1f}", f"{p.p99_ms:.1f}", style=style)
    console.print(table)
    flips_table = Table(title="per flip (times relative to the proxy confirming the flip)")
    for column in ("flip", "first response from new colour", "stale responses after flip", "users moved"):
        flips_table.add_column(column)
    for f in flips:
        first = "none" if f.first_new_ms is None else f"{f.first_new_ms:+.1f} ms"
        flips_table.add_row(f.label, first, str(f.stale_after_flip), f"{f.users_moved}/{f.users_active_after}")
    console.print(flips_table)
    console.print(
        f"{summary['requests']} requests in {summary['seconds']}s ({summary['requests_per_second']}/s) over "
        f"{summary['connections']} client connections; failures: {summary['failures']}; "
        + (f"writes acknowledged: {summary['writes_acknowledged']}, lost: {summary['writes_lost']}; " if writes else "")
        + f"record: {summary['record']}"
    )
    console.print(f"report: {summary['report_html']}")
    console.print(f"timeline: {summary['report_png']}")


def verdict(summary: dict) -> list[str]:
    problems = []
    if summary["failures"]:
        problems.append(f"{summary['failures']} request(s) failed, e.g. {summary['failure_samples']}")
    for flip in summary["flips"]:
        if flip["stale_after_flip"]:
            problems.append(f"{flip['stale_after_flip']} request(s) sent after '{flip['label']}' reached the old colour")
    if summary["writes_lost"]:
        problems.append(f"{summary['writes_lost']} acknowledged write(s) could not be read back: {summary['writes_missing_by_url']}")
    if not summary["requests"]:
        problems.append("no request was made")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = rehearse(args)
    except (CutoverError, SpecError) as exc:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {exc}")
        return 1
    problems = verdict(summary)
    for problem in problems:
        console.print(f"[bold red]FAILED:[/bold red] {problem}")
    if not problems:
        lost = ", no write lost" if summary["write_probe"] else ""
        console.print(f"[bold green]PASSED:[/bold green] no request dropped{lost}, every request after a flip reached the new colour")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
