"""``python -m loadtests.proxy_cost --stack perf``: what the proxy costs, through it vs directly, with wrk.

A benchmark, not a test. It reads a stack that is up and starts, beside it, as many throw-away app
containers as the live colour has (the stack's pool size), from the live colour's image with the
environment its containers get, each published on a free 127.0.0.1 port (loadtests.benchmark's
DirectContainer); it removes them whatever happens. Then, for each concurrency C (``--concurrency``):

- **proxy**: N wrk processes (N = pool size), each with C/N keep-alive connections, on the live port;
- **direct**: N wrk processes, the i-th with C/N connections on the i-th direct container.

The same number of wrk processes and connections either way, so the load generator costs the same in
both; proxy and direct alternate (``--rounds``; the order swaps each round), so machine noise hits both.
wrk is closed-loop: C connections send back to back, so its rate is the most this concurrency gets;
a run with any failure (socket error or non-2xx) has no "max rate with 0 failures" (shown as n/a).
Latency: each wrk process reports its latency quantiles (1,000 points) and its request count; the
processes of a run are merged by weighting each one's quantiles by its requests.

Where the time goes: over each run the CPU used by the proxy container, the app containers (from the
engine's cgroup accounting, when readable) and the wrk processes (their rusage), as % of one core.
On a 2-core machine the load generator competes with what it measures: ``--pin-wrk CPU`` pins the wrk
processes to one CPU (taskset) so the rest get the other.

Output: a table per concurrency (rates, p50/p99, proxy/direct ratios, CPU) and JSON (``--json``).
``--compare BEFORE.json`` prints an earlier run's ratios beside this one's (before/after a change).
``--variant-config FILE`` measures a changed HAProxy base config in the same run: each round also has
a **variant** run, the proxy reloaded on FILE for it and back on the shipped config after
(loadtests/proxy_variant.py), and a second table gives variant/direct ratios beside proxy/direct.
wrk is Debian's (``apt-get install wrk``; scripts/ensure-wrk.sh does it as root).
Exit status: 0 when every request succeeded; 1 when any failed, on bad input or when the benchmark could not
run (one sentence on stderr, loadtests/cli.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

# loadtests.benchmark imports Locust first (its monkey patching must come before anything else).
from loadtests.benchmark import DirectContainer, direct_environment, get, live_image, measured_request  # noqa: I001

import docker.errors
from rich.console import Console
from rich.table import Table

from simulator.docker_driver import connect
from simulator.errors import CutoverError
from simulator.proxy_api import ProxyAPI
from stacks.app import AppError
from stacks.spec import SpecError, load_stack
from stacks.topology import app_container_name, proxy_container_name

from loadtests.cli import Parser, run_measurement
from loadtests.proxy_variant import ProxyConfigs, read_variant
from loadtests.latency_figures import GOAL_P99, GOAL_RATE, Run, WrkResult, merged_percentile, parse_wrk_output, split, summarise

# Wide enough for the table when the output is a file or a CI log (a terminal keeps its own width).
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 170)
QUANTILE_POINTS = 1000
WRK_MARGIN_S = 20.0  # a wrk process that outlives its duration by this much is killed: every run is bounded

# Printed by each wrk process when it ends: its totals and its latency quantile function (in µs).
WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "q": [',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
  for i = 1, %(points)d do
    if i > 1 then io.write(",") end
    io.write(string.format("%%d", latency:percentile(i * 100.0 / %(points)d)))
  end
  io.write("]}\\n")
end
""".replace("%(points)d", str(QUANTILE_POINTS)).replace("%%", "%")


def run_wrk(urls: list[str], connections: int, seconds: float, script: Path, pin: str | None) -> list[WrkResult]:
    """One wrk process per URL, in parallel, C/N connections each; each bounded by a kill deadline."""
    procs = []
    for url, conns in zip(urls, split(connections, len(urls))):
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--timeout", "5s", "-s", str(script), url]
        if pin is not None:
            cmd = ["taskset", "-c", pin, *cmd]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = []
    deadline = time.monotonic() + seconds + WRK_MARGIN_S
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise CutoverError(f"wrk did not end within {seconds + WRK_MARGIN_S:.0f}s") from None
        # The child's CPU time: its own rusage, read when it is reaped (communicate waited for it).
        data = parse_wrk_output(out)
        errors = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")}
        results.append(WrkResult(int(data["requests"]), data["duration_us"] / 1e6, errors, data["q"], 0.0))
    return results


