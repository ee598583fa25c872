"""``python -m loadtests.benchmark --stack ci``: what the proxy costs, in figures (a benchmark, not a test).

It only reads the stack and sends load to its live port: no up, deploy, switch or down. Beside the
proxy it starts one throw-away container from the image the live colour runs, published on a free
127.0.0.1 port, and removes it again whatever happens. Then, with Locust driven from code:

- proxy and direct, each at the same moderate concurrency (``--fair-users``) for ``--seconds``,
  twice in alternation (proxy, direct, proxy, direct), so machine noise hits both; p50/p99 of the
  two runs pooled per target, and their ratio;
- the proxy once more at ``--users`` (higher concurrency): the requests per second it sustained.

Each run warms up for ``--warmup`` seconds first (connections opened, users spawned); only requests
sent in the measured window count towards requests, rps and latency, while failures count over the
whole run. The users read ``/version`` only (the rehearsal's mix sleeps 300 ms in 1 request of 41,
which would make p99 a measure of that sleep and idle the users); ``--rehearsal-mix`` uses it anyway.

Exit status: 0 when every request succeeded, 1 when any failed, 2 when the benchmark could not run.
Locust runs in this one process, on one core: when its CPU use nears 100 % the figures measure the
load generator as much as the proxy, and the output says so.
"""

from __future__ import annotations

# Locust (imported by the runner) must patch the standard library before anything else loads.
from loadtests.runner import LoadRun  # noqa: I001  (import order matters)

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import Message
from pathlib import Path

import docker.errors
from locust import task
from rich.console import Console
from rich.table import Table

from loadtests.locustfile import KeepAliveUser, ReadingUser
from loadtests.report import percentile
from simulator.docker_driver import connect
from simulator.errors import CutoverError
from simulator.proxy_api import ProxyAPI
from stacks.spec import SpecError, load_stack
from stacks.topology import APP_PORT, app_container_name, proxy_container_name

DIRECT_ENV = {"APP_COLOUR": "direct", "APP_INSTANCE": "bench-direct"}
HEALTHY_DEADLINE_S = 30.0
STOP_MARGIN_S = 15.0  # a run's time budget beyond warm-up + measured window: it always ends by itself
CLIENT_BOUND_CPU = 90.0  # Locust's own warning threshold
console = Console(soft_wrap=True)


class VersionUser(KeepAliveUser):
    """Reads /version back to back: the proxy's own cost, with nothing slow in the mix."""

    @task
    def read_version(self) -> None:
        self.client.get("/version", name="/version")


@dataclass
class RunFigures:
    target: str  # "proxy" or "direct"
    label: str  # e.g. "proxy #1", "proxy max"
    users: int
    requests: int  # sent in the measured window
    failures: int  # over the whole run, warm-up included
    seconds: float  # length of the measured window
    rps: float
    p50_ms: float
    p99_ms: float
    stopped_because: str
    client_cpu_max: float | None
    failure_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list, repr=False)  # measured /version latencies


def figures_of(records, target: str, label: str, users: int, window: tuple[float, float], stopped_because: str,
               client_cpu: float | None) -> RunFigures:
    """Pure: a run's records -> its figures (requests sent inside ``window`` count; failures all count)."""
    start, end = window
    measured = [r for r in records if start <= r.started < end]
    latencies = sorted(r.latency_ms for r in measured if r.name == "/version" and not r.failed)
    failed = [r for r in records if r.failed]
    seconds = max(end - start, 1e-9)
    return RunFigures(
        target=target,
        label=label,
        users=users,
        requests=len(measured),
        failures=len(failed),
        seconds=round(end - start, 2),
        rps=round(len(measured) / seconds, 1),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        stopped_because=stopped_because,
        client_cpu_max=client_cpu,
        failure_samples=sorted({r.error or f"HTTP {r.status}" for r in failed})[:5],
        latencies=latencies,
    )


def pooled(runs: list[RunFigures], label: str) -> RunFigures:
    """Pure: several runs of one target at one concurrency, as one row (latencies pooled)."""
    latencies = sorted(x for r in runs for x in r.latencies)
    seconds = sum(r.seconds for r in runs)
    requests = sum(r.requests for r in runs)
    cpus = [r.client_cpu_max for r in runs if r.client_cpu_max is not None]
    return RunFigures(
        target=runs[0].target,
        label=label,
        users=runs[0].users,
        requests=requests,
        failures=sum(r.failures for r in runs),
        seconds=round(seconds, 2),
        rps=round(requests / seconds, 1) if seconds else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        stopped_because="; ".join(sorted({r.stopped_because for r in runs})),
        client_cpu_max=max(cpus) if cpus else None,
        failure_samples=sorted({s for r in runs for s in r.failure_samples})[:5],
        latencies=latencies,
    )


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


# -- the stack side (read only) and the direct container ------------------------------------------


