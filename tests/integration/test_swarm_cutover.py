"""A cutover on the local multi-node swarm under Locust load: `cutover rehearse` (deploy 2.0.0,
switch, roll back, switch) on a swarm stack whose proxies run on two workers, with the load
entering through the cluster's edge on 127.0.0.1. Every request must succeed, every acknowledged
write must be read back through both colours, no request sent after a flip may reach the old
colour, and after the last switch every proxy task must route to the new colour. Prints the
rehearsal's figures and each flip's spread across the proxy tasks. Then the switch's guards on a
swarm: a colour short of its pool refused, a second rollback refused, proxy tasks that disagree
refused until `switch --to` settles them.

Runs only when selected: `make cluster-test` (pytest -m cluster). Cluster ``cut``, engines on
127.0.0.1:23831-23833, stack ``cutx`` on ports 19731/19732 (the edge's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
import yaml

from simulator.cluster import Cluster
from simulator.errors import CutoverError, PreflightRefused, Refused
from simulator.swarm_ops import SwarmSimulator
from stacks.spec import STACKS_DIR_ENV, load_stack
from tests.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("CUTOVER_TEST_CUTOVER_CLUSTER", "cut")
API_PORT = int(os.environ.get("CUTOVER_TEST_CUTOVER_API_PORT", "23831"))
STACK = "cutx"
LIVE_PORT, PREVIEW_PORT = 19731, 19732


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(docker.from_env(timeout=300), CLUSTER)
    began = time.monotonic()
    cluster.up(workers=2, api_port=API_PORT, publish=(LIVE_PORT, PREVIEW_PORT))
    print(f"\ncluster {CLUSTER} up in {time.monotonic() - began:.1f}s")
    yield cluster
    cluster.down()


@pytest.fixture(scope="module")
def stacks_dir(tmp_path_factory) -> Path:
    stacks = tmp_path_factory.mktemp("swarm-cutover-stacks")
    config = yaml.safe_load((ROOT / "stacks" / "Pulumi.cluster.yaml").read_text())["config"]
    config.update({"docker:host": f"tcp://127.0.0.1:{API_PORT}", "cutover:livePort": LIVE_PORT, "cutover:previewPort": PREVIEW_PORT,
                   "cutover:app": str(ROOT / "examples" / "demo" / "cutover-app.yaml")})
    (stacks / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": config}))
    return stacks


@pytest.fixture(scope="module")
def sim(cluster, stacks_dir, state_dir):
    sim = SwarmSimulator(load_stack(STACK, stacks_dir), say=print)
    sim.down(with_volumes=True, with_ledger=True)  # a run killed half-way left some behind
    yield sim
    sim.down(with_volumes=True, with_ledger=True)


def test_a_cutover_under_load_on_the_swarm_drops_nothing_loses_no_write_and_moves_every_proxy(sim, stacks_dir, tmp_path):
    summary_path = tmp_path / "summary.json"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.rehearsal", "--stack", STACK, "--users", "10", "--phase-seconds", "5",
         "--to-version", "2.0.0", "--out", str(tmp_path / "rehearsal.csv"), "--summary", str(summary_path)],
        cwd=ROOT, env={**os.environ, STACKS_DIR_ENV: str(stacks_dir)}, capture_output=True, text=True, timeout=1200,
    )
    seconds = time.monotonic() - began
    assert summary_path.exists(), f"the rehearsal wrote no summary:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    summary = json.loads(summary_path.read_text())
    print(f"rehearsal on the swarm in {seconds:.0f}s: {summary['requests']} requests, {summary['failures']} failed, "
          f"{summary['writes_acknowledged']} writes acknowledged, {summary['writes_lost']} lost; flips: "
          + "; ".join(f"{f['label']}: first new {f['first_new_ms']} ms, stale {f['stale_after_flip']}" for f in summary["flips"]))
    spreads = [line.strip() for line in result.stdout.splitlines() if "proxy task(s) on" in line]
    print("\n".join(spreads))
    assert result.returncode == 0, result.stdout[-3000:]
    assert summary["failures"] == 0, summary["failure_samples"]
    assert summary["writes_acknowledged"] > 0 and summary["writes_lost"] == 0, summary["writes_missing_by_url"]
    assert {"1.0.0", "2.0.0"} <= set(summary["versions"])
    assert len(summary["flips"]) == 3 and all(f["stale_after_flip"] == 0 for f in summary["flips"]), summary["flips"]
    assert len(spreads) == 3 and all("2 proxy task(s)" in line for line in spreads), spreads

    # After the last switch every proxy task, on every traffic node, routes to green.
    states = sim.proxy_states()
    assert len({s.node for s in states}) == 2 and all(s.live == "green" and s.error is None for s in states), states
    assert sim.live_colour() == "green"


def test_the_swarm_switch_refuses_a_short_colour_a_second_rollback_and_split_proxies_until_settled(sim):
    """The switch's own guards on a swarm, each from a state this test makes itself."""
    sim.up()
    sim.switch(to="blue")

    # Preflight: the idle colour with fewer healthy tasks than cutover:poolSize is refused, nothing flipped.
    sim.scale("green", 1)
    with pytest.raises(PreflightRefused, match="green has 1 healthy task.*fewer than cutover:poolSize 2"):
        sim.switch()
    assert {s.live for s in sim.proxy_states()} == {"blue"}
    sim.scale("green", 2)
    wait_for(lambda: all(s.up.get("green", 0) >= 2 for s in sim.proxy_states()), 60, "every proxy task seeing both green tasks UP")

    # Rollback goes back once; a second rollback has nothing to undo.
    assert sim.switch().to_colour == "green"
    back = sim.rollback()
    assert back.to_colour == "blue" and back.undoes_seq is not None
    with pytest.raises(Refused, match="nothing to roll back"):
        sim.rollback()

    # Proxy tasks that disagree (one flipped behind cutover's back) stop a plain switch with one
    # sentence naming each task's colour; --to settles them all.
    (first_node, first), *_ = sorted(sim.proxies().items())
    first.switch_to("green", force=True)
    with pytest.raises(CutoverError, match=f"disagree on the live colour .*{first_node}: green"):
        sim.switch()
    settled = sim.switch(to="green")
    assert not settled.already_live and len(settled.proxies) == 2
    assert {s.live for s in sim.proxy_states()} == {"green"}
