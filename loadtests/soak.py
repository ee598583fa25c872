"""``python -m loadtests.soak`` (``make soak``): a long read-write run on a soak stack's live port,
flipped every few seconds, every request recorded, every acknowledged write read back at the end.

It is the rehearsal's machinery run for longer (loadtests/rehearsal.py): the same Locust users (the
app's locustfile and write probe), the same per-request record (loadtests/runner.py), the same
per-flip figures (loadtests/report.py flip_figures) and the same read-back of acknowledged writes
through both colours (read_back.missing_writes). What differs is the shape: flips alternate
``switch`` and ``rollback`` with ``--flip-every`` seconds of load after each, until both
``--requests`` and ``--flips`` are reached (or ``--max-seconds`` runs out), and the record is
streamed to CSV as it goes: only the last minute or so of requests stays in memory (a flip's
figures need the requests around it, and a request reports only when it finishes: up to the
users' 30 s network timeout later), plus the ids of the acknowledged writes. The cutover report
(report.html, report.png) is built from that CSV afterwards (loadtests/csv_report.py).

Exit status: 0 when no request failed, no write was lost and no request sent after a flip reached
the old colour; 1 otherwise, on bad input, or when the soak could not run.
"""

from __future__ import annotations

# Locust (imported by the runner) must patch the standard library before anything else loads.
from loadtests.runner import LoadRun  # noqa: I001  (import order matters)

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from loadtests.bench.stack import forget_images, write_stack
from loadtests.cli import Parser, positive
from loadtests.csv_report import report_from_csv
from loadtests.read_back import missing_writes
from loadtests.report import FlipFigures, percentile
from loadtests.soak_record import StreamedRecord, figure_ready
from loadtests.users import KeepAliveUser, rehearsal_users
from simulator.errors import CutoverError
from simulator.operations import Simulator
from stacks.spec import SpecError

# A request reports when it finishes: a flip's figures wait until every request sent in its span
# has either answered or timed out (KeepAliveUser.network_timeout) before they are computed.
LATE_S = KeepAliveUser.network_timeout + 5.0
MAX_REFUSED = 10  # refused flips (preflight said no, live colour unchanged) before the soak gives up


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m loadtests.soak", description=__doc__)
    parser.add_argument("--stack", default="soak", help="the soak stack (default: soak)")
    parser.add_argument("--live-port", type=positive(int), default=19930, help="its live port; the preview is the next one (default: 19930)")
    parser.add_argument("--requests", type=positive(int), default=1_000_000, help="at least this many requests (default: 1,000,000)")
    parser.add_argument("--flips", type=positive(int), default=100, help="at least this many flips, switch and rollback by turns (default: 100)")
    parser.add_argument("--flip-every", type=positive(float), default=3.0, help="seconds of load after each flip returned (default: 3)")
    parser.add_argument("--users", type=positive(int), default=20, help="keep-alive Locust users (default: 20)")
    parser.add_argument("--max-seconds", type=positive(float), default=4 * 3600.0, help="the load stops by itself after this long (default: 4 h)")
    parser.add_argument("--out", default="soak", help="directory for requests.csv, summary.json, report.html and report.png (default: soak)")
    parser.add_argument("--down", action="store_true", help="remove the soak stack (and its volumes) afterwards")
    parser.add_argument("--fresh", action="store_true", help="start from nothing: remove the stack and forget its app's images first (after the demo changed)")
    return parser.parse_args(argv)


