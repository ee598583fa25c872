"""``cutover``: run a stack on the Docker engine it names and move traffic between blue and green."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

import click
import docker.errors
import requests.exceptions
import urllib3.exceptions
from rich.console import Console
from rich.table import Table

from loadtests.options import MIXES, check_phase_seconds, check_users, parse_steps
from simulator.engines import check_supported, simulator_for
from simulator.errors import CutoverError
from simulator.images import short_id
from stacks.app import AppError
from stacks.spec import COLOURS, STACKS_DIR_ENV, SpecError

console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, soft_wrap=True)

stack_option = click.option(
    "--stack", "-s", default="dev", show_default=True, envvar="CUTOVER_STACK",
    help="Which stack (stacks/Pulumi.<stack>.yaml) to act on.",
)


def _simulator(stack: str):
    """The simulator for ``stack``: one engine's, or a swarm's for the commands it has (the
    running command's name decides, simulator/engines.py); any other command on a swarm stack is
    refused before any state is touched."""
    spec = check_supported(stack, click.get_current_context().command.name)
    _check_state_dir(stack)
    # Imported late (simulator_for), so --help never needs Docker.
    return simulator_for(spec, say=lambda line: console.print(f"  [dim]{line}[/dim]"))


def _check_state_dir(stack: str) -> None:
    """Before anything is changed: a state directory found unwritable half-way would leave a change
    made and its secret or ledger cache not kept."""
    from simulator.ledger import state_dir, state_root

    try:
        with tempfile.NamedTemporaryFile(dir=state_dir(stack), prefix=".writable-"):
            pass
    except OSError as exc:
        raise CutoverError(
            f"the state directory {state_root()} cannot be written ({exc.strerror}); "
            f"set CUTOVER_STATE_DIR to a directory you can write."
        ) from None


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/bold red] {message}")
    sys.exit(1)


class _Group(click.Group):
    """Turns the errors users cause into one sentence and exit status 1, never a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name or "cutover", complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            # click's own is a usage block and exit status 2; ours is one sentence and 1.
            _fail(usage_sentence(exc))
        except click.ClickException as exc:
            _fail(exc.format_message())
        except click.exceptions.Abort as exc:
            # Ctrl-C, SIGTERM or SIGHUP: the ledger says 'interrupted'; 'status' shows anything left.
            _fail(f"{str(exc.__cause__ or '') or 'interrupted by Ctrl-C'}; 'cutover status' shows anything it left half-done.")
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (CutoverError, SpecError, AppError) as exc:
            _fail(str(exc))
        except docker.errors.APIError as exc:
            # The engine refused something we asked for: say what, without a traceback.
            _fail(f"the Docker engine refused: {exc.explanation or exc}")
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, docker.errors.DockerException) as exc:
            # Not an answer but none: a timeout (CUTOVER_ENGINE_TIMEOUT_S), a dropped connection.
            _fail(f"the Docker engine stopped answering ({exc.__class__.__name__}); check it runs ('docker info'), "
                  f"then 'cutover status' shows anything this command left half-done.")


