"""Automatic rollback of a bad switch under real Locust load, and rollback that means "back",
on a read-write demo stack of their own (autorb, ports 19710/19711)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from simulator.ledger import commands
from simulator.operations import Simulator
from stacks.spec import load_stack
from tests.conftest import demo_copy, REPO_ROOT, remove_app_images, run_cli

pytestmark = pytest.mark.docker

STACK = "autorb"
APP = "autorb-demo"  # its own image names: no other test's demo versions are touched
WATCH_SECONDS = 15
DEFECT = "1.0.0-defect30"


@pytest.fixture(scope="module")
def stacks(tmp_path_factory, state_dir) -> Path:
    directory = tmp_path_factory.mktemp("autorb")
    app_file = demo_copy(directory / "demo", APP)
    config = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.ci.yaml").read_text())["config"]
    config.update({"cutover:app": str(app_file), "cutover:livePort": 19710, "cutover:previewPort": 19711, "cutover:poolSize": 1,
                   "cutover:drainSeconds": 5, "cutover:watchSeconds": WATCH_SECONDS})
    (directory / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": config}))
    cli(directory, "down", "--volumes")
    remove_app_images(APP)
    up = cli(directory, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    yield directory
    if os.environ.get("CUTOVER_KEEP_STACK") != "1":
        cli(directory, "down", "--volumes", "--ledger")
        remove_app_images(APP)


def cli(stacks: Path, command: str, *args: str) -> subprocess.CompletedProcess:
    return run_cli("--stacks-dir", str(stacks), command, "--stack", STACK, *args, timeout=900)


def live(stacks: Path) -> tuple[str, str]:
    state = json.loads(cli(stacks, "status", "--json").stdout)
    return state["live"], state["pools"][state["live"]]["version"]


def ledger_rows(stacks: Path) -> list[dict]:
    return commands(Simulator(load_stack(STACK, stacks), say=lambda line: None).ledger.entries())


def wait_for(condition, deadline_s: float, what: str) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.1)


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert message.startswith("error:") and result.stderr.strip().count("\n") == 0, result.stderr
    for word in words:
        assert word in message, message
    return message


def test_a_bad_version_switched_live_under_load_is_rolled_back_by_itself(stacks, tmp_path):
    deployed = cli(stacks, "deploy", DEFECT)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr  # its smoke tests pass
    before = live(stacks)
    ready, stop, out = tmp_path / "ready", tmp_path / "stop", tmp_path / "load.json"
    env = {**os.environ, "CUTOVER_STACKS_DIR": str(stacks)}
    load = subprocess.Popen([sys.executable, "-m", "tests.integration.load_process", "--stack", STACK, "--users", "10", "--max-seconds", "120",
                             "--ready", str(ready), "--stop", str(stop), "--out", str(out)], cwd=REPO_ROOT, env=env)
    try:
        wait_for(lambda: ready.exists() or load.poll() is not None, 60, "the load to start")
        switched = cli(stacks, "switch")
    finally:
        stop.write_text("stop")
        load.wait(timeout=90)
    records = json.loads(out.read_text())["records"]

    message = assert_refused(switched, "rolled back automatically", DEFECT, "5xx", f"{before[0]} ({before[1]}) is live again")
    assert live(stacks) == before
    rows = ledger_rows(stacks)
    back = [r for r in rows if r["command"] == "auto-rollback"][-1]
    switch = [r for r in rows if r["command"] == "switch"][-1]
    assert switch["outcome"] == "failed" and switch["reason"] == message.removeprefix("error: ")
    assert back["outcome"] == "ok" and back["to_colour"] == before[0] and back["version"] == before[1]
    evidence = back["evidence"]
    assert evidence["kind"] == "5xx" and evidence["responses_5xx"] > 0 and evidence["requests"] >= 20 and evidence["ratio_percent"] > 5
    assert back["seconds_after_flip"] <= WATCH_SECONDS  # back inside the window

    failed = [r for r in records if r["status"] != 200 or r["error"]]
    flip_began = switch["flipped_at"] - switch["flip_seconds"]
    print(f"\n{len(records)} requests under load, {len(failed)} failed, all on {switch['to_colour']} ({DEFECT}); "
          f"flipped back {back['seconds_after_flip']}s after the flip; evidence {evidence}")
    assert failed, "the defect never showed: the test proves nothing"
    for record in failed:
        # Served by the bad colour, between the flip and the flip back; nothing else failed.
        assert (record["status"], record["colour"], record["version"]) == (500, switch["to_colour"], DEFECT), record
        assert record["finished"] >= flip_began and record["started"] <= back["flipped_back_at"], record


@pytest.fixture
def short_watch(stacks):
    """The stack's switches watched 3 s instead of WATCH_SECONDS for one test, then back: rollback's
    meaning does not depend on the watch (the other two tests here do), and each switch would
    otherwise hold the test for the whole window (three of them: about 36 s of make test)."""
    path = stacks / f"Pulumi.{STACK}.yaml"
    original = path.read_text()
    document = yaml.safe_load(original)
    document["config"]["cutover:watchSeconds"] = 3
    path.write_text(yaml.safe_dump(document))
    try:
        yield
    finally:
        path.write_text(original)


def test_rollback_goes_back_to_the_version_live_before_the_last_switch(stacks, short_watch):
    start = live(stacks)
    # The last flip was the automatic rollback: nothing to undo.
    assert_refused(cli(stacks, "rollback"), "nothing to roll back", "auto-rollback")
    assert cli(stacks, "deploy", "1.1.0").returncode == 0
    refused = assert_refused(cli(stacks, "rollback"), "nothing to roll back")
    assert live(stacks) == start
    assert [r for r in ledger_rows(stacks) if r["command"] == "rollback"][-1]["outcome"] == "refused", refused

    switched = cli(stacks, "switch")
    assert switched.returncode == 0 and live(stacks)[1] == "1.1.0", switched.stdout + switched.stderr
    back = cli(stacks, "rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert live(stacks) == start  # the colour and the version that were live before the switch

    assert cli(stacks, "switch", "--to", "green" if start[0] == "blue" else "blue").returncode == 0
    again = cli(stacks, "switch", "--to", live(stacks)[0])
    assert again.returncode == 0 and "already live" in again.stdout, again.stdout + again.stderr
    forward = live(stacks)
    assert cli(stacks, "deploy", "1.2.0").returncode == 0  # onto the colour a rollback would go back to
    assert_refused(cli(stacks, "rollback"), "redeployed since", "runs 1.2.0", f"'cutover deploy {start[1]}'")
    assert live(stacks) == forward


def test_a_switch_killed_after_its_flip_is_completed_by_its_retry_not_flipped_back(stacks):
    spec = load_stack(STACK, stacks)
    start = live(stacks)
    target = "green" if start[0] == "blue" else "blue"

    def served_by() -> str:
        return requests.get(f"{spec.live_url()}/version", timeout=5).headers.get("X-Cutover-Colour", "")

    env = {**os.environ, "CUTOVER_STACKS_DIR": str(stacks)}
    switch = subprocess.Popen([sys.executable, "-m", "simulator", "switch", "--stack", STACK], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The flip is done while the switch still watches the new colour (WATCH_SECONDS): kill it then.
    wait_for(lambda: served_by() == target or switch.poll() is not None, 120, "the flip")
    switch.send_signal(signal.SIGKILL)
    switch.wait(timeout=30)
    assert switch.returncode == -signal.SIGKILL, "the switch ended before it could be killed after its flip"
    killed = [r for r in ledger_rows(stacks) if r["command"] == "switch"][-1]

    retry = cli(stacks, "switch")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert f"completed the interrupted flip (seq {killed['seq']})" in " ".join(retry.stdout.split())
    assert live(stacks)[0] == target  # not flipped back
    completed = [r for r in ledger_rows(stacks) if r["command"] == "switch"][-1]
    assert (completed["outcome"], completed["completes_seq"], completed["to_colour"]) == ("ok", killed["seq"], target)

    # And a rollback after it goes back to where that switch started (once Docker sees the colour
    # healthy again: on a busy machine its health command can miss a beat, and preflight refuses then).
    def healthy(colour: str) -> bool:
        pool = json.loads(cli(stacks, "status", "--json").stdout)["pools"][colour]
        return pool["healthy"] == pool["total"]

    wait_for(lambda: healthy(start[0]), 120, f"{start[0]} to be healthy in Docker")
    rolled_back = cli(stacks, "rollback")
    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    assert live(stacks) == start
