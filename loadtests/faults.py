"""``python -m loadtests.faults``: break a running stack on purpose, under load, and measure.

Each case brings the stack up (``cutover up``), starts a recorded read-write Locust load on the
live port (127.0.0.1), injects its fault, then waits — on conditions, each with a deadline — for
the traffic to come back by itself. Then the load stops, the stack is repaired with ``cutover up``
if it did not recover, and every write the app acknowledged (its write probe answered 201) is
read back through the live and the preview port. A table and a JSON file say, per case: requests,
errors by kind, how long errors lasted, whether traffic recovered by itself, whether the live
colour is the one it should be, and acknowledged writes lost.

The engine-restart case kills the Docker engine itself; it runs only with --allow-engine-restart.

Run it in a process of its own: Locust (imported below) patches the standard library with gevent.
"""

from __future__ import annotations

# Locust (imported by the runner) must patch the standard library before anything else loads.
from loadtests.runner import LoadRun  # noqa: I001  (import order matters)

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import docker
import docker.errors
import gevent
import requests
import yaml
from rich.console import Console
from rich.table import Table

from loadtests.fault_figures import recovered_at, traffic_figures
from loadtests.sse import read_stream, reconnect_colour
from loadtests.read_back import lost_writes
from loadtests.users import rehearsal_users
from simulator.ledger import state_dir
from simulator.operations import Simulator
from stacks.proxy_config import COLOUR_HEADER
from stacks.spec import STACKS_DIR_ENV, load_stack, other_colour
from stacks.topology import app_container_name, database_container_name, migration_container_name, proxy_container_name

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_APP = REPO_ROOT / "examples/demo/cutover-app.yaml"
APP_NAME = "cutover-demo-faults"
ENGINE_CASE = "engine-restart"
# The versions the cases deploy. Major 2 carries the demo's expand migration (a real one runs).
BASE_VERSION = "1.0.0"
OTHER_VERSIONS = ("1.0.1-faults", "1.0.3-faults")
MIGRATING_VERSION = "2.0.0-faults"
# The demo's contract for a bad version (issue 9): it passes the smoke tests, then fails this
# share of the requests it serves.
BAD_VERSION = "1.0.2-defect30"
POLL_S = 0.1

console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


class CaseSkipped(Exception):
    """The case cannot run here (said in one sentence, shown in the table)."""


@dataclass
class Fault:
    """What a case did, and what only it can check."""

    description: str
    # Extra condition for "recovered", beyond the traffic (e.g. the pool back to its full size).
    recovered_when: Callable[[], bool] | None = None
    expect_live: str | None = None  # the live colour the case must leave; None: the one before it
    checks: dict[str, bool] = field(default_factory=dict)  # must all hold once issue 9 is fixed
    must_serve: str | None = None  # a version the load must have reached (checked on the record)
    notes: list[str] = field(default_factory=list)
    # What an operator does once the fault is over and before writes are read back (load stopped).
    afterwards: Callable[[], None] | None = None


