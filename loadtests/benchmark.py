"""``python -m loadtests.benchmark --stack ci``: what the proxy costs, in figures (a benchmark, not a test).

It knows the app only from its definition (``cutover:app``), reads the stack and sends load to its
live port: no up, deploy, switch or down. Beside the proxy it starts one throw-away container from
the image the live colour runs, with the environment a stack's app container gets (the app's
``env``, ``CUTOVER_COLOUR=direct``, ``CUTOVER_INSTANCE=bench-direct``, ``CUTOVER_VERSION``; for a
read-write app also its database settings, on the stack's network), the app's port published on a
free 127.0.0.1 port, and removes it again whatever happens. Then, with Locust driven from code:

- proxy and direct, each at the same moderate concurrency (``--fair-users``) for ``--seconds``,
  twice in alternation (proxy, direct, proxy, direct), so machine noise hits both; p50/p99 of the
  two runs pooled per target, and their ratio;
- the proxy once more at ``--users`` (higher concurrency): the requests per second it sustained.

Each run warms up for ``--warmup`` seconds first (connections opened, users spawned); only requests
sent in the measured window count towards requests, rps and latency, while failures count over the
whole run. The users send the app's first GET smoke check back to back, and latency is that
request's; ``--rehearsal-mix`` runs the rehearsal's users instead (the app's locustfile, or users
built from its smoke checks) without their ``write`` tasks, and latency is then every request's of
the mix (a mix with slow requests makes p99 a measure of them, and idles the users).

The version shown for the proxy is the one it stamps on its response (``X-Cutover-Version``); the
direct container's is the version of the image it was started from, the live colour's.

Exit status: 0 when every request succeeded; 1 when any failed, on bad input or when the benchmark could not
run (one sentence on stderr, loadtests/cli.py).
Locust runs in this one process, on one core: when its CPU use nears 100 % the figures measure the
load generator as much as the proxy, and the output says so.
"""

from __future__ import annotations

# Locust (imported by the runner) must patch the standard library before anything else loads.
from loadtests.runner import LoadRun  # noqa: I001  (import order matters)

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import Message
from pathlib import Path

import docker.errors
from locust import User, task
from rich.console import Console
from rich.table import Table

from loadtests.cli import Parser, run_measurement
from loadtests.report import percentile
from loadtests.users import WRITE_TAG, KeepAliveUser, rehearsal_users
from simulator.docker_driver import DockerDriver, connect
from simulator.errors import CutoverError
from simulator.proxy_api import ProxyAPI
from simulator.secrets_store import SecretStore
from stacks.app import AppError, AppSpec, Request
from stacks.proxy_config import VERSION_HEADER
from stacks.spec import SpecError, StackSpec, load_stack
from stacks.topology import app_container, app_container_name, network_name, proxy_container_name, secret_value

# Who the direct container is, in the variables cutover gives every app container.
DIRECT_COLOUR = "direct"
DIRECT_INSTANCE = "bench-direct"
HEALTHY_DEADLINE_S = 30.0
STOP_MARGIN_S = 15.0  # a run's time budget beyond warm-up + measured window: it always ends by itself
CLIENT_BOUND_CPU = 90.0  # Locust's own warning threshold
console = Console(soft_wrap=True)


def measured_request(app: AppSpec) -> Request:
    """The app's first GET smoke check: what the measured users send."""
    try:
        return next(r for r in app.smoke if r.method == "GET")
    except StopIteration:
        raise CutoverError(f"the app {app.name} has no GET smoke check for the benchmark to send back to back.") from None


def request_names(request: Request) -> frozenset[str]:
    """The names a record of ``request`` may carry (ours say "GET /path"; a locustfile may say "/path")."""
    return frozenset({request.describe(), request.path})


def measured_user(app: AppSpec) -> type[User]:
    """A user that sends the app's first GET smoke check back to back: the proxy's own cost, with
    nothing slow in the mix."""
    request = measured_request(app)
    kwargs = {"name": request.describe()}
    if request.json_body is not None:
        kwargs["json"] = request.json_body

    class MeasuredUser(KeepAliveUser):
        @task
        def measured(self) -> None:
            self.client.request(request.method, request.path, **kwargs)

    return MeasuredUser


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
    latencies: list[float] = field(default_factory=list, repr=False)  # latencies of the measured request(s)


def figures_of(records, target: str, label: str, users: int, window: tuple[float, float], stopped_because: str,
               client_cpu: float | None, latency_names: frozenset[str] | None = None) -> RunFigures:
    """Pure: a run's records -> its figures (requests sent inside ``window`` count; failures all count).

    Latency is that of the successful requests named in ``latency_names`` (every request's if None).
    """
    start, end = window
    measured = [r for r in records if start <= r.started < end]
    latencies = sorted(r.latency_ms for r in measured if (latency_names is None or r.name in latency_names) and not r.failed)
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