def get(url: str, timeout: float = 2.0) -> tuple[int, Message]:
    """Status and headers (looked up case-insensitively: HAProxy sends header names in lower case)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers or Message()


def live_image(client, spec) -> tuple[str, str, str]:
    """(live colour, image id, image tags) of the live pool's first container, read from the proxy."""
    try:
        proxy = client.containers.get(proxy_container_name(spec))
    except docker.errors.NotFound:
        raise CutoverError(f"stack {spec.stack} is not up (no {proxy_container_name(spec)}); run 'cutover up --stack {spec.stack}' first.") from None
    live = ProxyAPI(proxy).colours()["live"]
    name = app_container_name(spec, live, 1)
    try:
        image = client.containers.get(name).image
    except docker.errors.NotFound:
        raise CutoverError(f"the live colour is {live} but {name} does not exist.") from None
    return live, image.id, ", ".join(image.tags) or f"{image.short_id}, untagged: its tag was rebuilt since"


class DirectContainer:
    """One app container outside the stack (no stack labels, no network), on a free 127.0.0.1 port."""

    def __init__(self, client, image_id: str) -> None:
        self.client = client
        self.image_id = image_id
        self.name = f"cutover-bench-direct-{os.getpid()}"
        self.container = None
        self.url = ""

    def __enter__(self) -> "DirectContainer":
        try:
            self.container = self.client.containers.run(
                self.image_id,
                name=self.name,
                detach=True,
                environment=DIRECT_ENV,
                ports={f"{APP_PORT}/tcp": ("127.0.0.1", None)},  # the engine picks a free port
                labels={"cutover.benchmark": "direct"},
            )
            self.container.reload()
            port = self.container.ports[f"{APP_PORT}/tcp"][0]["HostPort"]
            self.url = f"http://127.0.0.1:{port}"
            self._wait_healthy()
            return self
        except BaseException:
            self.remove()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTHY_DEADLINE_S
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                status, _ = get(f"{self.url}/healthz", timeout=1.0)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = f"{exc.__class__.__name__}: {exc}"
            self.container.reload()
            if self.container.status not in ("created", "running"):
                logs = self.container.logs(tail=5).decode(errors="replace").strip()
                raise CutoverError(f"{self.name} stopped ({self.container.status}) before /healthz answered: {logs}")
            time.sleep(0.2)
        raise CutoverError(f"{self.name} did not answer /healthz within {HEALTHY_DEADLINE_S:.0f}s ({last}).")

    def remove(self) -> None:
        if self.container is None:
            return
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass
        self.container = None

    def __exit__(self, *exc) -> None:
        self.remove()


# -- the runs -------------------------------------------------------------------------------------


def measure(url: str, target: str, label: str, users: int, args: argparse.Namespace, user_class: type) -> RunFigures:
    load = LoadRun(url, users, max_seconds=args.warmup + args.seconds + STOP_MARGIN_S, max_requests=args.max_requests,
                    user_class=user_class)
    load.start()
    try:
        load.hold(args.warmup)
        start, cpu_start = time.time(), time.process_time()
        load.begin_phase("measured")
        load.hold(args.seconds)
        end, cpu_end = time.time(), time.process_time()
    finally:
        load.stop()
    # This process's CPU time over the window (Locust and its gevent loop share one core).
    client_cpu = round(100 * (cpu_end - cpu_start) / (end - start), 1) if end > start else None
    row = figures_of(load.records, target, label, users, (start, end), load.stopped_because, client_cpu)
    cpu = f", load generator CPU {row.client_cpu_max:.0f}%" if row.client_cpu_max is not None else ""
    console.print(f"  [dim]{label}: {row.requests} requests in {row.seconds}s at {users} users, {row.failures} failed{cpu} ({row.stopped_because})[/dim]")
    return row


