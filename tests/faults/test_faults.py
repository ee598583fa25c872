"""The short form of the fault suite (``make faults`` runs all of it): one case through
``python -m loadtests.faults`` on a stack of its own, asserting only what must always hold.

Real Docker, HAProxy, PostgreSQL and Locust load on 127.0.0.1. Durations and counts are printed,
never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.docker

STACK, LIVE_PORT = "faults", 19750
# The short form: the harness end to end on one case, the database restarted under read-write load
# (the one case no integration test proves on its own). `make faults` (run by CI right after
# `make test`) runs every case; each one left out here is also proven by an integration test of its
# own (an app process crashed, the live pool lost, a proxy restart: test_self_healing.py; a killed
# deploy: test_interrupted_*.py; a killed switch, a bad version: test_switchback.py; two switches at
# once: test_ledger.py; streams and long requests across a switch: test_streams.py). Three cases
# here cost about 3 minutes of the 20-minute budget of `make test` for nothing `make faults` misses.
CASES = ["db-restart"]


@pytest.fixture(scope="module")
def results(state_dir, tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("faults") / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "loadtests.faults", "--stack", STACK, "--live-port", str(LIVE_PORT), "--cases", ",".join(CASES),
         "--users", "5", "--recover-seconds", "30", "--out", str(out), "--fresh", "--down"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800, env=os.environ.copy(),
    )
    print(run.stdout, run.stderr)
    assert out.exists(), run.stderr
    return {r["case"]: r for r in json.loads(out.read_text())["cases"]}


@pytest.mark.parametrize("case", CASES)
def test_fault_case_holds(results, case):
    r = results[case]
    print(f"{case}: {r['requests']} requests, errors {r['errors_by_kind'] or 'none'} over {r['error_seconds']}s, "
          f"recovered after {r['recovery_seconds']}s; notes: {r['notes']}")
    assert r["outcome"] != "error", r["notes"]
    assert r["requests"] > 0
    assert r["writes_acknowledged"] > 0
    assert r["writes_lost"] == 0, r["writes_missing_by_url"]
    assert len(r["writes_missing_by_url"]) == 2  # read back through the live and the preview port
    assert r["recovered"], f"traffic did not come back by itself: {r['errors_by_kind']}"
    assert r["live_kept"], f"live {r['live_after']}, expected {r['live_expected']}"
    assert r["errors_before_fault"] == 0 and r["errors_after_recovery"] == 0, "errors outside the fault's window"
    assert all(r["checks"].values()), r["checks"]
    assert r["outcome"] == "ok"