class CpuMeter:
    """CPU seconds used by named containers (cgroup v1 cpuacct or v2 cpu.stat) and by our children."""

    def __init__(self, groups: dict[str, list[str]]) -> None:
        self.groups = groups  # name -> container ids

    @staticmethod
    def _container_ns(container_id: str) -> int | None:
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage")
        if v1.exists():
            return int(v1.read_text())
        for v2 in (Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
                   Path(f"/sys/fs/cgroup/docker/{container_id}/cpu.stat")):
            if v2.exists():
                for line in v2.read_text().splitlines():
                    if line.startswith("usage_usec "):
                        return int(line.split()[1]) * 1000
        return None

    def sample(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, ids in self.groups.items():
            values = [self._container_ns(i) for i in ids]
            out[name] = None if any(v is None for v in values) else sum(values) / 1e9
        usage = os.times()
        out["wrk"] = usage.children_user + usage.children_system
        return out


def backend_reuse(proxy: ProxyAPI | None, backend: str) -> tuple[int, int] | None:
    """(connect, reuse) of a proxy backend, from its stats: how often a request needed a new server
    connection. None when there is no proxy to ask (a direct run)."""
    if proxy is None:
        return None
    row = next((r for r in proxy.stats() if r.get("pxname") == backend and r.get("svname") == "BACKEND"), None)
    return None if row is None else (int(row.get("connect") or 0), int(row.get("reuse") or 0))


def measure(target: str, urls: list[str], connections: int, round_: int, args: argparse.Namespace, script: Path, meter: CpuMeter,
            proxy: ProxyAPI | None = None, backend: str = "") -> Run:
    if args.warmup > 0:
        run_wrk(urls, connections, args.warmup, script, args.pin_wrk)
    reuse_before = backend_reuse(proxy, backend)
    before, start = meter.sample(), time.monotonic()
    results = run_wrk(urls, connections, args.seconds, script, args.pin_wrk)
    after, wall = meter.sample(), time.monotonic() - start
    reuse_after = backend_reuse(proxy, backend)
    cpu = {k: (None if before[k] is None or after[k] is None else round(100 * (after[k] - before[k]) / wall, 1)) for k in before}
    requests = sum(r.requests for r in results)
    seconds = max(r.duration_s for r in results)
    errors = {k: sum(r.errors[k] for r in results) for k in results[0].errors}
    run = Run(target, connections, round_, requests, round(seconds, 2), round(requests / seconds, 1) if seconds else 0.0,
              sum(errors.values()), errors, merged_percentile(results, 50), merged_percentile(results, 99), cpu)
    if reuse_before and reuse_after:
        run.server_connects, run.server_reuses = (reuse_after[0] - reuse_before[0], reuse_after[1] - reuse_before[1])
    cpu_text = ", ".join(f"{k} {v:.0f}%" for k, v in cpu.items() if v is not None)
    if run.server_connects is not None:
        cpu_text += f"; proxy opened {run.server_connects} server connection(s), reused one {run.server_reuses} time(s)"
    console.print(f"  [dim]{target} c={connections} #{round_}: {run.requests} requests, {run.rps:.0f} req/s, "
                  f"p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms, {run.failures} failed; CPU {cpu_text}[/dim]")
    return run


def proxy_cost(args: argparse.Namespace) -> dict:
    if shutil.which("wrk") is None:
        raise CutoverError("wrk is not installed; install Debian's: apt-get install wrk (or bash scripts/ensure-wrk.sh as root).")
    spec = load_stack(args.stack)
    app = spec.app
    path = args.path or measured_request(app).path
    client = connect()
    live = live_image(client, spec)
    proxy_url = spec.live_url()
    status, _ = get(f"{proxy_url}{path}")
    if status != 200:
        raise CutoverError(f"the live port {proxy_url} answers {path} with HTTP {status}; is stack {args.stack} healthy?")
    pool = spec.pool_size
    proxy_api = ProxyAPI(client.containers.get(proxy_container_name(spec)))
    if min(args.concurrency) < pool:
        raise CutoverError(f"every --concurrency must be at least the pool size ({pool}): one connection per wrk process at least.")
    environment, network = direct_environment(client, spec, live)
    stack_ids = {
        "proxy": [client.containers.get(proxy_container_name(spec)).id],
        "live app": [client.containers.get(app_container_name(spec, live.colour, i)).id for i in range(1, pool + 1)],
    }
    console.print(f"[bold]proxy cost on stack {args.stack}[/bold]: {app.name} {live.version} ({live.colour}), {pool} app container(s); "
                  f"GET {path}; wrk x{pool} process(es){' pinned to CPU ' + args.pin_wrk if args.pin_wrk else ''}; "
                  f"{args.seconds:g}s per run after {args.warmup:g}s warm-up, {args.rounds} round(s); concurrency {args.concurrency}")
    # The machine's run queue: with other work on it, every hop of a request waits for a CPU, and the
    # proxy's path has two more than the direct one; the figures then measure the machine.
    load_before = os.getloadavg()
    directs: list[DirectContainer] = []
    runs: list[Run] = []
    configs = ProxyConfigs(client.containers.get(proxy_container_name(spec)), read_variant(args.variant_config)) if args.variant_config else None
    with tempfile.TemporaryDirectory(prefix="proxy-cost-") as tmp:
        script = Path(tmp) / "figures.lua"
        script.write_text(WRK_SCRIPT)
        try:
            for i in range(1, pool + 1):
                direct = DirectContainer(client, live.image_id, app.port, spec.health_path,
                                         {**environment, "CUTOVER_INSTANCE": f"proxy-cost-direct-{i}"}, network)
                direct.name = f"cutover-{args.stack}-proxy-cost-direct-{os.getpid()}-{i}"
                directs.append(direct)
                direct.__enter__()
            meter = CpuMeter({**stack_ids, "direct app": [d.container.id for d in directs]})
            targets = {"proxy": [f"{proxy_url}{path}"] * pool, "direct": [f"{d.url}{path}" for d in directs]}
            if configs:
                targets["variant"] = targets["proxy"]
            for connections in args.concurrency:
                for round_ in range(1, args.rounds + 1):
                    order = [t for t in ("proxy", "direct", "variant") if t in targets]
                    for target in order if round_ % 2 else order[::-1]:
                        if configs and target != "direct":
                            configs.use("variant" if target == "variant" else "shipped")
                        runs.append(measure(target, targets[target], connections, round_, args, script, meter,
                                            proxy_api if target != "direct" else None, live.colour))
        finally:
            if configs:
                configs.restore()
            for direct in directs:
                direct.remove()
    rows = [summarise(runs, c) for c in args.concurrency]
    load_after = os.getloadavg()
    summary = {
        "stack": args.stack,
        "app": app.name,
        "version": live.version,
        "path": path,
        "app_containers": pool,
        "wrk_processes": pool,
        "wrk_pinned_cpu": args.pin_wrk,
        "cpus": os.cpu_count(),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "busy_machine": max(load_before[0], load_after[0]) > (os.cpu_count() or 1),
        "seconds_per_run": args.seconds,
        "warmup_seconds": args.warmup,
        "rounds": args.rounds,
        "goals": {"rate_at_least": GOAL_RATE, "p99_ratio_at_most": GOAL_P99},
        "rows": rows,
        # The same figures with the variant config's runs in the proxy's place (--variant-config).
        "variant_config": args.variant_config,
        "variant_rows": [summarise([replace(r, target="proxy") for r in runs if r.target == "variant"]
                                   + [r for r in runs if r.target == "direct"], c) for c in args.concurrency] if configs else None,
        "runs": [asdict(r) for r in runs],
        "failures": sum(r.failures for r in runs),
    }
    print_summary(summary)
    if configs:
        print_summary({**summary, "rows": summary["variant_rows"], "failures": 0, "busy_machine": False},
                      title=f"variant config {args.variant_config}")
    if args.compare:
        print_comparison(json.loads(Path(args.compare).read_text()), summary)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"figures written to {args.json}")
    return summary


