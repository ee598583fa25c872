"""The audit ledger and the lock on the stack's engine, for real: a stack of its own (a copy of the
static site renamed, ports 19310/19311), driven through the real CLI from two state directories
as two operators' machines would, its ledger volume tampered with by hand."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from stacks.image_builds import STATE_IMAGE
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.docker

STACK = "ledger-it"
VOLUME = f"cutover-{STACK}-ledger"
LOCK = f"cutover-{STACK}-lock"
APP_NAME = "cutover-ledger-site"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The stack's files, and two state directories (two operators); the stack is up."""
    root = tmp_path_factory.mktemp("ledger-it")
    app = root / "app"
    shutil.copytree(REPO_ROOT / "examples/static-site", app, ignore=shutil.ignore_patterns("Pulumi.*.yaml"))
    definition = yaml.safe_load((app / "cutover-app.yaml").read_text())
    definition["name"] = APP_NAME
    (app / "cutover-app.yaml").write_text(yaml.safe_dump(definition))
    stack_file = yaml.safe_load((REPO_ROOT / "examples/static-site/Pulumi.static-ci.yaml").read_text())
    stack_file["config"].update({"cutover:livePort": 19310, "cutover:previewPort": 19311, "cutover:app": str(app / "cutover-app.yaml"), "cutover:drainSeconds": 5})
    (root / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(stack_file))
    world = {"stacks": root, "alice": root / "alice-state", "bob": root / "bob-state"}
    cli(world, "down", "--volumes", "--ledger")
    result = cli(world, "up", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    yield world
    cli(world, "down", "--volumes", "--ledger")
    client = docker.from_env()
    for image in client.images.list(name=APP_NAME):
        for tag in image.tags:
            client.images.remove(tag, force=True)


def command(world, *args: str, who: str = "alice", env: dict | None = None) -> list[str]:
    return [sys.executable, "-m", "simulator", "--stacks-dir", str(world["stacks"]), *args[:1], "--stack", STACK, *args[1:]]


def ctrl_c_able() -> None:
    """Run in the child before exec: Ctrl-C as a terminal delivers it. A shell without job control
    starts background commands with SIGINT ignored, and Python keeps an ignored SIGINT ignored, so
    a test run launched that way would otherwise see its SIGINT do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def environment(world, who: str = "alice", **extra) -> dict:
    return {**os.environ, "CUTOVER_STATE_DIR": str(world[who]), **extra}


def cli(world, *args: str, who: str = "alice", timeout: float = 300, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(command(world, *args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=environment(world, who, **extra))


def records(world) -> list[dict]:
    result = cli(world, "audit", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ledger_file(name: str = "audit.jsonl") -> bytes:
    client = docker.from_env()
    helper = client.containers.create(STATE_IMAGE, ["true"], volumes={VOLUME: {"bind": "/ledger", "mode": "rw"}})
    try:
        stream, _ = helper.get_archive(f"/ledger/{name}")
        archive = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
        return archive.extractfile(archive.getmembers()[0]).read()
    finally:
        helper.remove(force=True)


def write_ledger_file(content: bytes) -> None:
    """Overwrite the ledger on its volume by hand, as someone with access to the engine could."""
    client = docker.from_env()
    helper = client.containers.create(STATE_IMAGE, ["true"], volumes={VOLUME: {"bind": "/ledger", "mode": "rw"}})
    try:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("audit.jsonl")
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
        helper.put_archive("/ledger", buffer.getvalue())
    finally:
        helper.remove(force=True)


def test_every_outcome_is_recorded_with_who_what_and_the_colours(world):
    before = len(records(world))
    refused = cli(world, "deploy", "not a version!")
    assert refused.returncode == 1 and "cannot be an image tag" in refused.stderr
    nothing = cli(world, "finalize")
    assert nothing.returncode == 1 and "nothing to finalize" in nothing.stderr
    ends = [r for r in records(world)[before:] if r["phase"] == "end"]
    assert [(r["command"], r["outcome"]) for r in ends] == [("deploy", "refused"), ("finalize", "refused")]
    assert "cannot be an image tag" in ends[0]["reason"] and ends[0]["args"] == {"version": "not a version!"}
    for r in ends:
        assert r["actor"].count("@") == 1 and r["stack"] == STACK and r["start_seq"] == r["seq"] - 1
        assert r["colours_before"]["live"] == "blue" and r["colours_after"]["live"] == "blue"
        assert isinstance(r["duration_s"], float)
    up = [r for r in records(world) if r["command"] == "up" and r["phase"] == "end"][-1]
    assert up["outcome"] == "ok" and up["version"] == "1.0.0" and up["artefact"].startswith("sha256:")
    assert up["colours_after"]["blue"]["image"] == up["artefact"]


def test_the_ledger_survives_down_volumes_and_goes_only_with_ledger(world):
    client = docker.from_env()
    assert cli(world, "down", "--ledger").returncode == 1  # --ledger only with --volumes
    # The lock (a container) is not one of the stack's containers: 'down' never takes it for one.
    assert not client.containers.list(all=True, filters={"label": f"cutover.stack={STACK}", "name": LOCK})
    assert client.volumes.get(VOLUME).attrs["Labels"] == {"cutover.project": "cutover", "cutover.stack": STACK, "cutover.role": "ledger", "cutover.managed-by": "cutover"}


def test_editing_deleting_inserting_or_swapping_a_line_on_the_engine_fails_verify_at_that_record(world):
    verified = cli(world, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip().endswith("chain intact") and len(verified.stdout.strip().splitlines()) == 1
    original = ledger_file()
    lines = original.decode().splitlines()
    assert len(lines) >= 6
    k = 3  # a line in the middle; the unit tests cover every position

    def edited(line: str) -> str:
        record = json.loads(line)
        record["actor"] = "someone-else@elsewhere"
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    cases = {
        "altered": (lines[: k - 1] + [edited(lines[k - 1])] + lines[k:], f"record seq {k} (line {k}) was altered"),
        "removed": (lines[: k - 1] + lines[k:], f"record seq {k} was removed"),
        "inserted": (lines[:k] + [lines[k - 1]] + lines[k:], f"lines {k} and {k + 1} both say seq {k}: one of them was inserted"),
        "reordered": (lines[: k - 1] + [lines[k], lines[k - 1]] + lines[k + 1 :], f"seq {k + 1} is at line {k}, before seq {k}"),
        "last altered": (lines[:-1] + [edited(lines[-1])], f"record seq {len(lines)} (line {len(lines)}, the last) was altered"),
        "last removed": (lines[:-1], f"record seq {len(lines)} was removed from the end"),
    }
    try:
        for case, (tampered, expected) in cases.items():
            write_ledger_file("".join(line + "\n" for line in tampered).encode())
            result = cli(world, "audit", "verify", who="bob")  # bob has no cache: the chain and head alone catch it
            assert result.returncode == 1, (case, result.stdout)
            assert expected in result.stderr.replace("\n", " "), (case, result.stderr)
            assert len(result.stderr.strip().splitlines()) <= 2, result.stderr  # one sentence (wrapped at most once)
    finally:
        write_ledger_file(original)
    assert cli(world, "audit", "verify").returncode == 0


def test_two_switches_at_the_same_moment_from_two_state_directories_leave_one_valid_chain(world):
    for attempt in range(3):
        before = len(records(world))
        started = [subprocess.Popen(command(world, "switch"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=environment(world, who)) for who in ("alice", "bob")]
        results = [(p.wait(timeout=300), *p.communicate()) for p in started]
        codes = sorted(code for code, _, _ in results)
        new = records(world)[before:]
        verified = cli(world, "audit", "verify")
        assert verified.returncode == 0, verified.stderr
        if codes == [0, 1]:
            break
        assert codes == [0, 0], results  # one after the other: both fine, and both recorded
    else:
        pytest.fail("the two switches never overlapped in three attempts")
    refused_stderr = next(err for code, _, err in results if code == 1)
    assert "is locked by 'switch' of" in refused_stderr and "pid" in refused_stderr and len(refused_stderr.strip().splitlines()) <= 2
    ends = [r for r in new if r["phase"] == "end"]
    assert sorted(r["outcome"] for r in ends) == ["ok", "refused"]
    refusal = next(r for r in ends if r["outcome"] == "refused")
    assert refusal["start_seq"] is None and "is locked by 'switch'" in refusal["reason"]
    assert len([r for r in new if r["phase"] == "start"]) == 1


def test_a_deploy_killed_half_way_is_interrupted_and_the_next_command_says_so_and_frees_its_lock(world):
    client = docker.from_env()
    before = len(records(world))
    deploy = subprocess.Popen(command(world, "deploy", "2.0.0-kill"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=environment(world))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tail = ledger_file().decode().splitlines()[-1]
        if json.loads(tail)["phase"] == "start" and json.loads(tail)["command"] == "deploy":
            break
        time.sleep(0.2)
    else:
        deploy.kill()
        pytest.fail("the deploy never wrote its start record")
    start_seq = json.loads(tail)["seq"]
    time.sleep(1.0)  # half-way: building or replacing containers
    deploy.send_signal(signal.SIGKILL)
    deploy.wait(timeout=30)
    assert client.containers.get(LOCK).labels["cutover.lock.pid"] == str(deploy.pid)  # the dead command's lock is left

    shown = cli(world, "audit")
    assert "interrupted" in shown.stdout

    again = cli(world, "deploy", "2.0.0-kill", who="bob")
    assert again.returncode == 0, again.stdout + again.stderr
    out = again.stdout.replace("\n", " ")
    assert f"released the lock on stack {STACK} left by 'deploy' of" in out and f"its holder (pid {deploy.pid} on this machine) is gone" in out
    assert f"note: the previous deploy (seq {start_seq}, by " in out and "was interrupted" in out

    new = records(world)[before:]
    closing = [r for r in new if r["phase"] == "end" and r["start_seq"] == start_seq]
    assert len(closing) == 1 and closing[0]["outcome"] == "interrupted" and "stopped half-way" in closing[0]["reason"]
    assert cli(world, "audit", "verify").returncode == 0
    # Said once: the command after that has nothing to note.
    assert "was interrupted" not in cli(world, "switch").stdout


def test_ctrl_c_half_way_records_interrupted_and_lets_go_of_the_lock(world):
    client = docker.from_env()
    before = len(records(world))
    deploy = subprocess.Popen(command(world, "deploy", "2.0.0-ctrl-c"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=environment(world), preexec_fn=ctrl_c_able)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tail = json.loads(ledger_file().decode().splitlines()[-1])
        if tail["phase"] == "start" and tail["command"] == "deploy":
            break
        time.sleep(0.2)
    time.sleep(1.0)
    deploy.send_signal(signal.SIGINT)
    deploy.communicate(timeout=60)
    assert deploy.returncode != 0
    end = [r for r in records(world)[before:] if r["phase"] == "end" and r["start_seq"] == tail["seq"]]
    assert len(end) == 1 and end[0]["outcome"] == "interrupted" and "Ctrl-C" in end[0]["reason"], end
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(LOCK)


def test_ctrl_c_while_the_idle_servers_are_out_of_rotation_puts_them_back(world):
    """Interrupted after the idle colour's servers went into maintenance: none stays there (the
    next switch would otherwise be refused for a pool that is fine)."""
    proxy = docker.from_env().containers.get(f"cutover-{STACK}-proxy")
    # Read once: a deploy never moves the live colour, and each poll below must be quick enough to
    # see the servers' short time in maintenance.
    idle = "green" if json.loads(cli(world, "status", "--json").stdout)["live"] == "blue" else "blue"

    def idle_states() -> dict[str, str]:
        rows = proxy.exec_run(["proxy-admin", "show stat"]).output.decode().splitlines()
        return {r.split(",")[1]: r.split(",")[17] for r in rows if r.startswith(f"{idle},{idle}-")}

    deploy = subprocess.Popen(command(world, "deploy", "2.0.0-maint"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=environment(world), preexec_fn=ctrl_c_able)
    deadline = time.monotonic() + 120
    while "MAINT" not in idle_states().values():
        assert time.monotonic() < deadline and deploy.poll() is None, "the deploy never took the idle servers out of rotation"
        time.sleep(0.05)
    deploy.send_signal(signal.SIGINT)
    deploy.communicate(timeout=60)
    assert deploy.returncode != 0
    # "MAINT (resolution)" is HAProxy's own word for a container that is gone (a replacement cut
    # short); plain "MAINT" is maintenance forced by cutover, and that must not outlive it.
    assert "MAINT" not in idle_states().values(), idle_states()
    # What an operator does next, and what leaves the stack whole for the tests after this one.
    again = cli(world, "deploy", "2.0.0-maint")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_lock_held_by_another_machine_refuses_until_its_heartbeat_is_stale(world):
    client = docker.from_env()
    labels = {"cutover.project": "cutover", "cutover.role": "lock", "cutover.lock.stack": STACK, "cutover.lock.command": "deploy",
              "cutover.lock.holder": "ops@build-agent-7", "cutover.lock.host": "build-agent-7", "cutover.lock.boot": "elsewhere",
              "cutover.lock.pid": "4242", "cutover.lock.since": "2025-01-01T00:00:00+00:00"}
    client.containers.run(STATE_IMAGE, name=LOCK, labels=labels, detach=True, network_mode="none",
                          volumes={VOLUME: {"bind": "/ledger", "mode": "rw"}})
    try:
        held = cli(world, "switch")
        assert held.returncode == 1
        assert "stack ledger-it is locked by 'deploy' of ops@build-agent-7 (pid 4242" in held.stderr.replace("\n", " ")
        refusal = records(world)[-1]
        assert (refusal["command"], refusal["outcome"], refusal["start_seq"]) == ("switch", "refused", None)
        time.sleep(3)
        released = cli(world, "switch", CUTOVER_LOCK_STALE_SECONDS="2")
        assert released.returncode == 0, released.stderr
        assert "released the lock on stack ledger-it left by 'deploy' of ops@build-agent-7" in released.stdout.replace("\n", " ")
        assert "no heartbeat from its holder" in released.stdout
    finally:
        try:
            client.containers.get(LOCK).remove(force=True)
        except docker.errors.NotFound:
            pass


def test_a_rehearsal_is_one_command_with_its_steps_under_it_and_its_load_summary(world):
    before = len(records(world))
    result = cli(world, "rehearse", "--users", "3", "--phase-seconds", "1", "--steps", "deploy,switch", "--mix", "read", "--to-version", "3.0.0-rehearsed")
    assert result.returncode == 0, result.stdout + result.stderr
    new = records(world)[before:]
    rehearsal = next(r for r in new if r["command"] == "rehearse" and r["phase"] == "start")
    steps = [r for r in new if r["phase"] == "start" and r.get("parent_seq") == rehearsal["seq"]]
    assert [r["command"] for r in steps] == ["up", "deploy", "switch"]
    end = next(r for r in new if r["phase"] == "end" and r["start_seq"] == rehearsal["seq"])
    assert end is new[-1] and end["outcome"] == "ok" and end["version"] == "3.0.0-rehearsed"
    assert end["load"]["requests"] > 0 and end["load"]["failures"] == 0 and len(end["load"]["flips"]) == 1
    assert cli(world, "audit", "verify").returncode == 0


def test_metrics_come_from_this_ledger(world):
    result = cli(world, "metrics", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["deployment_frequency"]["deployments"] >= 1
    table = cli(world, "metrics")
    assert "deployment frequency" in table.stdout and "time to restore" in table.stdout


def test_down_volumes_keeps_the_ledger_and_down_ledger_removes_it(world):
    client = docker.from_env()
    assert cli(world, "down", "--volumes").returncode == 0
    client.volumes.get(VOLUME)  # still there
    down = [r for r in records(world) if r["command"] == "down"]
    assert down[-1]["phase"] == "end" and down[-1]["outcome"] == "ok"
    removed = cli(world, "down", "--volumes", "--ledger")
    assert removed.returncode == 0, removed.stderr
    assert f"removed the ledger volume {VOLUME}" in removed.stdout
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get(VOLUME)
