"""The cutover itself, against a real engine, real HAProxy and real Locust load on the `ci` stack."""

from __future__ import annotations

import csv
import json
import sys
import threading
import time
from pathlib import Path

import docker
import pytest
import requests

from simulator.operations import Simulator
from stacks.spec import other_colour
from stacks.topology import app_container_name, proxy_container_name
from tests.conftest import REPO_ROOT, TEST_STACK, run_cli

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def sim(ci_stack) -> Simulator:
    return Simulator(ci_stack, say=lambda line: None)


def wait_for(condition, deadline_s: float, what: str, interval_s: float = 0.05):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")


def test_switch_under_load_drops_nothing_and_loses_no_write(ci_stack, sim, tmp_path):
    """>= 20,000 read-write requests across 4 switches and a rollback: none fails, all reach the right
    colour, every acknowledged write reads back through both ports.

    One rehearsal proves what two did before (this one, read-only, and test_read_write's 4-step
    read-write one): the read-write mix sends the same reads plus the writes, so every assertion of
    both holds on it, and the second deploy, load and read-back are saved (about 3 minutes of
    `make test`). No --out: the record goes to the stack's state directory, the report beside it
    (--out is test_any_app's rehearsal's)."""
    summary_path = tmp_path / "summary.json"
    result = __import__("subprocess").run(
        [sys.executable, "-m", "loadtests.rehearsal", "--stack", TEST_STACK, "--users", "30", "--phase-seconds", "6",
         "--to-version", "2.0.0-load", "--steps", "deploy,switch,rollback,switch,switch,switch", "--mix", "read-write",
         "--summary", str(summary_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )
    assert summary_path.exists(), f"rehearsal wrote no summary:\n{result.stdout}\n{result.stderr}"
    summary = json.loads(summary_path.read_text())
    print(result.stdout)

    assert summary["failures"] == 0, summary["failure_samples"]
    assert summary["requests"] >= 20_000, f"only {summary['requests']} requests"
    assert {"1.0.0", "2.0.0-load"} <= set(summary["versions"])
    assert len(summary["flips"]) == 5
    for flip in summary["flips"]:
        assert flip["stale_after_flip"] == 0, flip
        # Every user kept sending on its keep-alive connection and every one of them moved over.
        assert flip["users_active_after"] == 30 and flip["users_moved"] == 30, flip
        assert flip["first_new_ms"] is not None and flip["first_new_ms"] < 1000, flip
    # Keep-alive really was in use: a handful of connections carried every request.
    assert summary["connections"] <= 60 < summary["requests"]
    # Writes: acknowledged, none lost, read back through the live and the preview port.
    assert summary["writes_acknowledged"] >= 200
    assert summary["writes_lost"] == 0, summary["writes_missing_by_url"]
    assert all(url_missing == 0 for url_missing in summary["writes_missing_by_url"].values())
    assert len(summary["writes_missing_by_url"]) == 2
    for phase in summary["phases"]:
        assert phase["failures"] == 0 and phase["lost"] == 0, phase
    assert sum(p["writes"] for p in summary["phases"]) == summary["writes_acknowledged"]
    assert result.returncode == 0, result.stdout + result.stderr

    # Without --out the record goes to the stack's state directory, and the report beside it.
    record_path = Path(summary["record"])
    with open(record_path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["requests"]
    assert all(200 <= int(row["status"]) < 300 for row in rows)
    # The cutover report sits beside the CSV, and the rehearsal says where.
    for key, suffix in (("report_html", ".html"), ("report_png", ".png")):
        assert summary[key] == str(record_path.with_suffix(suffix)) and Path(summary[key]).stat().st_size > 0, summary[key]
        assert summary[key] in result.stdout


def test_long_request_survives_switch_and_redeploy_of_its_colour(ci_stack, sim):
    started_on = sim.live_colour()
    outcome: dict = {}

    def long_request() -> None:
        try:
            response = requests.get(f"{ci_stack.live_url()}/slow?ms=10000", timeout=60)
            outcome.update(status=response.status_code, colour=response.json()["colour"])
        except requests.RequestException as exc:  # recorded, then asserted below
            outcome.update(error=repr(exc))

    worker = threading.Thread(target=long_request)
    worker.start()
    wait_for(lambda: sim.proxy.backend_sessions(started_on) >= 1, 5, f"the slow request to reach {started_on}")

    switched = sim.switch()
    assert switched.to_colour == other_colour(started_on)
    deployed = sim.deploy("1.0.1-redeploy")  # the colour the request started on, now idle
    assert deployed.colour == started_on

    worker.join(timeout=60)
    assert outcome == {"status": 200, "colour": started_on}
    # The switch waited for the request instead of cutting it off.
    assert switched.drained and switched.drain_seconds >= 2.0, switched


def test_switch_to_unhealthy_idle_is_refused_and_changes_nothing(ci_stack, sim):
    live_before = sim.live_colour()
    idle = other_colour(live_before)
    client = docker.from_env()
    victim = client.containers.get(app_container_name(ci_stack, idle, 1))
    victim.stop(timeout=40)
    try:
        wait_for(lambda: any(not s.up for s in sim.proxy.servers(idle)), 15, "HAProxy to mark the stopped server down")
        result = run_cli("switch", "--stack", TEST_STACK)
        assert result.returncode == 1
        message = result.stderr.strip()
        assert message.startswith("error: refusing to switch to " + idle), message
        assert len(message.splitlines()) == 1, message
        assert sim.live_colour() == live_before
        assert requests.get(f"{ci_stack.live_url()}/version", timeout=5).json()["colour"] == live_before
    finally:
        assert run_cli("up", "--stack", TEST_STACK).returncode == 0
    wait_for(lambda: all(s.up for s in sim.proxy.servers(idle)), 30, f"{idle} back up")


def test_up_twice_changes_nothing(ci_stack):
    client = docker.from_env()
    names = [proxy_container_name(ci_stack)] + [app_container_name(ci_stack, c, i) for c in ("blue", "green") for i in (1, 2)]
    before = {n: (client.containers.get(n).id, client.containers.get(n).attrs["State"]["StartedAt"]) for n in names}
    first = run_cli("up", "--stack", TEST_STACK)
    second = run_cli("up", "--stack", TEST_STACK)
    assert first.returncode == 0 and second.returncode == 0
    assert "nothing to change" in second.stdout
    after = {n: (client.containers.get(n).id, client.containers.get(n).attrs["State"]["StartedAt"]) for n in names}
    assert after == before


def test_status_json_reports_both_pools(ci_stack, sim):
    result = run_cli("status", "--stack", TEST_STACK, "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["stack"] == TEST_STACK
    assert status["live"] == sim.live_colour()
    assert set(status["pools"]) == {"blue", "green"}
    for pool in status["pools"].values():
        assert set(pool) == {"version", "healthy", "total", "image_id", "up"}
        assert pool["total"] == pool["up"] == ci_stack.pool_size
    assert (status["serving"], status["degraded"], status["problems"]) == (status["live"], False, [])


@pytest.mark.parametrize(
    "args, expected",
    [
        (("deploy", "--stack", TEST_STACK, "bad tag!"), "cannot be an image tag"),
        (("switch", "--stack", "nosuch"), "stack 'nosuch' has no file"),
    ],
)
def test_bad_input_is_one_sentence_and_changes_nothing(ci_stack, sim, args, expected):
    live_before = sim.live_colour()
    result = run_cli(*args)
    assert result.returncode != 0
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sim.live_colour() == live_before