def usage_sentence(exc: click.UsageError) -> str:
    """One sentence for a usage error, naming the command and the option (and value) at fault."""
    path = exc.ctx.command_path if exc.ctx else "cutover"
    if isinstance(exc, click.exceptions.NoSuchOption):
        guess = f" (did you mean {' or '.join(exc.possibilities)}?)" if exc.possibilities else ""
        problem = f"'{path}' has no option {exc.option_name}{guess}"
    else:
        message = exc.format_message().rstrip(".")
        problem = f"{path}: {message[:1].lower()}{message[1:]}"
    return f"{problem} (see '{path} --help')."


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--stacks-dir", type=click.Path(file_okay=False, dir_okay=True), default=None, envvar=STACKS_DIR_ENV,
    help="Directory of your Pulumi.<stack>.yaml files (default: this project's stacks/). Also $CUTOVER_STACKS_DIR.",
)
def main(stacks_dir: str | None) -> None:
    """Blue/green stacks on the Docker engine each stack names, and cutovers proven under load.

    Every command takes --stack (default dev). A stack file names the app it deploys
    (cutover:app, an app definition: docs/app.md). Traffic enters on the stack's live port; the
    idle colour answers on the preview port.
    """
    # A SIGTERM or SIGHUP (the terminal went away) ends a command like Ctrl-C does: every server it
    # took out of rotation goes back, its end record says 'interrupted', its lock goes.
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)
    if stacks_dir:
        if not os.path.isdir(stacks_dir):
            raise CutoverError(f"--stacks-dir {stacks_dir} is not a directory.")
        # Through the environment, so the rehearsal's own process reads the same stacks.
        os.environ[STACKS_DIR_ENV] = os.path.abspath(stacks_dir)


@main.command()
@stack_option
def up(stack: str) -> None:
    """Create the network, the proxy and both pools (blue live, green idle). Idempotent.

    On a swarm stack: the overlay network, the database pinned to its node, each version's expand
    run, both colours' services and the proxy on every traffic node (docs/cluster.md).
    """
    result = _simulator(stack).up()
    actions = getattr(result, "actions", result)
    if not actions:
        console.print(f"stack {stack}: nothing to change")
    else:
        console.print(f"stack {stack}: {len(actions)} change(s) applied")


@main.command()
@stack_option
@click.option("--json", "as_json", is_flag=True, help="Print the artefact as JSON.")
@click.argument("version")
def build(stack: str, version: str, as_json: bool) -> None:
    """Build VERSION's artefact (or reuse it: same source) and print its digest and source.

    A version is bound to the source it was first built from: building it again from other source
    is refused ("give the change a new version").
    """
    artefact = _simulator(stack).build(version)
    if as_json:
        click.echo(json.dumps(artefact.as_dict()))
        return
    source = artefact.source.describe() if artefact.source else "prebuilt (not built by cutover)"
    single = f"; single-file artefact {artefact.artefact_sha256}" if artefact.artefact_sha256 else ""
    how = "reused, same source" if artefact.reused else f"built in {artefact.seconds}s"
    stored = f"; stored as {artefact.stored}" if artefact.stored else ""
    console.print(f"{artefact.tag}: image {artefact.image_id} from {source}{single} ({how}){stored}")


@main.command()
@stack_option
@click.argument("version")
def deploy(stack: str, version: str) -> None:
    """Build VERSION and put it on the idle colour, health-gated and smoke-tested on the preview port.

    On a swarm stack: built here, put on every node, expand migrations, then the idle colour's
    service rolled start-first until every task runs VERSION, healthy (no smoke test there yet).
    """
    result = _simulator(stack).deploy(version)
    if not hasattr(result, "replaced"):  # a swarm stack
        steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.steps.items())
        console.print(f"stack {stack}: {result.colour} now runs {result.version} (image {short_id(result.image)}); {result.seconds}s ({steps}); live colour untouched")
        return
    steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.steps.items())
    console.print(
        f"stack {stack}: {result.colour} now runs {result.version} (image {short_id(result.image)}), smoke-tested; "
        f"{result.seconds}s ({steps}); live colour untouched"
    )


@main.group()
def registry() -> None:
    """The artefact store: a private registry on this machine's loopback (port $CUTOVER_REGISTRY_PORT, default 5000).

    While it runs, every artefact cutover builds here is pushed to it, and a version missing from
    the engine is pulled back from it (the same image ID) before anything would rebuild it.
    """


@registry.command("start")
@stack_option
def registry_start(stack: str) -> None:
    """Start the store (built on the stack's base image); its password is generated once."""
    from simulator.registry import ArtefactStore, registry_port

    sim = _simulator(stack)
    store = ArtefactStore(sim.client, registry_port(), sim.say)
    store.start(sim.images.ensure_registry)
    console.print(f"artefact store running at {store.address} (container {store.name}; data on volume {store.name}-data)")