@dataclass(frozen=True)
class LiveImage:
    colour: str
    image_id: str
    tags: str  # for display
    version: str  # the version the live container was started with: its image's


def live_image(client, spec: StackSpec) -> LiveImage:
    """The image (and its version) of the live pool's first container, the live colour read from the proxy."""
    try:
        proxy = client.containers.get(proxy_container_name(spec))
    except docker.errors.NotFound:
        raise CutoverError(f"stack {spec.stack} is not up (no {proxy_container_name(spec)}); run 'cutover up --stack {spec.stack}' first.") from None
    live = ProxyAPI(proxy).colours()["live"]
    name = app_container_name(spec, live, 1)
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        raise CutoverError(f"the live colour is {live} but {name} does not exist.") from None
    image = container.image
    version = (container.labels or {}).get("cutover.version") or _version_from_tags(spec.app, image.tags)
    if not version:
        raise CutoverError(f"cannot tell which version {name} runs (no cutover.version label, no {spec.app.image_tag('VERSION')} tag).")
    tags = ", ".join(image.tags) or f"{image.short_id}, untagged: its tag was rebuilt since"
    return LiveImage(live, image.id, tags, version)


def _version_from_tags(app: AppSpec, tags: list[str]) -> str:
    prefix = app.image_tag("")
    return next((t[len(prefix):] for t in tags if t.startswith(prefix)), "")


def direct_environment(client, spec: StackSpec, live: LiveImage) -> tuple[dict[str, str], str | None]:
    """(env, network) of the direct container: what the live colour's app containers get, as itself.

    A read-only app needs no network; a read-write one joins the stack's network to reach its
    database, with the same database settings (the password from the stack's secret store).
    """
    model = app_container(spec, live.colour, 1, live.version)
    env = {**dict(model.env), "CUTOVER_COLOUR": DIRECT_COLOUR, "CUTOVER_INSTANCE": DIRECT_INSTANCE, "CUTOVER_VERSION": live.version}
    if not spec.app.read_write:
        return env, None
    for variable, secret, template in model.secret_env:
        env[variable] = secret_value(template, stack_secret(client, spec, secret))
    return env, network_name(spec)


def stack_secret(client, spec: StackSpec, name: str) -> str:
    """A secret the stack already uses, read and never created: from the state directory, else from
    the stack's running containers."""
    store = SecretStore(spec.stack)
    if (store.directory / name).exists():
        return store.get(name)
    value = DockerDriver(client, spec, secrets=lambda _: "").secret_in_use(name)
    if value is None:
        raise CutoverError(
            f"the secret {name} of stack {spec.stack} is neither in {store.directory} nor in its containers; "
            f"point CUTOVER_STATE_DIR at the state the stack was brought up with."
        )
    return value


class DirectContainer:
    """One app container outside the stack (no stack labels; on the stack's network only when it
    needs the database), its port on a free 127.0.0.1 port."""

    def __init__(self, client, image_id: str, port: int, health_path: str, environment: dict[str, str], network: str | None) -> None:
        self.client = client
        self.image_id = image_id
        self.port = port
        self.health_path = health_path
        self.environment = environment
        self.network = network
        self.name = f"cutover-bench-direct-{os.getpid()}"
        self.container = None
        self.url = ""

    def __enter__(self) -> "DirectContainer":
        try:
            self.container = self.client.containers.run(
                self.image_id,
                name=self.name,
                detach=True,
                environment=self.environment,
                network=self.network,
                ports={f"{self.port}/tcp": ("127.0.0.1", None)},  # the engine picks a free port
                labels={"cutover.benchmark": "direct"},
            )
            self.container.reload()
            port = self.container.ports[f"{self.port}/tcp"][0]["HostPort"]
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
                status, _ = get(f"{self.url}{self.health_path}", timeout=1.0)
                if status == 200:
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = f"{exc.__class__.__name__}: {exc}"
            self.container.reload()
            if self.container.status not in ("created", "running"):
                logs = self.container.logs(tail=5).decode(errors="replace").strip()
                raise CutoverError(f"{self.name} stopped ({self.container.status}) before {self.health_path} answered: {logs}")
            time.sleep(0.2)
        raise CutoverError(f"{self.name} did not answer {self.health_path} within {HEALTHY_DEADLINE_S:.0f}s ({last}).")

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


@dataclass(frozen=True)
class Load:
    """What every run sends, and whose latency counts."""

    user_classes: list[type[User]]
    exclude_tags: list[str] | None
    latency_names: frozenset[str] | None  # None: every request's
    described: str  # for the output