def _f(value, fmt: str = "{:.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def print_summary(summary: dict, title: str = "proxy cost") -> None:
    table = Table(title=f"{title}: stack {summary['stack']}, {summary['app_containers']} app container(s), GET {summary['path']}",
                  caption=f"wrk, {summary['seconds_per_run']:g}s per run, {summary['rounds']} round(s); CPU as % of one core "
                          f"(proxy / app containers / wrk), CPU ms per request (proxy / app; app); goals: rate >= {GOAL_RATE:.0%}, p99 ratio <= {GOAL_P99}")
    for column in ("conns", "proxy req/s", "direct req/s", "rate ratio", "proxy p50/p99 ms", "direct p50/p99 ms",
                   "p50 ratio", "p99 ratio", "CPU proxy run", "CPU direct run", "CPU ms/req proxy run", "CPU ms/req direct"):
        table.add_column(column, justify="right")
    for row in summary["rows"]:
        p, d, r = row["proxy"], row["direct"], row["ratios"]
        pc, dc = p["cpu_percent"], d["cpu_percent"]
        table.add_row(
            str(row["connections"]), _f(p["max_rps_0_failures"], "{:.0f}"), _f(d["max_rps_0_failures"], "{:.0f}"), _f(r["rate"]),
            f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f}", f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f}", _f(r["p50"]), _f(r["p99"]),
            f"{_f(pc.get('proxy'), '{:.0f}')} / {_f(pc.get('live app'), '{:.0f}')} / {_f(pc.get('wrk'), '{:.0f}')}",
            f"- / {_f(dc.get('direct app'), '{:.0f}')} / {_f(dc.get('wrk'), '{:.0f}')}",
            f"{_f(p['cpu_ms_per_request'].get('proxy'), '{:.3f}')} / {_f(p['cpu_ms_per_request'].get('live app'), '{:.3f}')}",
            f"{_f(d['cpu_ms_per_request'].get('direct app'), '{:.3f}')}",
            style=None if row["meets_goals"] else "yellow",
        )
    console.print(table)
    if summary["busy_machine"]:
        la = summary["load_average_1min"]
        console.print(f"[yellow]warning: load average {la['before']} -> {la['after']} on {summary['cpus']} CPU(s): other work competes "
                      f"for the CPUs, and the ratios measure that as much as the proxy; run again on a quiet machine[/yellow]")
    if summary["failures"]:
        console.print(f"[bold red]FAILED:[/bold red] {summary['failures']} request(s) failed (socket errors or non-2xx)")


