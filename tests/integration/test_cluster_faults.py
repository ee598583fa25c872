"""Nodes of the local swarm broken under a read-write Locust load through the edge
(loadtests/cluster_faults.py, run in a process of its own: Locust patches the standard library):
a worker killed, a worker drained and made active again, the manager (the database's node) killed
and restarted. The short form: 4 users, 4 s before and after each fault, the manager gone 8 s.

Asserts the guarantees the cases measure (docs/cluster.md, "Faults on a cluster"):
- worker killed: failures only inside the window the edge needs to mark the node down (none after
  the live colour is back to its size), the colour back to its size on the other workers, no
  acknowledged write lost;
- worker drained: no failed request, the colour at its size off the drained node, the node back
  in the edge once active; no acknowledged write lost;
- manager lost: writes answered again after the restart, no acknowledged write lost.

Runs only when selected: `make cluster-test` / `make cluster-faults` (pytest -m cluster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("CUTOVER_TEST_FAULTS_CLUSTER", "cfx")
API_PORT = os.environ.get("CUTOVER_TEST_FAULTS_API_PORT", "23811")
LIVE_PORT = os.environ.get("CUTOVER_TEST_FAULTS_LIVE_PORT", "19715")


@pytest.fixture(scope="module")
def figures(tmp_path_factory, state_dir):
    out = tmp_path_factory.mktemp("cluster-faults") / "figures.json"
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.cluster_faults", "--cluster", CLUSTER, "--api-port", API_PORT, "--live-port", LIVE_PORT,
         "--stack", f"{CLUSTER}t", "--users", "4", "--baseline-seconds", "4", "--settle-seconds", "4", "--outage-seconds", "8",
         "--recover-seconds", "90", "--out", str(out), "--down"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600, capture_output=True, text=True,
    )
    print(done.stdout[-6000:], done.stderr[-3000:])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    print(f"\ncluster faults, whole run {time.monotonic() - began:.0f}s:", json.dumps(result, indent=1))
    return {case["case"]: case for case in result["cases"]}


def test_a_killed_worker_fails_requests_only_until_it_is_marked_down(figures):
    case = figures["worker-killed"]
    assert case["failures_before_fault"] == 0, case
    assert case["requests"] > 100 and case["writes_acknowledged"] > 0, case
    # Only requests sent before the edge and the proxies marked the node down may fail.
    assert case["failed_after_window"] == 0, case
    assert case["edge_marked_down_s"] < 5, case
    assert sum(case["live_tasks_after"].values()) >= 3 and case["node"] not in case["live_tasks_after"], case
    assert case["writes_lost"] == 0, case


def test_a_drained_worker_fails_no_request(figures):
    case = figures["worker-drained"]
    assert case["failed"] == 0, case
    assert case["node"] not in case["live_tasks_after"] and sum(case["live_tasks_after"].values()) >= 3, case
    assert case["writes_lost"] == 0, case


def test_losing_the_database_node_loses_no_acknowledged_write(figures):
    case = figures["manager-lost"]
    assert case["writes_acknowledged"] > 0 and case["writes_lost"] == 0, case
    assert case["writes_back_s"] > case["restarted_at_s"], case  # nothing wrote while the database was gone