def benchmark(args: argparse.Namespace) -> dict:
    spec = load_stack(args.stack)
    client = connect()
    live, image_id, tags = live_image(client, spec)
    proxy_url = spec.live_url()
    status, headers = get(f"{proxy_url}{spec.health_path}")
    if status != 200:
        raise CutoverError(f"the live port {proxy_url} answers {spec.health_path} with HTTP {status}; is stack {args.stack} healthy?")
    _, headers = get(f"{proxy_url}/version")
    version = headers.get("X-App-Version", "?")
    user_class = ReadingUser if args.rehearsal_mix else VersionUser
    console.print(
        f"[bold]benchmark on stack {args.stack}[/bold]: live {live} {version} ({tags}) at {proxy_url}; "
        f"{args.seconds:g}s measured per run after {args.warmup:g}s warm-up, {user_class.__name__}"
    )
    runs: list[RunFigures] = []
    with DirectContainer(client, image_id) as direct:
        _, direct_headers = get(f"{direct.url}/version")
        direct_version = direct_headers.get("X-App-Version", "?")
        console.print(f"  [dim]direct: {direct.name} at {direct.url} serves {direct_version}[/dim]")
        if direct_version != version:
            console.print(f"  [yellow]warning: the direct container serves {direct_version}, the live port {version}[/yellow]")
        targets = {"proxy": proxy_url, "direct": direct.url}
        for round_ in range(1, args.rounds + 1):
            order = ("proxy", "direct") if round_ % 2 else ("direct", "proxy")
            for target in order:
                runs.append(measure(targets[target], target, f"{target} #{round_}", args.fair_users, args, user_class))
    max_run = measure(proxy_url, "proxy", "proxy max", args.users, args, user_class)
    proxy_fair = pooled([r for r in runs if r.target == "proxy"], "proxy (pooled)")
    direct_fair = pooled([r for r in runs if r.target == "direct"], "direct (pooled)")
    every = [*runs, max_run]
    failures = sum(r.failures for r in every)
    cpu = [r.client_cpu_max for r in every if r.client_cpu_max is not None]
    summary = {
        "stack": args.stack,
        "live_colour": live,
        "version": version,
        "image": tags,
        "image_id": image_id,
        "user_class": user_class.__name__,
        "seconds_per_run": args.seconds,
        "warmup_seconds": args.warmup,
        "runs": [_row_dict(r) for r in every],
        "pooled": {"proxy": _row_dict(proxy_fair), "direct": _row_dict(direct_fair)},
        "ratios": {"p50": ratio(proxy_fair.p50_ms, direct_fair.p50_ms), "p99": ratio(proxy_fair.p99_ms, direct_fair.p99_ms)},
        "proxy_max_rps": max_run.rps if not max_run.failures else None,
        "proxy_max_users": args.users,
        "failures": failures,
        "client_cpu_max": max(cpu) if cpu else None,
        "client_bound": bool(cpu) and max(cpu) >= CLIENT_BOUND_CPU,
    }
    _print(every, proxy_fair, direct_fair, summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"figures written to {args.json}")
    return summary


def _row_dict(row: RunFigures) -> dict:
    data = asdict(row)
    del data["latencies"]
    return data


def _print(runs: list[RunFigures], proxy_fair: RunFigures, direct_fair: RunFigures, summary: dict) -> None:
    table = Table(title=f"benchmark: stack {summary['stack']}, {summary['live_colour']} {summary['version']}",
                  caption="requests, rps and latency over the measured window; failures over the whole run")
    for column in ("target", "users", "requests", "failures", "rps", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for row in [*runs[:-1], proxy_fair, direct_fair, runs[-1]]:
        style = "red" if row.failures else ("bold" if "pooled" in row.label or row.label == "proxy max" else None)
        table.add_row(row.label, str(row.users), str(row.requests), str(row.failures), f"{row.rps:.1f}",
                      f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}", style=style, end_section=row is runs[-2] or row is direct_fair)
    console.print(table)
    max_rps = summary["proxy_max_rps"]
    console.print(
        f"proxy max: {'%.1f req/s' % max_rps if max_rps is not None else 'n/a (requests failed)'} at {summary['proxy_max_users']} users; "
        f"load generator CPU up to {summary['client_cpu_max'] if summary['client_cpu_max'] is not None else '?'}%"
        + (" — [yellow]client-bound: the figure is a floor, not the proxy's limit[/yellow]" if summary["client_bound"] else "")
    )
    r = summary["ratios"]
    console.print(
        f"[bold]proxy/direct at {proxy_fair.users} users: p50 {_fmt_ratio(r['p50'])} "
        f"({proxy_fair.p50_ms:.2f} / {direct_fair.p50_ms:.2f} ms), p99 {_fmt_ratio(r['p99'])} "
        f"({proxy_fair.p99_ms:.2f} / {direct_fair.p99_ms:.2f} ms)[/bold]"
    )
    if summary["failures"]:
        samples = sorted({s for row in runs for s in row.failure_samples})[:5]
        console.print(f"[bold red]FAILED:[/bold red] {summary['failures']} request(s) failed, e.g. {samples}")


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="ci")
    parser.add_argument("--users", type=int, default=50, help="concurrency of the proxy's max-rps run (default 50)")
    parser.add_argument("--fair-users", type=int, default=10, help="concurrency of the proxy-vs-direct runs (default 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window of each run (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured warm-up before each window (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="proxy/direct pairs, order alternating (default 2)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="request budget of each run (it stops there)")
    parser.add_argument("--rehearsal-mix", action="store_true", help="use the rehearsal's ReadingUser (with /slow) instead of /version only")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if min(args.users, args.fair_users, args.rounds, args.max_requests) < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--users, --fair-users, --rounds, --max-requests and --seconds must be positive (--warmup not negative).")
    return args


def _terminate(signum, _frame) -> None:
    # SIGTERM as an exception, so the direct container's cleanup (a finally) still runs.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        summary = benchmark(args)
    except (CutoverError, SpecError, docker.errors.DockerException) as exc:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {exc}")
        return 2
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
