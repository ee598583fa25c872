"""``python -m loadtests.bench`` (``make bench``): five ways of switching versions, one run.

On the local engine, with the same app images (the demo at two versions, built by a bench stack),
the same load (loadtests/bench/client.py: keep-alive connections sending GET /version back to back)
and the same machine, one way after the other: cutover's HAProxy map flip, stop-then-start, nginx
reload, HAProxy reload and Caddy's /load. Each way switches ``--switches`` times between the two
versions; the figures (loadtests/bench/figures.py says how each is defined) go to
``--out``/results.json and results.md, and the Markdown table is printed. Every measured request goes
to ``--out``/requests.csv, and the cutover report beside it (report.html: the whole run's timeline,
the per-way and per-switch tables, the comparison chart, each way's timeline; report.png: the
timeline), as a rehearsal writes (loadtests/bench/report.py).

The bench stack stays up afterwards (``--down`` removes it); the other ways' containers are removed.
Exit status: 0 when the run completed (whatever it measured), 1 on bad input or when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from loadtests.bench.client import KeepAliveLoad
from loadtests.bench.figures import Switch, WayFigures, markdown_table, way_figures
from loadtests.bench.report import WayRun, write_bench_report
from loadtests.bench import ways as w
from loadtests.bench.stack import VERSIONS, forget_images, write_stack
from loadtests.charts import comparison_chart, png_bytes
from loadtests.cli import Parser, fail, positive
from simulator.errors import CutoverError
from simulator.operations import Simulator
from stacks.spec import SpecError

WAYS = ("cutover", "stop-start", "nginx", "haproxy", "caddy")
CONVERGE_DEADLINE_S = 60.0
CHART_METRICS = ("failed", "converge_ms_p50", "switch_p99_ms", "steady_p99_ms")


def say(line: str) -> None:
    print(f"  {line}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m loadtests.bench", description=__doc__)
    parser.add_argument("--stack", default="bench", help="the bench stack (default: bench)")
    parser.add_argument("--base-port", type=positive(int), default=19920,
                        help="the stack's live port; preview +1, stop-then-start +2, nginx +3, HAProxy +4, Caddy +5 (default: 19920)")
    parser.add_argument("--switches", type=positive(int), default=int(os.environ.get("BENCH_SWITCHES", "20")),
                        help="switches per way (default: $BENCH_SWITCHES or 20)")
    parser.add_argument("--connections", type=positive(int), default=8, help="keep-alive connections of the load (default: 8)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the first switch, not measured (default: 3)")
    parser.add_argument("--steady", type=float, default=5.0, help="seconds of steady load measured before the first switch (default: 5)")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds of load after each switch converged (default: 2)")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, from: {', '.join(WAYS)} (default: all)")
    parser.add_argument("--out", default="bench", help="directory for results.json, results.md, comparison.png, requests.csv, report.html and report.png (default: bench)")
    parser.add_argument("--down", action="store_true", help="remove the bench stack (and its volumes) afterwards")
    parser.add_argument("--fresh", action="store_true", help="start from nothing: remove the stack and forget its app's images first (after the demo changed)")
    args = parser.parse_args(argv)
    args.ways = [x.strip() for x in args.ways.split(",") if x.strip()]
    unknown = [x for x in args.ways if x not in WAYS]
    if unknown or not args.ways:
        fail(f"{(unknown or [args.ways])[0]!r} is not a way; use a comma-separated list of {', '.join(WAYS)}.")
    if not args.base_port + 5 <= 65535:
        fail(f"--base-port {args.base_port} leaves no room for the five ports after it.")
    return args


def wait_all_new(load: KeepAliveLoad, version: str, since: float) -> bool:
    """Until the last response of every connection since ``since`` is a 2xx from ``version`` (a deadline)."""
    deadline = time.monotonic() + CONVERGE_DEADLINE_S
    while time.monotonic() < deadline and load.running:
        recent = [s for s in load.samples[-load.connections * 4:] if s.started > since]
        if len(recent) >= load.connections and all(not s.failed and s.version == version for s in recent[-load.connections:]):
            return True
        time.sleep(0.05)
    return False


def measure(way, args: argparse.Namespace) -> tuple[WayFigures, WayRun]:
    say(f"{way.name}: {args.switches} switches under {args.connections} keep-alive connections on 127.0.0.1:{way.port}")
    budget = args.warmup + args.steady + args.switches * (CONVERGE_DEADLINE_S + args.hold + 60)
    load = KeepAliveLoad(way.port, args.connections, max_seconds=budget)
    load.start()
    switches: list[Switch] = []
    notes = ""
    try:
        if not wait_all_new(load, VERSIONS[0], 0.0):
            raise CutoverError(f"{way.name} never served {VERSIONS[0]} on port {way.port}.")
        time.sleep(args.warmup)
        measured_from = time.time()
        time.sleep(args.steady)
        for number in range(args.switches):
            target = VERSIONS[(number + 1) % 2]
            commanded = time.time()
            flipped_at = way.switch(target)
            # After a refused preflight (CutoverWay), from the attempt that flipped.
            commanded = getattr(way, "last_attempt_at", None) or commanded
            switches.append(Switch(commanded, time.time(), target, flipped_at))
            if not wait_all_new(load, target, commanded):
                notes = f"switch {number + 1} had not converged after {CONVERGE_DEADLINE_S:.0f}s"
            time.sleep(args.hold)
    finally:
        load.stop()
    if getattr(way, "refused", 0):
        notes = "; ".join(filter(None, [notes, f"{way.refused} switch(es) refused by cutover's preflight (a colour unhealthy in Docker), "
                                               "waited on and retried; measured from the retry"]))
    figures = way_figures(way.name, load.samples, switches, measured_from, notes)
    say(f"  {figures.requests} requests, {figures.failed} failed {figures.failures_by_kind or ''}, converged p50 {figures.converge_ms_p50} ms")
    # The report's timeline shows the measured run, as the figures do (not the warm-up).
    return figures, WayRun(figures.way, [s for s in load.samples if s.started >= measured_from], switches)


def run(args: argparse.Namespace) -> tuple[list[WayFigures], list[WayRun]]:
    os.environ["CUTOVER_STACKS_DIR"] = str(write_stack(args.stack, args.base_port))
    sim = Simulator.for_stack(args.stack, say=say)
    if args.fresh:
        sim.down(with_volumes=True)
        forget_images(sim.client, args.stack)
    say(f"bench stack {args.stack}: up with {VERSIONS[0]} (blue, live) and {VERSIONS[1]} (green)")
    sim.up()
    status = sim.status()
    if status.live != "blue":
        sim.switch(to="blue")
    images = {pool.version: pool.image_id for pool in sim.status().pools.values()}
    if set(images) != set(VERSIONS) or not all(images.values()):
        raise CutoverError(f"the bench stack should run {VERSIONS} on its two colours, but runs {images}.")
    images = {v: images[v] for v in VERSIONS}
    if set(args.ways) & {"nginx", "haproxy", "caddy"}:
        w.build_proxy_images(sim.client, sim.spec.base_image, say)
    rows, runs = [], []
    pair = w.AppPair(sim, images, f"{w.network_name(sim.spec)}-alt")
    try:
        if set(args.ways) & {"nginx", "haproxy", "caddy"}:
            pair.create()
        for key in args.ways:
            way = {
                "cutover": lambda: w.CutoverWay(sim),
                "stop-start": lambda: w.StopStartWay(sim, images, args.base_port + 2),
                "nginx": lambda: w.NginxWay(sim, pair, args.base_port + 3),
                "haproxy": lambda: w.HAProxyReloadWay(sim, pair, args.base_port + 4),
                "caddy": lambda: w.CaddyWay(sim, pair, args.base_port + 5),
            }[key]()
            try:
                way.setup()
                figures, way_run = measure(way, args)
                rows.append(figures)
                runs.append(way_run)
            finally:
                way.teardown()
    finally:
        pair.remove()
        if args.down:
            sim.down(with_volumes=True)
    return rows, runs


def write_results(rows: list[WayFigures], runs: list[WayRun], args: argparse.Namespace) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load": {"generator": "loadtests/bench/client.py (Python threads, keep-alive, GET /version back to back)",
                 "connections": args.connections, "switches_per_way": args.switches, "hold_s": args.hold, "steady_s": args.steady},
        "versions": list(VERSIONS),
        "ways": [asdict(r) for r in rows],
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    (out / "results.md").write_text(markdown_table(rows) + "\n")
    # The five ways side by side, one panel per figure (loadtests/charts.py, as in the cutover report).
    figure = comparison_chart([asdict(r) for r in rows], list(CHART_METRICS), label_key="way",
                              title=f"{args.switches} switches per way, {args.connections} keep-alive connections")
    (out / "comparison.png").write_bytes(png_bytes(figure))
    say(f"writing the report: {out / 'requests.csv'}, {out / 'report.html'}, {out / 'report.png'}")
    write_bench_report(runs, figure, out, f"make bench: {len(rows)} way(s), {args.switches} switches each, {args.connections} keep-alive connections")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows, runs = run(args)
    except (CutoverError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = write_results(rows, runs, args)
    print(markdown_table(rows))
    print(f"results: {out / 'results.json'}, {out / 'results.md'}; report: {out / 'report.html'}, {out / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