def load_of(app: AppSpec, rehearsal_mix: bool) -> Load:
    request = measured_request(app)
    if rehearsal_mix:
        users = rehearsal_users(app)
        return Load(users, [WRITE_TAG], None, f"rehearsal mix without writes ({', '.join(u.__name__ for u in users)}), latency of every request")
    return Load([measured_user(app)], None, request_names(request), f"{request.describe()} back to back")


def measure(url: str, target: str, label: str, users: int, args: argparse.Namespace, load_spec: Load) -> RunFigures:
    load = LoadRun(url, users, max_seconds=args.warmup + args.seconds + STOP_MARGIN_S, max_requests=args.max_requests,
                   user_classes=load_spec.user_classes, exclude_tags=load_spec.exclude_tags)
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
    row = figures_of(load.records, target, label, users, (start, end), load.stopped_because, client_cpu, load_spec.latency_names)
    cpu = f", load generator CPU {row.client_cpu_max:.0f}%" if row.client_cpu_max is not None else ""
    console.print(f"  [dim]{label}: {row.requests} requests in {row.seconds}s at {users} users, {row.failures} failed{cpu} ({row.stopped_because})[/dim]")
    return row


def benchmark(args: argparse.Namespace) -> dict:
    spec = load_stack(args.stack)
    app = spec.app
    request = measured_request(app)
    load_spec = load_of(app, args.rehearsal_mix)
    client = connect()
    live = live_image(client, spec)
    proxy_url = spec.live_url()
    status, headers = get(f"{proxy_url}{spec.health_path}")
    if status != 200:
        raise CutoverError(f"the live port {proxy_url} answers {spec.health_path} with HTTP {status}; is stack {args.stack} healthy?")
    _, headers = get(f"{proxy_url}{request.path}")
    # The proxy says which version served it; the app itself need not.
    version = headers.get(VERSION_HEADER) or "?"
    console.print(
        f"[bold]benchmark on stack {args.stack}[/bold]: app {app.name}, live {live.colour} {version} ({live.tags}) at {proxy_url}; "
        f"{args.seconds:g}s measured per run after {args.warmup:g}s warm-up, {load_spec.described}"
    )
    environment, network = direct_environment(client, spec, live)
    runs: list[RunFigures] = []
    with DirectContainer(client, live.image_id, app.port, spec.health_path, environment, network) as direct:
        # Started from the live colour's image: its version is that image's, by construction.
        direct_version = live.version
        console.print(f"  [dim]direct: {direct.name} at {direct.url} runs {direct_version}" + (f" on {network}" if network else "") + "[/dim]")
        if direct_version != version:
            console.print(f"  [yellow]warning: the direct container runs {direct_version}, the live port serves {version}[/yellow]")
        targets = {"proxy": proxy_url, "direct": direct.url}
        for round_ in range(1, args.rounds + 1):
            order = ("proxy", "direct") if round_ % 2 else ("direct", "proxy")
            for target in order:
                runs.append(measure(targets[target], target, f"{target} #{round_}", args.fair_users, args, load_spec))
    max_run = measure(proxy_url, "proxy", "proxy max", args.users, args, load_spec)
    proxy_fair = pooled([r for r in runs if r.target == "proxy"], "proxy (pooled)")
    direct_fair = pooled([r for r in runs if r.target == "direct"], "direct (pooled)")
    every = [*runs, max_run]
    failures = sum(r.failures for r in every)
    cpu = [r.client_cpu_max for r in every if r.client_cpu_max is not None]
    summary = {
        "stack": args.stack,
        "app": app.name,
        "live_colour": live.colour,
        "version": version,
        "direct_version": direct_version,
        "image": live.tags,
        "image_id": live.image_id,
        "load": load_spec.described,
        "request": request.describe(),
        "user_classes": [u.__name__ for u in load_spec.user_classes],
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
                  caption=f"{summary['load']}; requests, rps and latency over the measured window; failures over the whole run")
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
    parser = Parser(prog="python -m loadtests.benchmark", description=__doc__)
    parser.add_argument("--stack", default="ci")
    parser.add_argument("--users", type=int, default=50, help="concurrency of the proxy's max-rps run (default 50)")
    parser.add_argument("--fair-users", type=int, default=10, help="concurrency of the proxy-vs-direct runs (default 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window of each run (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured warm-up before each window (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="proxy/direct pairs, order alternating (default 2)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="request budget of each run (it stops there)")
    parser.add_argument("--rehearsal-mix", action="store_true", help="run the rehearsal's users (the app's locustfile or its smoke checks, no writes) instead of its first GET smoke check only")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if min(args.users, args.fair_users, args.rounds, args.max_requests) < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--users, --fair-users, --rounds, --max-requests and --seconds must be positive (--warmup not negative).")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_measurement(lambda: benchmark(args), (CutoverError, SpecError, AppError, docker.errors.DockerException))


if __name__ == "__main__":
    sys.exit(main())