def print_comparison(before: dict, after: dict) -> None:
    """Before and after side by side, per concurrency present in both."""
    table = Table(title="proxy cost: before -> after (proxy/direct ratios; proxy req/s)")
    for column in ("conns", "rate ratio", "p50 ratio", "p99 ratio", "proxy req/s", "proxy p99 ms"):
        table.add_column(column, justify="right")
    old = {row["connections"]: row for row in before.get("rows", [])}
    for row in after["rows"]:
        prev = old.get(row["connections"])
        if prev is None:
            continue
        pr, nr = prev["ratios"], row["ratios"]
        table.add_row(str(row["connections"]),
                      f"{_f(pr['rate'])} -> {_f(nr['rate'])}", f"{_f(pr['p50'])} -> {_f(nr['p50'])}", f"{_f(pr['p99'])} -> {_f(nr['p99'])}",
                      f"{prev['proxy']['rps']:.0f} -> {row['proxy']['rps']:.0f}", f"{prev['proxy']['p99_ms']:.2f} -> {row['proxy']['p99_ms']:.2f}")
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m loadtests.proxy_cost", description=__doc__)
    parser.add_argument("--stack", default="ci")
    parser.add_argument("--concurrency", default="10,50,100", help="comma-separated connection counts (default 10,50,100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured length of each wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="an unmeasured wrk run before each measured one (default 2; 0: none)")
    parser.add_argument("--rounds", type=int, default=2, help="proxy/direct pairs per concurrency, order alternating (default 2)")
    parser.add_argument("--path", default=None, help="the path to load (default: the app's first GET smoke check)")
    parser.add_argument("--pin-wrk", default=None, metavar="CPU", help="pin the wrk processes to these CPUs (taskset -c syntax, e.g. 1)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the figures as JSON here")
    parser.add_argument("--variant-config", default=None, metavar="FILE",
                        help="also measure the proxy with this HAProxy base config, in the same run (reloaded in and out)")
    parser.add_argument("--compare", default=None, metavar="BEFORE.json", help="print an earlier run's figures beside this one's")
    args = parser.parse_args(argv)
    try:
        args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--concurrency must be comma-separated whole numbers, not {args.concurrency!r}.")
    if not args.concurrency or min(args.concurrency) < 1 or args.seconds <= 0 or args.warmup < 0 or args.rounds < 1:
        parser.error("--concurrency, --seconds and --rounds must be positive (--warmup not negative).")
    if args.variant_config and not Path(args.variant_config).is_file():
        parser.error(f"--variant-config: no such file {args.variant_config}.")
    if args.compare and not Path(args.compare).is_file():
        parser.error(f"--compare: no such file {args.compare}.")
    if args.path is not None and not args.path.startswith("/"):
        parser.error(f"--path must start with '/', not {args.path!r}.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_measurement(lambda: proxy_cost(args), (CutoverError, SpecError, AppError, docker.errors.DockerException, OSError))


if __name__ == "__main__":
    sys.exit(main())