@registry.command("stop")
@stack_option
@click.option("--data", is_flag=True, help="Also delete the stored artefacts (its volume).")
def registry_stop(stack: str, data: bool) -> None:
    """Stop and remove the store (its artefacts stay on its volume unless --data)."""
    from simulator.registry import ArtefactStore, registry_port

    sim = _simulator(stack)
    removed = ArtefactStore(sim.client, registry_port(), sim.say).stop(with_data=data)
    console.print(f"removed {', '.join(removed)}" if removed else "no artefact store was running")


cluster_name_option = click.option(
    "--name", "-n", default="local", show_default=True, envvar="CUTOVER_CLUSTER",
    help="Which cluster: its nodes are containers cutover-cluster-<name>-*. Also $CUTOVER_CLUSTER.",
)


def _cluster(name: str):
    from simulator.cluster import from_env  # imported late so --help never needs Docker

    return from_env(name, say=lambda line: console.print(f"  [dim]{line}[/dim]"))


@main.group()
def cluster() -> None:
    """A Docker Swarm on this machine: one manager and N worker nodes, each a Docker-in-Docker
    container (docs/cluster.md). Each node's engine API is published on 127.0.0.1 only."""


@cluster.command("up")
@cluster_name_option
@click.option("--workers", type=click.IntRange(0, 9), default=2, show_default=True, help="How many worker nodes beside the manager.")
@click.option("--api-port", type=click.IntRange(1024, 65535), default=23761, show_default=True,
              help="The manager's engine API on 127.0.0.1 (the docker:host of a stack on the cluster); worker i's is this port + i.")
@click.option("--publish", type=click.IntRange(1, 65535), multiple=True, metavar="PORT",
              help="Publish PORT on 127.0.0.1 through the cluster's edge (an HAProxy balancing TCP over PORT on every worker, where a stack's proxies publish in host mode). Repeatable; fixed when the edge is created.")
def cluster_up(name: str, workers: int, api_port: int, publish: tuple[int, ...]) -> None:
    """Start the nodes, form the swarm, label the nodes; a second run changes nothing (more
    workers are added, fewer are refused)."""
    nodes = _cluster(name).up(workers, api_port, publish)
    console.print(f"cluster {name}: {len(nodes)} node(s) Ready; manager engine at {nodes[0].url} (docker:host)")


@cluster.command("status")
@cluster_name_option
@click.option("--json", "as_json", is_flag=True, help="Print one object per node (and the edge's, role edge, with its servers) as JSON.")
def cluster_status(name: str, as_json: bool) -> None:
    """Each node: its container, engine, swarm state, availability, labels and memory; the edge and
    the state of each of its servers (a port on a traffic node)."""
    rows = _cluster(name).status()
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        console.print(f"cluster {name}: no nodes")
        return
    table = Table(title=f"cluster {name}")
    for column in ("node", "role", "container", "engine", "swarm", "availability", "labels", "memory"):
        table.add_column(column)
    for row in rows:
        memory = f"{row['memory_bytes'] / 2**20:.0f} MiB" if row["memory_bytes"] is not None else "-"
        labels = ", ".join(f"{k}={v}" for k, v in sorted(row["labels"].items())) or "-"
        table.add_row(row["node"], row["role"], row["container"], row["engine"] or "-", row["swarm"] or "-", row["availability"] or "-", labels, memory)
    console.print(table)
    for row in rows:
        if row["role"] == "edge":
            servers = Table(title=f"edge {row['node']}: 127.0.0.1:{', 127.0.0.1:'.join(map(str, row['ports']))}")
            for column in ("port", "node", "status", "address"):
                servers.add_column(column)
            for server in row["servers"]:
                servers.add_row(str(server["port"]), server["node"], server["status"], server["address"] or "-")
            console.print(servers)


