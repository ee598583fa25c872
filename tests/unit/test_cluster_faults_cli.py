"""python -m loadtests.cluster_faults: bad input is one sentence and exit 1, before any cluster is made."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("args, names", [
    (["--cases", "worker-killed,nope"], "'nope'"),
    (["--workers", "1"], "--workers 1"),
    (["--users", "many"], "--users"),
    (["--users", "4", "--new-connection-users", "4"], "--new-connection-users 4"),
])
def test_bad_input_is_one_sentence(args, names):
    # An engine that cannot answer: a parse that let bad input through would fail otherwise.
    done = subprocess.run([sys.executable, "-m", "loadtests.cluster_faults", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith(".") and names in lines[0], done.stderr
