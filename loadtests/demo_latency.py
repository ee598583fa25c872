"""``python -m loadtests.demo_latency --stack dev``: the rehearsal's load without the rehearsal, and where its latency goes.

The rehearsal's users (the app's locustfile, every task, writes included) at ``--users`` for
``--seconds`` on a stack's live port: no deploy, no switch. Printed and written to JSON (``--json``):
requests per second, p50/p99 over all requests and per request name, failures; the CPU the load
generator (this process: Locust runs on one core) and the app containers used; and, for a stack with
a PostgreSQL database, how many new database sessions the run opened (``pg_stat_database.sessions``):
with a pool that keeps its connections that stays near the pool's size, not near the write count.

Exit status: 0 when every request succeeded; 1 when any failed, on bad input or when it could not run (one
sentence on stderr, loadtests/cli.py).
"""

from __future__ import annotations

# Locust (imported by the runner) must patch the standard library before anything else loads.
from loadtests.runner import LoadRun  # noqa: I001

import argparse
import json
import os
import sys
import time
from pathlib import Path

import docker.errors
from rich.console import Console
from rich.table import Table

from loadtests.cli import Parser, run_measurement
from loadtests.benchmark import get
from loadtests.latency_figures import by_name, latency_bands
from loadtests.proxy_cost import CpuMeter
from loadtests.report import percentile
from loadtests.users import locustfile_users, rehearsal_users
from simulator.docker_driver import connect
from simulator.errors import CutoverError
from stacks.app import AppError
from stacks.spec import COLOURS, SpecError, load_stack
from stacks.topology import DATABASE_NAME, app_container_name, database_container_name, proxy_container_name

console = Console(soft_wrap=True)
STOP_MARGIN_S = 15.0


def database_sessions(client, spec) -> int | None:
    """Sessions ever opened on the stack's database (None: no database, or it does not answer)."""
    if not spec.app.read_write:
        return None
    try:
        container = client.containers.get(database_container_name(spec))
    except docker.errors.NotFound:
        return None
    sql = f"SELECT sessions FROM pg_stat_database WHERE datname = '{DATABASE_NAME}'"
    result = container.exec_run(["psql", "-d", DATABASE_NAME, "-tAc", sql], user="postgres")
    text = result.output.decode(errors="replace").strip()
    return int(text) if result.exit_code == 0 and text.isdigit() else None


def demo_latency(args: argparse.Namespace) -> dict:
    spec = load_stack(args.stack)
    client = connect()
    url = spec.live_url()
    status, _ = get(f"{url}{spec.health_path}")
    if status != 200:
        raise CutoverError(f"the live port {url} answers {spec.health_path} with HTTP {status}; is stack {args.stack} up?")
    apps = [c.id for colour in COLOURS for i in range(1, spec.pool_size + 1)
            for c in client.containers.list(filters={"name": f"^{app_container_name(spec, colour, i)}$"})]
    meter = CpuMeter({"proxy": [client.containers.get(proxy_container_name(spec)).id], "app containers": apps})
    # --locustfile: another user mix on the same stack, for an A/B of the load itself.
    users = locustfile_users(Path(args.locustfile)) if args.locustfile else rehearsal_users(spec.app)
    console.print(f"[bold]demo latency on stack {args.stack}[/bold]: {args.users} users of {', '.join(u.__name__ for u in users)} "
                  f"for {args.seconds:g}s after {args.warmup:g}s warm-up at {url}")
    sessions_before = database_sessions(client, spec)
    load = LoadRun(url, args.users, max_seconds=args.warmup + args.seconds + STOP_MARGIN_S, max_requests=args.max_requests,
                   user_classes=users)
    load.start()
    try:
        load.hold(args.warmup)
        start, cpu_start, sample = time.time(), time.process_time(), meter.sample()
        load.begin_phase("measured")
        load.hold(args.seconds)
        end, cpu_end, sample_end = time.time(), time.process_time(), meter.sample()
    finally:
        load.stop()
    sessions_after = database_sessions(client, spec)
    load_average = os.getloadavg()[0]
    measured = [r for r in load.records if start <= r.started < end]
    latencies = sorted(r.latency_ms for r in measured if not r.failed)
    wall = end - start
    cpu = {k: None if sample[k] is None or sample_end[k] is None else round(100 * (sample_end[k] - sample[k]) / wall, 1)
           for k in ("proxy", "app containers")}
    cpu["load generator"] = round(100 * (cpu_end - cpu_start) / wall, 1)
    summary = {
        "stack": args.stack,
        "locustfile": args.locustfile or "the app's",
        "users": args.users,
        "seconds": round(wall, 2),
        "requests": len(measured),
        "rps": round(len(measured) / wall, 1),
        "failures": sum(r.failed for r in load.records),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "by_name": by_name(measured),
        "latency_bands": latency_bands(measured),
        "cpu_percent": cpu,
        "writes": sum(1 for r in measured if r.status == 201),
        "database_sessions_opened": None if sessions_before is None or sessions_after is None else sessions_after - sessions_before,
        "stopped_because": load.stopped_because,
        "load_average_1min": round(load_average, 2),
        "cpus": os.cpu_count(),
    }
    table = Table(title=f"demo latency: stack {args.stack}, {args.users} users, {summary['rps']} req/s")
    for column in ("request", "requests", "failures", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "request" else "right")
    for name, row in summary["by_name"].items():
        table.add_row(name, str(row["requests"]), str(row["failures"]), f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}")
    table.add_row("all", str(summary["requests"]), str(summary["failures"]), f"{summary['p50_ms']:.1f}", f"{summary['p99_ms']:.1f}", style="bold")
    console.print(table)
    bands = Table(title="latency histogram (successful requests)")
    for column in ("band ms", "requests", "share", "by name"):
        bands.add_column(column, justify="left" if column in ("band ms", "by name") else "right")
    for band in summary["latency_bands"]:
        if band["requests"]:
            upper = "" if band["to_ms"] is None else f"{band['to_ms']:g}"
            bands.add_row(f"{band['from_ms']:g}-{upper}", str(band["requests"]), f"{100 * band['share']:.2f}%",
                          ", ".join(f"{name} {count}" for name, count in band["by_name"].items()))
    console.print(bands)
    console.print("CPU (% of one core): " + ", ".join(f"{k} {'?' if v is None else f'{v:.0f}'}%" for k, v in cpu.items())
                  + f"; new database sessions: {summary['database_sessions_opened']} for {summary['writes']} acknowledged writes")
    if load_average > (os.cpu_count() or 1):
        console.print(f"[yellow]warning: load average {load_average:.1f} on {os.cpu_count()} CPU(s): requests wait for a CPU "
                      f"as much as for the app; run again on a quiet machine[/yellow]")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"figures written to {args.json}")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m loadtests.demo_latency", description=__doc__)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--users", type=int, default=40, help="keep-alive users (default 40, the rehearsal's)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window (default 30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured warm-up (default 3)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="request budget (the run stops there)")
    parser.add_argument("--locustfile", default=None, metavar="PATH", help="run this locustfile's users instead of the app's own")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if min(args.users, args.max_requests) < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--users, --max-requests and --seconds must be positive (--warmup not negative).")
    if args.locustfile and not Path(args.locustfile).is_file():
        parser.error(f"--locustfile {args.locustfile} is not a file.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_measurement(lambda: demo_latency(args), (CutoverError, SpecError, AppError, docker.errors.DockerException))


if __name__ == "__main__":
    sys.exit(main())