@cluster.command("image")
@cluster_name_option
@click.argument("image")
@click.option("--via", type=click.Choice(["auto", "registry", "stream"]), default="auto", show_default=True,
              help="registry: pushed to the artefact store ('cutover registry start'), pulled by every node by digest; stream: docker save | each node's docker load; auto: the store when it runs.")
def cluster_image(name: str, image: str, via: str) -> None:
    """Put IMAGE (an image of this machine's engine) on every node, as the same image ID."""
    result = _cluster(name).distribute(image, via)
    per_node = ", ".join(f"{node} {seconds:.1f}s" for node, seconds in result.seconds.items())
    console.print(f"cluster {name}: {image} ({short_id(result.image_id)}) on every node as {result.reference} "
                  f"by {result.via} in {result.total_s:.1f}s ({result.prepare_s:.1f}s {'push' if result.via == 'registry' else 'save'}; {per_node})")


@cluster.command("down")
@cluster_name_option
def cluster_down(name: str) -> None:
    """Remove the nodes, their volumes (everything on their engines) and the cluster's network."""
    removed = _cluster(name).down()
    console.print(f"cluster {name}: removed {', '.join(removed)}" if removed else f"cluster {name}: nothing to remove")


@main.command()
@click.argument("version")
@click.option("--to", "target", required=True, help="The stack to promote to; the version comes from the stack before it in promotion.yaml.")
def promote(version: str, target: str) -> None:
    """Deploy to --to's idle colour the exact image VERSION went live as on the stack before it.

    The order is promotion.yaml beside the stack files (e.g. order: [dev, ci, prod]); the proof is
    the lower stack's ledger. The image is streamed between engines when the target lacks it.
    """
    from simulator.promotion import PROMOTION_FILE, promotion_order, source_stack
    from stacks.spec import stacks_dir_in_use

    stacks_dir = stacks_dir_in_use()
    source = source_stack(promotion_order(stacks_dir), target, stacks_dir / PROMOTION_FILE)
    result = _simulator(target).promote(version, _simulator(source))
    steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.steps.items())
    console.print(
        f"stack {target}: {result.colour} now runs {result.version} (image {short_id(result.image)}, as it went live on {source}), "
        f"smoke-tested; {result.seconds}s ({steps}); live colour untouched"
    )


@main.command()
@stack_option
@click.option("--to", "to", default=None, metavar="COLOUR", help="Make COLOUR live; if it already is, say so and exit 0 (a safe retry).")
def switch(stack: str, to: str | None) -> None:
    """Preflight the idle colour, make it live in one atomic flip, then drain the old colour.

    For cutover:watchSeconds after the flip the new colour is watched (HAProxy's 5xx share,
    server health, response time); if it degrades past the stack's thresholds it is flipped back
    by itself, the ledger records 'auto-rollback' with the evidence, and the command exits 1.
    A retry of a switch interrupted after it flipped completes it instead of flipping back.

    On a swarm stack: every proxy task is flipped through one container on the stack's control
    network, all or back, and each task's colour and the spread between the flips are printed
    (the watch is not run there yet; docs/cluster.md). --to settles proxy tasks that disagree.
    """
    if to is not None and to not in COLOURS:  # before any engine is asked
        raise CutoverError(f"--to must be one of {', '.join(COLOURS)}, got {to!r}.")
    _print_switch(stack, _simulator(stack).switch(to=to))


@main.command()
@stack_option
def rollback(stack: str) -> None:
    """Back to the colour and version that were live before the last switch (still warm: instant).

    Refused, changing nothing, when there is no switch to undo, the last one was already undone,
    the live colour was moved outside cutover, or that colour was redeployed since.
    """
    _print_switch(stack, _simulator(stack).rollback())