class Harness:
    """The stack under test, reached the way an operator reaches it: the CLI, Docker, the ports."""

    def __init__(self, stack: str, stacks_dir: Path) -> None:
        self.stack = stack
        self.stacks_dir = stacks_dir
        self.spec = load_stack(stack, stacks_dir)
        self.client = docker.from_env()

    # -- commands -------------------------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "simulator", "--stacks-dir", str(self.stacks_dir), *args, "--stack", self.stack]

    def cli(self, *args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy())

    def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
        # Output to files, not pipes: a command nobody reads while it runs must never block on a full pipe.
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        process = subprocess.Popen(self.command(*args), cwd=REPO_ROOT, stdout=out, stderr=err, text=True, env=env or os.environ.copy())
        process.output_files = (err, out)  # read by said()
        return process

    # -- what is there --------------------------------------------------------------------------

    def sim(self) -> Simulator:
        # A fresh one each time: a restarted proxy or engine is a new container or connection.
        return Simulator(self.spec, say=lambda line: None)

    def live_colour(self) -> str | None:
        try:
            return self.sim().live_colour()
        except Exception:  # proxy down or restarting: no answer is an answer here
            return None

    def pool(self, colour: str) -> list:
        containers = []
        for index in range(1, self.spec.pool_size + 1):
            try:
                containers.append(self.client.containers.get(app_container_name(self.spec, colour, index)))
            except docker.errors.NotFound:
                pass
        return containers

    def pool_up(self, colour: str) -> bool:
        """Every server of ``colour`` UP in HAProxy, and as many as the stack's pool size."""
        try:
            servers = self.sim().proxy.servers(colour)
        except Exception:
            return False
        return sum(1 for s in servers if s.up) >= self.spec.pool_size

    def none_up(self, colour: str) -> bool:
        """No server of ``colour`` UP in HAProxy (all marked down or in maintenance)."""
        try:
            return not any(s.up for s in self.sim().proxy.servers(colour))
        except Exception:
            return False

    def pool_version(self, colour: str) -> str | None:
        versions = {c.labels.get("cutover.version") for c in self.pool(colour)}
        return versions.pop() if len(versions) == 1 else None

    def forced_maint(self, colour: str) -> list[str]:
        try:
            return [s.server for s in self.sim().proxy.servers(colour) if s.status == "MAINT"]
        except Exception:
            return []

    def exists(self, name: str) -> bool:
        try:
            self.client.containers.get(name)
            return True
        except docker.errors.NotFound:
            return False

    def wait(self, condition: Callable[[], bool], deadline_s: float) -> bool:
        """Poll ``condition`` until it holds or ``deadline_s`` passes; True if it held."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if condition():
                return True
            gevent.sleep(POLL_S)
        return condition()

    # -- traffic of our own, besides the load ---------------------------------------------------

    def slow_request(self, ms: int) -> gevent.Greenlet:
        """A long request through the live port, in flight while the case runs; its greenlet's
        value is (HTTP status or 0, colour that served it, error)."""

        def send():
            try:
                answer = requests.get(f"{self.spec.live_url()}/slow?ms={ms}", timeout=ms / 1000 + 30)
                return answer.status_code, answer.headers.get(COLOUR_HEADER, ""), ""
            except requests.RequestException as exc:
                return 0, "", exc.__class__.__name__

        return gevent.spawn(send)

    def held_on(self, colour: str) -> bool:
        try:
            return self.sim().proxy.backend_sessions(colour) > 0
        except Exception:
            return False

    def idle_version_for(self, idle: str, migrating: bool = False) -> str:
        """A version to deploy to ``idle`` that it does not run already (so its pool is replaced)."""
        running = self.pool_version(idle)
        choices = (MIGRATING_VERSION, *OTHER_VERSIONS) if migrating else OTHER_VERSIONS
        return next(v for v in choices if v != running)

    def healthy_idle(self) -> str:
        """The idle colour, running a good version (a bad one left by a previous case is replaced)."""
        idle = other_colour(self.live_colour() or "blue")
        version = self.pool_version(idle)
        if version is None or "defect" in version or not self.pool_up(idle):
            deployed = self.cli("deploy", self.idle_version_for(idle))
            if deployed.returncode != 0:
                raise CaseSkipped(f"could not put a good version on {idle}: {last_line(deployed.stderr)}")
        # A switch's preflight wants Docker's health checks too, which lag HAProxy's after a deploy.
        if not self.wait(lambda: self.pool_up(idle) and self.docker_healthy(idle), 120):
            raise CaseSkipped(f"{idle} is not healthy in Docker and HAProxy within 120 s, so no switch to it can start.")
        return idle

    def switch(self, notes: list[str], attempts: int = 3) -> subprocess.CompletedProcess:
        """``cutover switch``, again (at most ``attempts`` times) while its preflight refuses a pool
        that was healthy a moment ago: under load on a small machine, Docker's health check of an
        app container can miss its timeout once, and the case is about what happens after a flip."""
        for attempt in range(1, attempts + 1):
            live = self.live_colour()
            switched = self.cli("switch")
            refused = switched.returncode != 0 and "refusing to switch" in switched.stderr and self.live_colour() == live
            if not refused or attempt == attempts:
                break
            notes.append(f"switch attempt {attempt} refused by its preflight: {last_line(switched.stderr)}")
            self.wait(lambda: self.pool_up(other_colour(live)) and self.docker_healthy(other_colour(live)), 60)
        return switched

    def docker_healthy(self, colour: str) -> bool:
        pool = self.sim().status().pools[colour]
        return pool.healthy == pool.total == self.spec.pool_size


def last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def one_sentence(text: str) -> bool:
    return len([line for line in (text or "").strip().splitlines() if line.strip()]) == 1


def said(process: subprocess.Popen) -> str:
    """The last line a finished command wrote (stderr first: that is where a refusal goes)."""
    texts = []
    for stream in process.output_files:
        stream.seek(0)
        texts.append(stream.read())
    return last_line(texts[0] or texts[1])


def kill(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return process.returncode


# -- the cases: each injects its fault and says what it expects -------------------------------------

CASES: dict[str, Callable[[Harness], Fault]] = {}


def case(name: str):
    def register(function):
        CASES[name] = function
        return function

    return register


@case("live-crash")
def live_crash(h: Harness) -> Fault:
    """kill -9 of a live container's main process, from the host: Docker's restart policy applies."""
    live = h.live_colour()
    container = h.pool(live)[0]
    pid = container.attrs["State"]["Pid"]
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        raise CaseSkipped(f"pid {pid} of {container.name} is not visible from here (a remote engine?).") from None
    return Fault(f"kill -9 {pid} ({container.name})", recovered_when=lambda: h.pool_up(live))


@case("live-pool-killed")
def live_pool_killed(h: Harness) -> Fault:
    """docker kill of every live container: the idle colour should take the traffic."""
    live = h.live_colour()
    names = []
    for container in h.pool(live):
        container.kill()
        names.append(container.name)
    # Recovered once HAProxy has marked the killed servers down (the fallback serves from then on),
    # not in the quiet moment before it has noticed.
    return Fault(f"docker kill {' '.join(names)}", recovered_when=lambda: h.none_up(live) and h.pool_up(other_colour(live)))


@case("proxy-restart")
def proxy_restart(h: Harness) -> Fault:
    h.client.containers.get(proxy_container_name(h.spec)).restart()
    return Fault("docker restart of the proxy", recovered_when=lambda: h.pool_up(h.live_colour() or "blue"))


@case("db-restart")
def db_restart(h: Harness) -> Fault:
    """Writes in flight get errors; none that was acknowledged may be lost."""
    h.client.containers.get(database_container_name(h.spec)).restart()
    return Fault("docker restart of the database")


@case("deploy-killed-migrating")
def deploy_killed_migrating(h: Harness) -> Fault:
    idle = other_colour(h.live_colour())
    version = h.idle_version_for(idle, migrating=True)
    deploy = h.start("deploy", version)
    # The one-shot migration container exists from the schema step's first question to its last.
    reached = h.wait(lambda: h.exists(migration_container_name(h.spec)) or deploy.poll() is not None, 600)
    killed = deploy.poll() is None
    if killed:
        kill(deploy)
    return repair_deploy(h, idle, version, "migration", reached and killed)


@case("deploy-killed-replacing")
def deploy_killed_replacing(h: Harness) -> Fault:
    idle = other_colour(h.live_colour())
    version = h.idle_version_for(idle)
    deploy = h.start("deploy", version)
    # The idle servers go into maintenance just before their containers are replaced.
    reached = h.wait(lambda: bool(h.forced_maint(idle)) or deploy.poll() is not None, 600)
    killed = deploy.poll() is None
    if killed:
        kill(deploy)
    return repair_deploy(h, idle, version, "replacement", reached and killed)


def repair_deploy(h: Harness, idle: str, version: str, step: str, killed: bool) -> Fault:
    """What the killed deploy left, then the repairing command: the same deploy again."""
    notes = [] if killed else [f"the deploy ended before its {step} step could be interrupted"]
    left = []
    if h.exists(migration_container_name(h.spec)):
        left.append(migration_container_name(h.spec))
    left += [f"{s} in MAINT" for s in h.forced_maint(idle)]
    running = sum(1 for c in h.pool(idle) if c.status == "running")
    if running < h.spec.pool_size:
        left.append(f"{idle} has {running}/{h.spec.pool_size} running")
    notes.append("left behind: " + (", ".join(left) if left else "nothing"))
    repaired = h.cli("deploy", version)
    notes.append(f"repair 'deploy {version}': exit {repaired.returncode}" + (f" ({last_line(repaired.stderr)})" if repaired.returncode else ""))
    return Fault(
        f"SIGKILL of 'cutover deploy {version}' during {step}",
        recovered_when=lambda: h.pool_up(idle),
        checks={"killed during the step": killed, "repair deploy succeeds": repaired.returncode == 0,
                "idle runs the version": h.pool_version(idle) == version,
                "nothing left after the repair": not h.forced_maint(idle) and not h.exists(migration_container_name(h.spec))},
        notes=notes,
    )


@case("switch-killed-draining")
def switch_killed_draining(h: Harness) -> Fault:
    idle = h.healthy_idle()
    live = other_colour(idle)
    held = h.slow_request(min(8000, h.spec.drain_seconds * 1000))
    h.wait(lambda: h.held_on(live), 10)
    notes = []
    for attempt in range(1, 4):
        switch = h.start("switch")
        flipped = h.wait(lambda: h.live_colour() == idle or switch.poll() is not None, 120)
        if switch.poll() is None or "refusing to switch" not in said(switch) or attempt == 3:
            break
        # See Harness.switch: a preflight refusal is not what this case is about.
        notes.append(f"switch attempt {attempt} refused by its preflight: {said(switch)}")
        h.wait(lambda: h.pool_up(idle) and h.docker_healthy(idle), 60)
    killed = switch.poll() is None and flipped
    if switch.poll() is None:
        kill(switch)
        ended = "killed"
    else:
        ended = f"ended by itself first, exit {switch.returncode}: {said(switch)}"
    after_kill = h.live_colour()
    # The old colour healthy again first, so a retry that means to flip back really could.
    h.wait(lambda: h.pool_up(live) and h.docker_healthy(live), 60)
    retried = h.cli("switch")
    flip_back_tried = f"refusing to switch to {live}" in retried.stderr
    status, colour, error = held.get(timeout=60)
    return Fault(
        "SIGKILL of 'cutover switch' while it drained, then 'cutover switch' again",
        expect_live=idle,
        checks={"killed while draining": killed, "retried switch does not flip back (nor try to)": h.live_colour() == idle and not flip_back_tried,
                "held request answered 200": status == 200},
        notes=notes + [f"first switch {ended}; live after it: {after_kill}; retry exit {retried.returncode} {last_line(retried.stderr or retried.stdout)}",
                       f"held request: {status or error} from {colour or '-'}"],
    )


def _two_switches(h: Harness, separate_tmpdirs: bool) -> Fault:
    idle = h.healthy_idle()
    live = other_colour(idle)
    # A request held on the live colour keeps the first switch draining while the second starts.
    held = h.slow_request(min(8000, h.spec.drain_seconds * 1000))
    h.wait(lambda: h.held_on(live), 10)
    envs = []
    for index in range(2):
        env = os.environ.copy()
        if separate_tmpdirs:
            env["TMPDIR"] = str(Path(state_dir(h.stack)) / f"tmp-{index}")
            Path(env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        envs.append(env)
    switches = [h.start("switch", env=env) for env in envs]
    for switch in switches:
        switch.wait(timeout=180)
    codes = sorted(s.returncode for s in switches)
    refused = []
    for switch in switches:
        if switch.returncode != 0:
            switch.output_files[0].seek(0)
            refused.append(switch.output_files[0].read())
    held.get(timeout=60)
    return Fault(
        "two 'cutover switch' at once" + (" with different TMPDIRs" if separate_tmpdirs else ""),
        expect_live=idle,
        checks={"one succeeds, one refused": codes == [0, 1], "refusal is one sentence": len(refused) == 1 and one_sentence(refused[0])},
        notes=[f"exit codes {codes}"] + [f"refused: {last_line(err)}" for err in refused],
    )


@case("two-switches")
def two_switches(h: Harness) -> Fault:
    return _two_switches(h, separate_tmpdirs=False)


@case("two-switches-tmpdirs")
def two_switches_tmpdirs(h: Harness) -> Fault:
    return _two_switches(h, separate_tmpdirs=True)


@case("long-request-and-stream")
def long_request_and_stream(h: Harness) -> Fault:
    idle = h.healthy_idle()
    live = other_colour(idle)
    held = h.slow_request(max(1000, h.spec.drain_seconds * 1000 - 3000))
    stream = gevent.spawn(read_stream, h.spec.live_url(), h.spec.drain_seconds + 30)
    h.wait(lambda: h.held_on(live), 10)
    notes = []
    switched = h.switch(notes)
    status, colour, error = held.get(timeout=h.spec.drain_seconds + 60)
    events = stream.get(timeout=h.spec.drain_seconds + 60)
    checks = {"switch succeeds": switched.returncode == 0, "long request answered 200 by the old colour": status == 200 and colour == live}
    notes.append(f"long request: {status or error} from {colour or '-'}")
    if events["status"] == 404:
        notes.append("stream skipped: GET /events answers 404 (the demo has no stream yet)")
    else:
        checks["stream ends with 'event: end', nothing cut"] = events["ended"] and not events["partial"]
        reconnected = reconnect_colour(h.spec.live_url())
        checks["stream reconnects to the new colour"] = reconnected == idle
        notes.append(f"stream: {events['events']} events from {events['colour'] or '-'}, end={events['ended']}, "
                     f"partial={events['partial']}, {events['error'] or 'closed'}; reconnected to {reconnected or '-'}")
    return Fault("a long request and a stream on the live colour across 'cutover switch'", expect_live=idle, checks=checks, notes=notes)


@case("bad-version")
def bad_version(h: Harness) -> Fault:
    """A version that passes the smoke tests, then fails a share of real requests, switched live:
    the switch should roll back by itself and exit non-zero."""
    live = h.live_colour()
    idle = other_colour(live)
    deployed = h.cli("deploy", BAD_VERSION)
    if deployed.returncode != 0:
        raise CaseSkipped(f"deploy {BAD_VERSION} failed: {last_line(deployed.stderr)}")
    if not h.wait(lambda: h.pool_up(idle) and h.docker_healthy(idle), 120):
        raise CaseSkipped(f"{idle} ({BAD_VERSION}) is not healthy in Docker and HAProxy within 120 s, so no switch to it can start.")
    notes = []
    switched = h.switch(notes)
    return Fault(
        f"'cutover switch' to {BAD_VERSION} under load",
        expect_live=live,
        must_serve=BAD_VERSION,  # a switch refused before the flip proves no rollback
        checks={"switch exits non-zero": switched.returncode != 0, "says so in one sentence": switched.returncode != 0 and one_sentence(switched.stderr)},
        notes=notes + [f"switch exit {switched.returncode}: {last_line(switched.stderr or switched.stdout)}"],
        # The defect keeps failing a share of the preview port's requests by design; put the good
        # version back on the idle colour, as the operator would, before writes are read back.
        afterwards=lambda: h.cli("deploy", BASE_VERSION),
    )


@case(ENGINE_CASE)
def engine_restart(h: Harness) -> Fault:
    """SIGKILL of dockerd, then the project's own way of starting it (scripts/ensure-docker.sh)."""
    if h.spec.engine_host is not None:
        raise CaseSkipped(f"the stack's engine runs on {h.spec.engine_host}, not this machine.")
    pid = int(Path("/var/run/docker.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)
    h.wait(lambda: not Path(f"/proc/{pid}").exists(), 30)
    started = subprocess.run(["bash", "scripts/ensure-docker.sh"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    h.client = docker.from_env()
    return Fault(
        f"SIGKILL of dockerd ({pid}), then scripts/ensure-docker.sh",
        recovered_when=lambda: h.pool_up(h.live_colour() or "blue"),
        checks={"engine back": started.returncode == 0},
        notes=[last_line(started.stdout or started.stderr)],
    )


ALL_CASES = [name for name in CASES if name != ENGINE_CASE]


# -- running a case ------------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: str
    outcome: str  # ok, failed, skipped, error
    fault: str = ""
    requests: int = 0
    errors: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    error_seconds: float = 0.0
    first_error_s: float | None = None
    last_error_s: float | None = None
    errors_before_fault: int = 0
    errors_after_recovery: int = 0
    recovered: bool = False  # traffic (and the case's own condition) came back without an operator
    recovery_seconds: float | None = None  # from the fault to the moment traffic came back for good
    live_before: str | None = None
    live_after: str | None = None
    live_expected: str | None = None
    live_kept: bool = False
    writes_acknowledged: int = 0
    writes_lost: int = 0
    writes_missing_by_url: dict[str, int] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    repaired_by_up: bool = False
    seconds: float = 0.0


@dataclass
class Options:
    users: int = 10
    baseline_s: float = 2.0
    recover_s: float = 30.0
    settle_s: float = 3.0
    after_s: float = 2.0
    max_requests: int = 200_000


def run_case(h: Harness, name: str, options: Options) -> CaseResult:
    began = time.monotonic()
    result = CaseResult(case=name, outcome="error")
    up = h.cli("up")
    if up.returncode != 0:
        result.notes.append(f"'cutover up' before the case failed: {last_line(up.stderr)}")
        return result
    result.live_before = h.live_colour()
    app = h.spec.app
    load = LoadRun(
        h.spec.live_url(), options.users,
        # Bounded by design: generous for the slowest case (a deploy that builds), then it stops itself.
        max_seconds=options.baseline_s + 900 + options.recover_s + options.after_s,
        max_requests=options.max_requests, user_classes=rehearsal_users(app), write_probe=app.write_probe,
    )
    load.begin_phase("baseline")
    load.start()
    fault: Fault | None = None
    try:
        load.hold(options.baseline_s)
        fault_at = time.time()
        load.begin_phase("fault")
        fault = CASES[name](h)
        condition = fault.recovered_when or (lambda: True)
        recovered = None
        held_since: float | None = None

        def back() -> bool:
            # The case's own condition must have held for the settle time too: requests sent to a
            # dead server before the proxy noticed may still be in flight (connect timeout and
            # retries) when it does, and only fail afterwards.
            nonlocal recovered, held_since
            now = time.time()
            if not condition():
                held_since = None
                return False
            held_since = held_since or now
            recovered = recovered_at(load.records, fault_at, now, options.settle_s)
            return recovered is not None and now - held_since >= options.settle_s

        result.recovered = h.wait(back, options.recover_s) and load.running
        load.begin_phase("after")
        load.hold(options.after_s)
    except CaseSkipped as exc:
        result.outcome = "skipped"
        result.notes.append(str(exc))
    except Exception as exc:  # the harness itself: say what broke, keep going with the next case
        result.notes.append(f"harness error: {exc.__class__.__name__}: {exc}")
    finally:
        load.stop()
    if fault is not None:
        result.fault, result.checks, result.notes = fault.description, fault.checks, result.notes + fault.notes
        if fault.must_serve:
            served = sum(1 for r in load.records if r.version == fault.must_serve)
            result.checks[f"{fault.must_serve} served live requests"] = served > 0
            result.notes.append(f"{served} request(s) served by {fault.must_serve}, "
                                f"{sum(1 for r in load.records if r.version == fault.must_serve and r.failed)} of them failed")
        result.live_after = h.live_colour()
        result.live_expected = fault.expect_live or result.live_before
        result.live_kept = result.live_after == result.live_expected
        figures = traffic_figures(load.records, fault_at, recovered if result.recovered else None)
        result.__dict__.update(asdict(figures))
        if result.recovered and recovered is not None:
            result.recovery_seconds = round(recovered - fault_at, 3)
    if fault is not None and fault.afterwards is not None:
        fault.afterwards()
    if not result.recovered:
        # Repair before reading writes back: a lost write is one the repaired stack does not have.
        repaired = h.cli("up")
        result.repaired_by_up = repaired.returncode == 0
    acked = {r.item_id for r in load.records if r.item_id is not None}
    result.writes_acknowledged = len(acked)
    if acked:
        # A write one port could not read once may be an error of that port's app (a stale
        # database connection), not a lost write: read those once more and say what it was.
        reads = {url: lost_writes(app, url, acked) for url in (h.spec.live_url(), h.spec.preview_url())}
        missing = {url: first for url, (first, _) in reads.items()}
        again = {url: lost for url, (_, lost) in reads.items()}
        for url, ids in missing.items():
            if ids:
                answers = ", ".join(f"{a}: {n}" for a, n in Counter(again[url].values()).most_common())
                result.notes.append(f"{len(ids)} acknowledged write(s) unreadable through {url} on the first read; "
                                    f"{len(ids) - len(again[url])} read on the second" + (f", still not: {answers}" if answers else ""))
        result.writes_missing_by_url = {url: len(lost) for url, lost in again.items()}
        result.writes_lost = len(frozenset().union(*(set(lost) for lost in again.values())))
    if fault is not None and result.outcome == "error":
        result.outcome = "ok" if holds(result) else "failed"
    result.seconds = round(time.monotonic() - began, 1)
    return result


def holds(result: CaseResult) -> bool:
    """What must always hold: recovered, the right colour live, nothing lost, errors only inside
    the fault's window, and the case's own checks."""
    return (result.recovered and result.live_kept and result.writes_lost == 0 and result.errors_before_fault == 0
            and result.errors_after_recovery == 0 and all(result.checks.values()))


# -- the command ---------------------------------------------------------------------------------


def write_app_file(stacks_dir: Path) -> Path:
    """The demo under a name of its own: its artefacts are the suite's alone, so another stack's
    tests that forget the demo's images (tests/conftest.py remove_app_images) never take ours."""
    app = yaml.safe_load(DEMO_APP.read_text())
    app["name"] = APP_NAME
    app["image"]["build"]["context"] = str((DEMO_APP.parent / app["image"]["build"].get("context", ".")).resolve())
    app["locustfile"] = str((DEMO_APP.parent / app["locustfile"]).resolve())
    path = stacks_dir / "cutover-app.yaml"
    path.write_text(yaml.safe_dump(app, sort_keys=False))
    return path


def write_stack_file(stack: str, live_port: int, stacks_dir: Path) -> None:
    """The suite's own stack: the demo, read-write, two containers per colour, on its own ports."""
    stacks_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "docker:host": "unix:///var/run/docker.sock",
        "cutover:poolSize": 2,
        "cutover:bindAddress": "127.0.0.1",
        "cutover:previewBindAddress": "127.0.0.1",
        "cutover:livePort": live_port,
        "cutover:previewPort": live_port + 1,
        "cutover:app": str(write_app_file(stacks_dir)),
        "cutover:blueVersion": BASE_VERSION,
        "cutover:greenVersion": BASE_VERSION,
        "cutover:liveColor": "blue",
        "cutover:healthIntervalMs": 1000,
        # Short, so the cases that hold a request across a drain stay short.
        "cutover:drainSeconds": 10,
        "cutover:baseImage": "cutover/base:bookworm",
    }
    (stacks_dir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))


def forget_images(client) -> None:
    """Remove every artefact built for the suite's app (its stack is down, so none is in use)."""
    for image in client.images.list(filters={"label": [f"cutover.app={APP_NAME}"]}):
        for tag in image.tags or [image.id]:
            try:
                client.images.remove(tag, force=True)
            except docker.errors.APIError:
                pass  # already gone with another tag of the same image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.faults", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="faults", help="the suite's own stack (default: faults)")
    parser.add_argument("--live-port", type=int, default=19750, help="its live port; the preview is the next one (default: 19750)")
    parser.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma-separated, from: {', '.join(CASES)} (default: all but {ENGINE_CASE})")
    parser.add_argument("--allow-engine-restart", action="store_true", help=f"allow {ENGINE_CASE}: it kills this machine's Docker engine, every stack on it included")
    parser.add_argument("--users", type=int, default=10, help="concurrent keep-alive Locust users (default: 10)")
    parser.add_argument("--recover-seconds", type=float, default=30.0, help="how long a case may take to recover by itself (default: 30)")
    parser.add_argument("--out", default="faults/results.json", help="where to write the results as JSON (default: faults/results.json)")
    parser.add_argument("--down", action="store_true", help="remove the stack (and its volumes) afterwards")
    parser.add_argument("--fresh", action="store_true",
                        help="start from nothing: remove the stack and forget its app's images first (a version stays bound to the "
                             "source it was first built from, so use it after changing the demo)")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown or not args.cases:
        parser.exit(1, f"--cases: {unknown[0] if unknown else 'nothing'} is not a case; use {', '.join(CASES)}.\n")
    if ENGINE_CASE in args.cases and not args.allow_engine_restart:
        parser.exit(1, f"{ENGINE_CASE} kills this machine's Docker engine and every stack on it: add --allow-engine-restart to run it.\n")
    if not 1 <= args.users <= 200 or args.recover_seconds <= 0:
        parser.exit(1, "--users must be between 1 and 200 and --recover-seconds positive.\n")
    return args


def print_table(results: list[CaseResult]) -> None:
    table = Table(title="fault cases (errors: first to last failed request; recovered: without an operator)")
    for column in ("case", "outcome", "requests", "errors by kind", "errors lasted", "recovered", "live kept", "lost writes", "checks failed"):
        table.add_column(column, justify="right" if column in ("requests", "errors lasted", "lost writes") else "left")
    for r in results:
        kinds = ", ".join(f"{k}: {n}" for k, n in r.errors_by_kind.items()) or "-"
        lasted = f"{r.error_seconds:.2f}s" if r.errors else "-"
        recovered = ("yes" + (f" ({r.recovery_seconds:.1f}s)" if r.errors else "")) if r.recovered else "no"
        kept = "yes" if r.live_kept else f"no ({r.live_before}→{r.live_after}, want {r.live_expected})"
        failed = ", ".join(k for k, v in r.checks.items() if not v) or "-"
        style = {"ok": None, "skipped": "dim"}.get(r.outcome, "red")
        table.add_row(r.case, r.outcome, str(r.requests), kinds, lasted, recovered, kept, str(r.writes_lost), failed, style=style)
    console.print(table)
    for r in results:
        for note in ([r.fault] if r.fault else []) + r.notes:
            console.print(f"  [dim]{r.case}:[/dim] {note}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stacks_dir = state_dir(args.stack) / "stacks"
    write_stack_file(args.stack, args.live_port, stacks_dir)
    # The CLI commands a case runs read the same stack file.
    os.environ[STACKS_DIR_ENV] = str(stacks_dir)
    h = Harness(args.stack, stacks_dir)
    if args.fresh:
        h.cli("down", "--volumes")
        forget_images(h.client)
    options = Options(users=args.users, recover_s=args.recover_seconds)
    results = []
    for name in args.cases:
        console.print(f"[bold]{name}[/bold] under {args.users} read-write users on {h.spec.live_url()}")
        results.append(run_case(h, name, options))
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Written after every case: a run cut short still leaves what it measured.
        out.write_text(json.dumps({"stack": args.stack, "users": args.users, "cases": [asdict(r) for r in results]}, indent=2))
    print_table(results)
    console.print(f"results: {args.out}")
    if args.down:
        h.cli("down", "--volumes")
    return 0 if all(r.outcome in ("ok", "skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
