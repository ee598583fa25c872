"""Live traffic survives the loss of the live pool, a crashed app process, a proxy restart and
Docker's DNS not answering (what an engine restart does to it). Real Docker, real HAProxy, real
Locust load on 127.0.0.1, the static-site example on a stack of its own (`heal`).

Outcomes are asserted (recovered, who served, errors only inside the fault's window); durations
and counts are printed, never asserted.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from simulator.docker_driver import wait_until
from simulator.health import LIVE_DOWN_EXIT
from stacks.spec import other_colour
from tests.conftest import REPO_ROOT, remove_app_images, run_cli, static_site_copy, write_stack_file

pytestmark = pytest.mark.docker

STACK = "heal"
LIVE_PORT = 19700  # and 19701, the preview
APP_NAME = "heal-site"
LOCUSTFILE = Path(__file__).with_name("heal_load.py")
USERS = 10


@pytest.fixture(scope="module")
def stacks_dir(tmp_path_factory, state_dir) -> Path:
    directory = static_site_copy(tmp_path_factory.mktemp("heal") / "stacks", APP_NAME)
    write_stack_file(directory, STACK, LIVE_PORT)
    cli(directory, "down", "--stack", STACK, "--volumes")
    remove_app_images(APP_NAME)
    result = cli(directory, "up", "--stack", STACK, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    yield directory
    cli(directory, "down", "--stack", STACK, "--volumes")


def cli(stacks_dir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli("--stacks-dir", str(stacks_dir), *args, timeout=timeout)


def status(stacks_dir: Path) -> tuple[int, dict]:
    result = cli(stacks_dir, "status", "--stack", STACK, "--json")
    assert result.returncode in (0, LIVE_DOWN_EXIT), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def healthy_again(stacks_dir: Path) -> dict:
    """Wait (bounded) until status exits 0 with the live colour serving, and nothing degraded."""
    seen: dict = {}

    def ok() -> bool:
        code, seen["state"] = status(stacks_dir)
        return code == 0 and not seen["state"]["degraded"] and seen["state"]["serving"] == seen["state"]["live"]

    wait_until(ok, 60, lambda: f"stack {STACK} did not become healthy again: {seen.get('state')}")
    return seen["state"]


def engine() -> docker.DockerClient:
    return docker.from_env()


def container_name(colour: str) -> str:
    return f"cutover-{STACK}-{colour}-1"


# -- a bounded Locust load with a record of every request -------------------------------------------


@dataclass(frozen=True)
class Request:
    started: float
    status: int
    colour: str
    fallback: str
    error: str

    @property
    def failed(self) -> bool:
        return not 200 <= self.status < 300


class Load:
    def __init__(self, record: Path, process: subprocess.Popen) -> None:
        self.record, self.process = record, process

    def requests(self) -> list[Request]:
        if not self.record.exists():
            return []
        with open(self.record, newline="") as handle:
            return [Request(float(r[0]), int(r[1]), r[2], r[3], r[4]) for r in csv.reader(handle) if len(r) == 5]

    def wait_for(self, condition, what: str, deadline: float = 30) -> None:
        wait_until(lambda: condition(self.requests()), deadline, lambda: f"the load never showed {what}")


@contextmanager
def load(tmp_path: Path, seconds: int):
    """``USERS`` keep-alive readers on the live port for at most ``seconds`` (Locust's own limit);
    yields once requests flow, and on the way out stops Locust (SIGTERM: it quits gracefully)."""
    record = tmp_path / "requests.csv"
    env = {**os.environ, "HEAL_RECORD": str(record), "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(USERS), "-r", str(USERS),
               "-t", f"{seconds}s", "--stop-timeout", "5", "--host", f"http://127.0.0.1:{LIVE_PORT}", "--only-summary"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    running = Load(record, process)
    try:
        running.wait_for(lambda rs: len(rs) >= 50, "requests flowing")
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def report(label: str, requests: list[Request], fault_began: float) -> None:
    failed = [r for r in requests if r.failed]
    window = f"{max(r.started for r in failed) - min(r.started for r in failed):.2f}s" if failed else "-"
    kinds = sorted({r.error.split(":")[0] or str(r.status) for r in failed})
    served = {c: sum(1 for r in requests if r.started >= fault_began and r.colour == c and not r.failed) for c in ("blue", "green")}
    print(f"\n[{label}] requests {len(requests)}, failed {len(failed)} {kinds}, errors spanned {window}; "
          f"after the fault: served by {served}, by the fallback {sum(1 for r in requests if r.fallback)}")


# -- the tests -------------------------------------------------------------------------------------


def test_the_live_pool_killed_is_served_by_the_other_colour_and_status_says_so(stacks_dir, tmp_path):
    _, before = status(stacks_dir)
    live = before["live"]
    idle = other_colour(live)
    assert before["serving"] == live and not before["degraded"]
    with load(tmp_path, 120) as running:
        # `docker kill` is a manual stop: Docker does not restart it under unless-stopped.
        killed_at = time.time()
        engine().containers.get(container_name(live)).kill()
        running.wait_for(lambda rs: any(r.fallback == live and r.started > killed_at for r in rs), f"a response from the fallback {idle}")

        code, state = status(stacks_dir)
        assert code == LIVE_DOWN_EXIT
        assert (state["live"], state["serving"], state["fallback"], state["degraded"]) == (live, idle, True, True)
        assert any(f"{container_name(live)} is stopped" in problem for problem in state["problems"])
        table = cli(stacks_dir, "status", "--stack", STACK)
        assert table.returncode == LIVE_DOWN_EXIT and "serving live: fallback" in table.stdout
        assert "is degraded: live colour" in table.stderr

        # The ledger says so, once, however often status looks.
        status(stacks_dir)
        audit = json.loads(cli(stacks_dir, "audit", "--stack", STACK, "--json").stdout)
        observed = [r for r in audit if r.get("command") == "observe" and r["time"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(killed_at - 1))]
        assert len(observed) == 1 and observed[0]["outcome"] == "degraded"
        assert (observed[0]["live"], observed[0]["serving"], observed[0]["colours_after"]["serving"]) == (live, idle, idle)

        # Replacing the colour that carries live traffic now would make it an outage: refused.
        idle_container = engine().containers.get(container_name(idle)).id
        refused = cli(stacks_dir, "deploy", "2.0.0", "--stack", STACK)
        assert refused.returncode == 1 and f"refusing to deploy to {idle}: it is serving live traffic as the fallback" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert engine().containers.get(container_name(idle)).id == idle_container

        # What the operator does: `cutover up` starts the stopped container; traffic goes back by itself.
        repaired = cli(stacks_dir, "up", "--stack", STACK)
        assert repaired.returncode == 0 and f"start {container_name(live)}" in repaired.stdout, repaired.stdout + repaired.stderr
        healthy_again(stacks_dir)
        back_at = time.time()
        running.wait_for(lambda rs: any(r.colour == live and not r.fallback and r.started > back_at for r in rs), f"{live} serving again")
    requests = running.requests()
    report("live pool killed", requests, killed_at)
    first_fallback = min(r.started for r in requests if r.fallback == live)
    # Errors only between the kill and the moment HAProxy saw the live pool down; none after.
    assert not [r for r in requests if r.failed and (r.started < killed_at - 0.5 or r.started >= first_fallback)]
    assert all(r.colour == idle for r in requests if r.fallback)
    print(f"[live pool killed] first fallback response {first_fallback - killed_at:.2f}s after the kill")


def test_a_crashed_app_process_is_restarted_by_docker(stacks_dir, tmp_path):
    _, before = status(stacks_dir)
    live = before["live"]
    target = engine().containers.get(container_name(live))
    restarts = target.attrs["RestartCount"]
    with load(tmp_path, 90) as running:
        crashed_at = time.time()
        # The app's main process dies (not `docker kill`, which Docker treats as a manual stop).
        os.kill(target.attrs["State"]["Pid"], 9)

        def restarted() -> bool:
            target.reload()
            return target.attrs["RestartCount"] > restarts and target.status == "running"

        wait_until(restarted, 30, lambda: f"{target.name} was not restarted by Docker: {target.status}, {target.attrs['RestartCount']} restarts")
        print(f"\n[crashed process] restarted by Docker within {time.time() - crashed_at:.2f}s (restart policy {target.attrs['HostConfig']['RestartPolicy']['Name']})")
        state = healthy_again(stacks_dir)
        assert state["live"] == live
    report("crashed process", running.requests(), crashed_at)
    assert not [r for r in running.requests() if r.failed and r.started < crashed_at - 0.5]


def haproxy_addresses(colour: str) -> dict[str, str]:
    """{server: address HAProxy sends it traffic to} for ``colour``, from the runtime API."""
    proxy = engine().containers.get(f"cutover-{STACK}-proxy")
    out = proxy.exec_run(["proxy-admin", "show stat"]).output.decode()
    header, _, body = out.partition("\n")
    rows = csv.DictReader([header.lstrip("# "), *body.splitlines()])
    return {r["svname"]: r["addr"].rsplit(":", 1)[0] for r in rows if r["pxname"] == colour and r["svname"] not in ("FRONTEND", "BACKEND")}


def container_address(name: str) -> str:
    networks = engine().containers.get(name).attrs["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


@contextmanager
def address_taken(address: str):
    """Placeholder containers on the stack's network (not the stack's: no cutover labels) until
    one holds ``address`` (Docker hands out the lowest free one), all removed on the way out."""
    holders = []
    try:
        for index in range(8):
            holders.append(engine().containers.run("cutover/base:bookworm", ["sleep", "300"], detach=True, network=f"cutover-{STACK}",
                                                   name=f"cutover-{STACK}-test-placeholder-{index}", labels={"cutover.test": STACK}))
            if container_address(holders[-1].name) == address:
                break
        yield
    finally:
        for holder in holders:
            holder.remove(force=True)


@contextmanager
def dns_unanswered(rule: list[str]):
    """Docker's embedded DNS (127.0.0.11, served by dockerd) stops answering inside the proxy
    container's network namespace only: what an engine restart does to it, without restarting
    the engine everyone shares. The rule is removed on the way out, whatever happens."""
    pid = str(engine().containers.get(f"cutover-{STACK}-proxy").attrs["State"]["Pid"])
    iptables = ["nsenter", "-t", pid, "-n", "iptables"]
    subprocess.run([*iptables, "-I", "OUTPUT", *rule], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([*iptables, "-D", "OUTPUT", *rule], check=True, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="entering the proxy's network namespace needs root")
@pytest.mark.parametrize("rule", [["-d", "127.0.0.11", "-j", "DROP"], ["-d", "127.0.0.11", "-p", "udp", "-j", "REJECT"]], ids=["timeouts", "refused"])
def test_live_traffic_flows_while_docker_dns_does_not_answer_and_a_new_address_is_followed_after(stacks_dir, tmp_path, rule):
    _, before = status(stacks_dir)
    live, idle = before["live"], other_colour(before["live"])
    outage_s = 20
    with load(tmp_path, outage_s + 90) as running:
        began = time.time()
        with dns_unanswered(rule):
            deadline = time.monotonic() + outage_s
            while time.monotonic() < deadline:  # the fault's duration; we look at the proxy meanwhile
                code, state = status(stacks_dir)
                assert code == 0 and state["pools"][live]["up"] == 1, f"DNS not answering took servers out: {state}"
                time.sleep(1)
        ended = time.time()
        # DNS answers again; a container recreated elsewhere on the network is followed quickly.
        old = container_address(container_name(idle))
        engine().containers.get(container_name(idle)).remove(force=True)
        # Docker would give the freed address straight back; a placeholder takes it first.
        with address_taken(old):
            recreated = cli(stacks_dir, "up", "--stack", STACK)
        assert recreated.returncode == 0, recreated.stdout + recreated.stderr
        new = container_address(container_name(idle))
        assert new != old, "Docker gave the recreated container its old address: nothing to follow"
        since = time.monotonic()
        wait_until(lambda: haproxy_addresses(idle) == {f"{idle}-1": new}, 30, lambda: f"HAProxy still sends {idle} to {haproxy_addresses(idle)}, not {new}")
        print(f"\n[dns {rule[-1]}] HAProxy followed {idle}'s new address ({old} -> {new}) {time.monotonic() - since:.2f}s after 'up' ended")
        healthy_again(stacks_dir)
    requests = running.requests()
    report(f"dns {rule[-1]} for {outage_s}s", requests, began)
    during = [r for r in requests if began <= r.started <= ended]
    assert len(during) > 100 and not [r for r in during if r.failed], [r for r in during if r.failed][:5]
    assert all(r.colour == live for r in during)


def test_a_proxy_restart_costs_a_short_window_and_recovers_by_itself(stacks_dir, tmp_path):
    """Measured, not bounded: a restarted proxy closes every connection; clients reconnect."""
    _, before = status(stacks_dir)
    with load(tmp_path, 90) as running:
        restarted_at = time.time()
        engine().containers.get(f"cutover-{STACK}-proxy").restart(timeout=10)
        state = healthy_again(stacks_dir)
        assert state["live"] == before["live"]
        again = time.time()
        running.wait_for(lambda rs: any(not r.failed and r.started > again for r in rs), "a request served after the restart")
    requests = running.requests()
    report("proxy restarted", requests, restarted_at)
    assert not [r for r in requests if r.failed and (r.started < restarted_at - 0.5 or r.started > again)]