def _print_switch(stack: str, result) -> None:
    if result.already_live:
        console.print(f"stack {stack}: {result.to_colour} ({result.to_version}) is already live; nothing to do")
        return
    drained = f"drained in {result.drain_seconds:.2f}s" if result.drained else f"drain budget ran out after {result.drain_seconds:.1f}s"
    watched = f"; watched {result.watched_seconds:.1f}s: healthy" if result.watched_seconds else ""
    if result.completes_seq is not None:
        console.print(f"stack {stack}: completed the interrupted flip (seq {result.completes_seq}): live is [bold]{result.to_colour}[/bold] ({result.to_version}), was {result.from_colour} ({result.from_version}); {drained}{watched}")
        return
    console.print(
        f"stack {stack}: live is now [bold]{result.to_colour}[/bold] ({result.to_version}), was {result.from_colour} ({result.from_version}); "
        f"flip took {result.flip_seconds * 1000:.0f} ms, {drained}{watched}"
    )
    if hasattr(result, "spread_ms"):  # a swarm: every proxy task, and how far apart their flips were
        each = ", ".join(f"{p['node']} ({p['address']}) {p['after']}" for p in result.proxies)
        console.print(f"  {len(result.proxies)} proxy task(s), spread {result.spread_ms} ms between the first flip and the last: {each}")


@main.command()
@stack_option
def finalize(stack: str) -> None:
    """Give up rollback: retire the old colour if it needs the old schema, run contract migrations."""
    result = _simulator(stack).finalize()
    retired = f"retired {', '.join(result.retired)}; " if result.retired else ""
    console.print(f"stack {stack}: {retired}contract migrations applied for {result.version}: {', '.join(result.applied)}; rollback to the old schema is no longer possible")


@main.command()
@stack_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(stack: str, as_json: bool) -> None:
    """Which colour is live, who really serves live traffic, each pool's version and health, and
    what a killed command left behind.

    Exits 2 when no server of the live colour is UP in HAProxy (live traffic is served by the
    other colour, the fallback, or by nothing): monitoring can alert on it. A degraded stack
    (live pool below its size, stopped containers) is named on a warning line, exit 0.
    """
    from simulator.health import LIVE_DOWN_EXIT

    sim = _simulator(stack)
    if not hasattr(sim, "leftovers"):  # a swarm stack
        _print_swarm_status(stack, sim.status(), as_json)
        return
    state = sim.status(assess_health=True)
    health = state.health
    leftovers = sim.leftovers()
    if as_json:
        click.echo(json.dumps({**state.as_dict(), "leftovers": [{"kind": f.kind, "subject": f.subject, "problem": f.problem, "fix": f.fix,
                                                                 "automatic": f.automatic} for f in leftovers]}))
    else:
        table = Table(title=f"stack {stack}")
        for column in ("colour", "role", "version", "image", "healthy", "in proxy"):
            table.add_column(column)
        for colour, pool in state.pools.items():
            role = "live" if colour == state.live else "idle"
            if colour == health.serving and colour != state.live:
                role = "idle [bold yellow](serving live: fallback)[/bold yellow]"
            elif colour == state.live and health.live_down:
                role = "live [bold red](no server UP)[/bold red]"
            table.add_row(colour, role, pool.version or "-", short_id(pool.image_id) if pool.image_id else "-", f"{pool.healthy}/{pool.total}",
                          f"{pool.up} UP" if pool.up is not None else "-")
        console.print(table)
        for problem in health.problems:
            err_console.print(f"[bold {'red' if health.live_down else 'yellow'}]warning:[/] stack {stack} is degraded: {problem}")
        for finding in leftovers:
            console.print(f"[yellow]leftover:[/yellow] {finding.describe()}")
    if health.live_down:
        sys.exit(LIVE_DOWN_EXIT)