def soak(args: argparse.Namespace) -> dict:
    os.environ["CUTOVER_STACKS_DIR"] = str(write_stack(args.stack, args.live_port))
    sim = Simulator.for_stack(args.stack, say=lambda line: print(f"  {line}", flush=True))
    sim.refuse_foreign_stack()
    if args.fresh:
        sim.down(with_volumes=True)
        forget_images(sim.client, args.stack)
    print(f"soak on stack {args.stack}: ≥ {args.requests:,} requests over ≥ {args.flips} flips, {args.users} keep-alive users", flush=True)
    sim.up()
    app = sim.spec.app
    if app.write_probe is None:
        raise CutoverError(f"the app {app.name} has no write probe: a soak reads back acknowledged writes.")
    load = LoadRun(sim.spec.live_url(), args.users, max_seconds=args.max_seconds, max_requests=10**12,
                   user_classes=rehearsal_users(app), write_probe=app.write_probe)
    out = Path(args.out)
    record = StreamedRecord(load, out / "requests.csv")
    pending: list[tuple[str, str, float, float]] = []  # (label, to colour, returned_at, until) of flips not yet figured
    flips: list[FlipFigures] = []
    refused: list[str] = []
    started = time.time()
    load.begin_phase("soak")
    load.start()
    try:
        load.hold(args.flip_every)
        while load.running and (record.total < args.requests or len(flips) + len(pending) < args.flips):
            number = len(flips) + len(pending) + 1
            step_start = time.time()
            if pending and pending[-1][3] == float("inf"):
                pending[-1] = (*pending[-1][:3], step_start)
            try:
                result = sim.rollback() if number % 2 == 0 else sim.switch()
            except CutoverError as exc:
                # A refused flip (a preflight that found the idle colour unready: live colour
                # unchanged) is no dropped request: counted, shown, and tried again after a hold.
                refused.append(f"{time.strftime('%H:%M:%S')} {exc}")
                print(f"  flip {number} refused: {exc}", flush=True)
                if len(refused) > MAX_REFUSED:
                    raise CutoverError(f"{len(refused)} flips were refused; the last: {exc}") from None
                load.hold(args.flip_every)
                continue
            pending.append((f"{number} {'rollback' if number % 2 == 0 else 'switch'} to {result.to_colour}", result.to_colour, result.flipped_at, float("inf")))
            load.hold(args.flip_every)
            figure_ready(pending, flips, record, time.time() - LATE_S)
            if number % 10 == 0:
                print(f"  {number} flips, {record.total:,} requests, {sum(record.failures.values())} failed so far", flush=True)
    finally:
        load.stop()
    figure_ready(pending, flips, record, float("inf"))
    record.close()
    print(f"  reading back {len(record.acknowledged):,} acknowledged writes through both colours", flush=True)
    missing = {url: missing_writes(app, url, record.acknowledged) for url in (sim.spec.live_url(), sim.spec.preview_url())} if record.acknowledged else {}
    lost = frozenset().union(*missing.values()) if missing else frozenset()
    summary = summarise(record, flips, lost, missing, time.time() - started, load.stopped_because)
    summary["flips_refused"] = refused
    # From the CSV on disk, not from memory: the soak never held its million records at once.
    print(f"  writing the report from {record.path}", flush=True)
    html_path, png_path = report_from_csv(record.path, flips, f"soak on stack {args.stack}: {summary['requests']:,} requests, "
                                          f"{summary['flips']} flips, {summary['failures']} failed, {summary['writes_lost']} writes lost", lost)
    summary["report_html"], summary["report_png"] = str(html_path), str(png_path)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.down:
        sim.down(with_volumes=True)
    return summary


def distribution(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {"count": len(ordered), "min": ordered[0], "p50": percentile(ordered, 50), "p90": percentile(ordered, 90),
            "p99": percentile(ordered, 99), "max": ordered[-1]}


def summarise(record: StreamedRecord, flips: list[FlipFigures], lost, missing: dict, seconds: float, stopped: str) -> dict:
    first_new = [f.first_new_ms for f in flips if f.first_new_ms is not None]
    stale = [f.stale_after_flip for f in flips]
    return {
        "requests": record.flushed,
        "seconds": round(seconds, 1),
        "requests_per_second": round(record.flushed / seconds, 1) if seconds else 0.0,
        "flips": len(flips),
        "failures": sum(record.failures.values()),
        "failures_by_kind": dict(record.failures.most_common()),
        "versions": dict(record.versions),
        "writes_acknowledged": len(record.acknowledged),
        "writes_lost": len(lost),
        "writes_missing_by_url": {url: len(ids) for url, ids in missing.items()},
        "latency_ms": distribution(record.latencies_sample) | {"sampled": "every 10th request"},
        "first_response_from_new_colour_ms": distribution(first_new) | {"flips_with_none": len(flips) - len(first_new)},
        "stale_responses_after_flip": distribution([float(s) for s in stale]) | {"total": sum(stale), "flips_with_any": sum(1 for s in stale if s)},
        "per_flip": [asdict(f) for f in flips],
        "stopped_because": stopped,
        "record": str(record.path),
    }


def verdict(summary: dict, args: argparse.Namespace) -> list[str]:
    problems = []
    if summary["failures"]:
        problems.append(f"{summary['failures']} request(s) failed: {summary['failures_by_kind']}")
    if summary["writes_lost"]:
        problems.append(f"{summary['writes_lost']} acknowledged write(s) lost: {summary['writes_missing_by_url']}")
    if summary["stale_responses_after_flip"]["total"]:
        problems.append(f"{summary['stale_responses_after_flip']['total']} request(s) sent after a flip reached the old colour")
    if summary["requests"] < args.requests or summary["flips"] < args.flips:
        problems.append(f"the soak stopped short ({summary['stopped_because']}): {summary['requests']} requests, {summary['flips']} flips")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = soak(args)
    except (CutoverError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    first, stale = summary["first_response_from_new_colour_ms"], summary["stale_responses_after_flip"]
    print(f"soak: {summary['requests']:,} requests in {summary['seconds']}s ({summary['requests_per_second']}/s), {summary['flips']} flips, "
          f"{summary['failures']} failed, {summary['writes_acknowledged']:,} writes acknowledged, {summary['writes_lost']} lost")
    print(f"first response from the new colour (ms after the flip returned): {first}")
    print(f"stale responses after the flip: {stale}")
    print(f"record: {summary['record']}; summary: {Path(args.out) / 'summary.json'}; report: {summary['report_html']}, {summary['report_png']}")
    problems = verdict(summary, args)
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
