"""A deploy SIGKILLed during its replacement step, for real (the static site as stack `repair`,
ports 19720/19721, two containers a colour): the next `status` names what it left and the one
command that fixes it, the next changing command repairs what is safe and says so (in its output
and its ledger record), and a re-deploy leaves the stack whole. Also: an engine that stops
answering mid-command is one sentence."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from tests.conftest import REPO_ROOT, remove_app_images, static_site_copy, write_stack_file
from tests.integration.repair_stack import LIVE_PORT, STACK, cli, command

pytestmark = pytest.mark.docker

APP = "cutover-repair-site"


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> Path:
    """The stack, up, blue live on 1.0.0. Its app ignores its stop signal (SIGHUP reloads nginx), so
    each old container takes its whole grace time to stop: a deploy spends seconds on the second
    container's replacement, the window the test kills it in, without a sleep anywhere."""
    directory = static_site_copy(tmp_path_factory.mktemp("repair") / "site", APP)
    app_file = directory / "cutover-app.yaml"
    app = yaml.safe_load(app_file.read_text())
    app["stop"] = {"signal": "SIGHUP", "grace_seconds": 6}
    app_file.write_text(yaml.safe_dump(app, sort_keys=False))
    write_stack_file(directory, STACK, LIVE_PORT, **{"cutover:poolSize": 2, "cutover:drainSeconds": 2})
    # A state directory of its own for this module, given back afterwards: later tests keep theirs.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CUTOVER_STATE_DIR", str(tmp_path_factory.mktemp("repair-state")))
        cli(directory, "down", "--volumes", "--ledger")
        remove_app_images(APP)
        up = cli(directory, "up", timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        yield directory
        cli(directory, "down", "--volumes", "--ledger", timeout=300)
        remove_app_images(APP)


def version_of(client, name: str) -> str | None:
    try:
        container = client.containers.get(name)
    except docker.errors.NotFound:
        return None
    return container.labels.get("cutover.version") if container.status == "running" else None


def server_states(client, colour: str) -> dict[str, str]:
    proxy = client.containers.get(f"cutover-{STACK}-proxy")
    rows = proxy.exec_run(["proxy-admin", "show stat"]).output.decode().splitlines()
    header = rows[0].lstrip("# ").split(",")
    status = header.index("status")
    return {r.split(",")[1]: r.split(",")[status] for r in rows[1:] if r.startswith(f"{colour},{colour}-")}


def test_a_deploy_killed_while_replacing_the_idle_pool_is_named_repaired_and_redeployed(stacks):
    client = docker.from_env()
    idle = "green"
    began = time.monotonic()
    deploy = subprocess.Popen(command(stacks, "deploy", "2.0.0"), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=os.environ.copy())
    try:
        # Condition: the first idle container already runs 2.0.0, so the deploy is replacing the second.
        deadline = time.monotonic() + 600
        while version_of(client, f"cutover-{STACK}-{idle}-1") != "2.0.0":
            assert deploy.poll() is None, "the deploy ended before it replaced the first idle container"
            assert time.monotonic() < deadline, "the deploy never replaced the first idle container"
            time.sleep(0.05)
        deploy.send_signal(signal.SIGKILL)
    finally:
        deploy.wait(timeout=60)
    print(f"deploy killed {time.monotonic() - began:.1f}s after it started")
    assert "MAINT" in server_states(client, idle).values(), server_states(client, idle)

    # The next status names each leftover; the pool's with the one command that fixes it.
    status = cli(stacks, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    found = {(f["kind"], f["subject"]): f for f in json.loads(status.stdout)["leftovers"]}
    print(json.dumps(list(found.values()), indent=1))
    assert ("forced-state", f"{idle}/{idle}-1") in found and ("forced-state", f"{idle}/{idle}-2") in found
    pool = found[("half-replaced", idle)]
    assert pool["fix"] == f"cutover deploy 2.0.0 --stack {STACK}", pool
    assert "left by an interrupted deploy of 2.0.0 (ledger seq" in pool["problem"], pool
    assert ("stale-lock", f"cutover-{STACK}-lock") in found
    shown = cli(stacks, "status")
    assert f"run 'cutover deploy 2.0.0 --stack {STACK}'" in shown.stdout, shown.stdout

    # The next changing command (a switch) puts the servers back, says so, names the pool, and is
    # refused by its own preflight: the idle pool is not whole.
    switch = cli(stacks, "switch")
    print(switch.stdout, switch.stderr)
    assert switch.returncode == 1, switch.stdout + switch.stderr
    assert f"repaired: {idle}/{idle}-1 is held in MAINT" in switch.stdout and "set back to ready" in switch.stdout
    assert f"leftover: {idle}" in switch.stdout and "run 'cutover deploy 2.0.0 --stack repair'" in switch.stdout
    assert "MAINT" not in server_states(client, idle).values(), server_states(client, idle)
    audit = json.loads(cli(stacks, "audit", "--json").stdout)
    last_switch = [r for r in audit if r.get("command") == "switch" and r.get("phase") == "end"][-1]
    assert any(f"{idle}/{idle}-2" in line for line in last_switch["repaired"]), last_switch
    assert last_switch["leftovers"] and "cutover deploy 2.0.0" in last_switch["leftovers"][0]

    # The named command leaves the stack whole: nothing left over, both idle containers on 2.0.0.
    again = cli(stacks, "deploy", "2.0.0")
    assert again.returncode == 0, again.stdout + again.stderr
    after = json.loads(cli(stacks, "status", "--json").stdout)
    assert after["leftovers"] == [], after["leftovers"]
    pool = after["pools"][idle]
    assert (pool["version"], pool["healthy"], pool["total"]) == ("2.0.0", 2, 2), after
    assert set(server_states(client, idle).values()) == {"UP"}, server_states(client, idle)


class StallingEngine:
    """A real path to the real engine (TCP on loopback to its Unix socket) that stops answering
    once a command asks about containers, as an engine that hangs mid-command does."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.stalled = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        engine = socket.socket(socket.AF_UNIX)
        engine.connect("/var/run/docker.sock")
        threading.Thread(target=self._pipe, args=(engine, client), daemon=True).start()
        self._pipe(client, engine, stall_on=b"/containers/")

    def _pipe(self, source: socket.socket, target: socket.socket, stall_on: bytes | None = None) -> None:
        try:
            while data := source.recv(65536):
                if stall_on and stall_on in data:
                    self.stalled.set()
                    return  # never forwarded, never answered
                target.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_an_engine_that_stops_answering_mid_command_is_one_sentence(tmp_path):
    engine = StallingEngine()
    try:
        site = static_site_copy(tmp_path / "site", APP)
        write_stack_file(site, "repair-stalled", LIVE_PORT + 2, **{"docker:host": f"tcp://127.0.0.1:{engine.port}"})
        result = subprocess.run([sys.executable, "-m", "simulator", "--stacks-dir", str(site), "status", "--stack", "repair-stalled"],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "CUTOVER_ENGINE_TIMEOUT_S": "3", "CUTOVER_STATE_DIR": str(tmp_path / "state")})
    finally:
        engine.close()
    assert engine.stalled.is_set(), "the command never reached the engine's containers"
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: the Docker engine stopped answering (") and lines[0].endswith("."), lines[0]


def test_a_deploy_hung_up_on_puts_the_idle_servers_back_on_its_way_out(stacks):
    """SIGHUP (the operator's terminal went away) is caught like Ctrl-C: the deploy puts back the
    servers it took out of rotation, and says in one sentence that it was interrupted."""
    client = docker.from_env()
    idle = "green"
    deploy = subprocess.Popen(command(stacks, "deploy", "3.0.0"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=os.environ.copy())
    try:
        deadline = time.monotonic() + 600
        while "MAINT" not in server_states(client, idle).values():
            assert deploy.poll() is None, "the deploy ended before it took the idle servers out of rotation"
            assert time.monotonic() < deadline, "the deploy never took the idle servers out of rotation"
            time.sleep(0.05)
        deploy.send_signal(signal.SIGHUP)
        _, stderr = deploy.communicate(timeout=120)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    assert deploy.returncode == 1, stderr
    assert stderr.strip().splitlines() == ["error: interrupted by SIGHUP; 'cutover status' shows anything it left half-done."], stderr
    assert "MAINT" not in server_states(client, idle).values(), server_states(client, idle)
    audit = json.loads(cli(stacks, "audit", "--json").stdout)
    assert [r for r in audit if r.get("command") == "deploy" and r.get("phase") == "end"][-1]["outcome"] == "interrupted"