def _print_swarm_status(stack: str, state, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(state.as_dict()))
        return
    table = Table(title=f"stack {stack} (swarm)")
    for column in ("service", "role", "version", "tasks", "running/healthy per node"):
        table.add_column(column)
    for role, service in state.services.items():
        kind = ("live" if role == state.live else "idle") if role in ("blue", "green") else role
        wanted = "global" if service.replicas is None else str(service.replicas)
        nodes = ", ".join(f"{node} {row['running']}/{row['healthy']}" for node, row in sorted(service.per_node().items()))
        table.add_row(service.service, kind, service.version or "-", f"{len(service.tasks)} ({wanted})", nodes or "-")
    console.print(table)
    if state.proxy_colours:
        each = ", ".join(f"{node} live {c.get('live', '?')}, preview {c.get('preview', '?')}" for node, c in sorted(state.proxy_colours.items()))
        console.print(f"proxy tasks: {each}")


@main.command()
@stack_option
@click.argument("colour", type=click.Choice(["blue", "green"]))
@click.argument("replicas", type=click.IntRange(1, 20))
def scale(stack: str, colour: str, replicas: int) -> None:
    """Swarm stacks only: run REPLICAS tasks of COLOUR's service (1 to 20), nothing else.

    The proxy finds each colour's tasks through swarm DNS, so its service is not updated (its
    version index is printed before and after). Holds until COLOUR's next deploy, which brings it
    back to cutover:poolSize. On one engine, set cutover:poolSize and run 'cutover up'.
    """
    from stacks.spec import load_stack

    # Before any engine is asked: one engine's pools are sized by the stack file.
    if not load_stack(stack).is_swarm:
        raise CutoverError(f"'cutover scale' is for swarm stacks; stack {stack!r} runs on one engine: set cutover:poolSize in its stack file and run 'cutover up'.")
    result = _simulator(stack).scale(colour, replicas)
    console.print(f"stack {stack}: {colour} runs {result.replicas} task(s) ({result.seconds}s); proxy service version "
                  f"{result.proxy_index_before} -> {result.proxy_index_after} ({'untouched' if result.proxy_index_before == result.proxy_index_after else 'CHANGED'})")


@main.command()
@stack_option
@click.option("--users", type=int, default=40, show_default=True, callback=lambda ctx, param, value: _checked(check_users, value),
              help="Concurrent keep-alive Locust users (1 or more).")
@click.option("--phase-seconds", type=float, default=8.0, show_default=True, callback=lambda ctx, param, value: _checked(check_phase_seconds, value),
              help="Load time before and after each step (seconds, above 0).")
@click.option("--from-version", default=None, help="Version expected live at the start (default: what runs now).")
@click.option("--to-version", default=None, help="Version deployed to the idle colour (default: live major + 1).")
@click.option("--steps", default="deploy,switch,rollback,switch", show_default=True, callback=lambda ctx, param, value: ",".join(_checked(parse_steps, value)),
              help="The scenario: deploy, switch and rollback steps, comma-separated.")
@click.option("--mix", type=click.Choice(list(MIXES)), default="read-write", show_default=True,
              help="read-write: users also write items and read them back (every 201 is checked afterwards); read: reads only.")
@click.option("--out", default=None, help="Where to write the per-request record (CSV); the report (.html, .png) goes beside it.")
def rehearse(stack: str, users: int, phase_seconds: float, from_version: str | None, to_version: str | None, steps: str, mix: str, out: str | None) -> None:
    """Rehearse a cutover under Locust load: deploy, switch, roll back, switch again; report per phase.

    Writes every request to a CSV and beside it the cutover report: an HTML page and a PNG of the
    timeline (requests/s by version, failures, p50/p99, each flip), and prints their paths.

    Exits non-zero if a single request failed, an acknowledged write is missing afterwards, or a
    request sent after a flip reached the old colour.
    """
    check_supported(stack, "rehearse")
    # Locust patches the standard library with gevent at import time; it gets a process of its own
    # so that never leaks into this one.
    command = [sys.executable, "-m", "loadtests.rehearsal", "--stack", stack, "--users", str(users),
               "--phase-seconds", str(phase_seconds), "--steps", steps, "--mix", mix]
    if to_version:
        command += ["--to-version", to_version]
    if from_version:
        command += ["--from-version", from_version]
    if out:
        command += ["--out", out]
    sys.exit(subprocess.call(command, env=os.environ.copy()))


def _checked(check, value):
    """An option checked by the rehearsal's own rules (loadtests/options.py) here, before its process starts."""
    try:
        return check(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt(f"interrupted by {signal.Signals(signum).name}")


@main.command()
@stack_option
@click.option("--volumes", is_flag=True, help="Also remove the stack's volumes (the proxy's saved colour, the database), but not its audit ledger.")
@click.option("--ledger", "ledger", is_flag=True, help="With --volumes: also remove the stack's audit ledger (volume cutover-<stack>-ledger).")
def down(stack: str, volumes: bool, ledger: bool) -> None:
    """Remove the stack's containers and network. The audit ledger outlives the stack unless --ledger."""
    removed = _simulator(stack).down(with_volumes=volumes, with_ledger=ledger)
    console.print(f"stack {stack}: removed {len(removed)} item(s)" if removed else f"stack {stack}: nothing to remove")


@main.group(invoke_without_command=True)
@stack_option
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON (a list, oldest first).")
@click.option("--since", default=None, metavar="TIME", help="Only commands since TIME: an ISO date/time (UTC unless it says) or an age like 30m, 12h, 7d.")
@click.pass_context
def audit(ctx, stack: str, as_json: bool, since: str | None) -> None:
    """The stack's audit ledger (on its engine), one row per changing command.

    A command with a start record and no end is shown as interrupted. 'cutover audit verify'
    checks the chain.
    """
    ctx.obj = {"stack": stack}
    if ctx.invoked_subcommand is not None:
        return
    from simulator.ledger import commands, parse_records, verify_chain

    ledger = _simulator(stack).ledger
    lines, head = ledger.read()
    if verify_chain(lines, head, ledger.witness()).intact:
        ledger.refresh_cache(lines)
    records = parse_records(lines)
    cutoff = _since(since) if since else None
    if as_json:
        click.echo(json.dumps([r for r in records if cutoff is None or _when(r) >= cutoff], indent=1))
        return
    rows = [r for r in commands(records) if cutoff is None or _when(r) >= cutoff]
    holder = ledger.holder()
    # An open start is 'running' only while its command still holds a live lock.
    running = holder.labels.get("cutover.lock.pid") if holder is not None and ledger.stale_reason(holder) is None else None
    table = Table(title=f"stack {stack}: audit ledger ({ledger.volume}, {len(records)} records)")
    for column in ("seq", "time (UTC)", "actor", "command", "outcome", "live", "version", "artefact", "seconds"):
        table.add_column(column, no_wrap=column in ("seq", "time (UTC)", "outcome", "artefact", "seconds"))
    table.add_column("reason", overflow="fold", max_width=60)
    for row in rows:
        outcome = row.get("outcome", "?")
        if row.get("end_seq") is None and running and str(row.get("pid")) == running:
            outcome = "running"
        style = {"ok": "green", "refused": "yellow", "failed": "red", "interrupted": "magenta"}.get(outcome, "")
        table.add_row(
            str(row.get("seq")), (row.get("time") or "")[:19].replace("T", " "), row.get("actor") or "-",
            " ".join([row.get("command") or "?", *_shown_args(row.get("args"))]),
            f"[{style}]{outcome}[/{style}]" if style else outcome, _colours(row), row.get("version") or "-",
            short_id(row["artefact"]) if row.get("artefact") else "-",
            f"{row['duration_s']:.1f}" if isinstance(row.get("duration_s"), (int, float)) else "-",
            (row.get("reason") or "")[:120] if outcome != "ok" else "",
        )
    console.print(table)


@audit.command("verify")
@click.option("--stack", "-s", default=None, envvar="CUTOVER_STACK", help="Which stack (default: the one given to 'audit', else dev).")
@click.pass_context
def audit_verify(ctx, stack: str | None) -> None:
    """Check the ledger's chain: seq continuity, each record's hash of the one before, its head.

    Exits 1 naming the first record altered, removed, inserted or reordered; 0 with one line
    otherwise.
    """
    from simulator.ledger import verify_chain

    stack = stack or (ctx.obj or {}).get("stack") or "dev"
    ledger = _simulator(stack).ledger
    lines, head = ledger.read()
    report = verify_chain(lines, head, ledger.witness())
    if not report.intact:
        _fail(f"ledger of stack {stack} ({ledger.volume}): {report.problem}")
    ledger.refresh_cache(lines)
    console.print(f"stack {stack}: {report.records} records, chain intact")


@main.command()
@stack_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures and every value behind them as JSON.")
@click.option("--window", default="1h", show_default=True, help="A switch undone by a rollback within this time is a failed change (e.g. 30m, 1h, 2d).")
def metrics(stack: str, as_json: bool, window: str) -> None:
    """The four DORA keys, derived from the stack's ledger: deployment frequency, lead time for
    changes, change failure rate, time to restore."""
    from simulator.ledger import parse_records
    from simulator.metrics import dora

    ledger = _simulator(stack).ledger
    lines, _ = ledger.read()
    figures = dora(parse_records(lines), window_s=_seconds(window))
    if as_json:
        click.echo(json.dumps(figures, indent=1))
        return
    frequency, lead, failure, restore = (figures[k] for k in ("deployment_frequency", "lead_time", "change_failure_rate", "time_to_restore"))
    table = Table(title=f"stack {stack}: delivery metrics over {figures['span']['days']:.2f} day(s), {figures['span']['records']} records")
    table.add_column("key")
    table.add_column("value")
    table.add_column("from")
    table.add_row("deployment frequency", f"{frequency['per_day']:g} per day", f"{frequency['deployments']} switch(es) to a new version: {', '.join(frequency['versions']) or 'none'}")
    table.add_row(
        "lead time for changes", _duration(lead["median_seconds"]) + (" (median)" if lead["median_seconds"] is not None else ""),
        f"{lead['known']} with a known commit time, {lead['unknown']} unknown (no commit_time recorded)",
    )
    rate = failure["rate"]
    table.add_row("change failure rate", "unknown" if rate is None else f"{rate * 100:.0f}%", f"{failure['failed']} of {failure['deployments']} undone within {_duration(failure['window_seconds'])}")
    table.add_row("time to restore", _duration(restore["median_seconds"]) + (" (median)" if restore["median_seconds"] is not None else ""), f"{len(restore['restores'])} restore(s)")
    console.print(table)


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise CutoverError(f"{text!r} is not a duration: use a number and s, m, h or d (e.g. 1h).") from None


def _since(text: str):
    from datetime import datetime, timedelta, timezone

    from simulator.ledger import parse_time

    if text and text[-1] in "smhd" and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(timezone.utc) - timedelta(seconds=_seconds(text))
    try:
        return parse_time(text)
    except ValueError:
        raise CutoverError(f"--since {text!r} is neither an ISO date/time nor an age like 12h.") from None


def _when(record: dict):
    from datetime import datetime, timezone

    from simulator.ledger import parse_time

    return parse_time(record["time"]) if record.get("time") else datetime.min.replace(tzinfo=timezone.utc)


def _shown_args(args: dict | None) -> list[str]:
    shown = []
    for key, value in (args or {}).items():
        if value in (None, False):
            continue
        if key == "version":
            shown.append(str(value))
        elif value is True:
            shown.append(key)
        else:
            shown.append(f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}")
    return shown


def _colours(row: dict) -> str:
    before = (row.get("colours_before") or {}).get("live")
    after = (row.get("colours_after") or {}).get("live")
    if before == after:
        return before or "-"
    return f"{before or '-'}→{after or '-'}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


if __name__ == "__main__":
    main()
