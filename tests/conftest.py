"""Shared fixtures. Tests marked ``docker`` run against a real engine and the real `ci` stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_STACK = "ci"


def run_cli(*args: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `cutover` CLI (python -m simulator) and capture what a user would see."""
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, check=check, timeout=timeout, env=os.environ.copy(),
    )


@pytest.fixture(scope="session", autouse=False)
def state_dir(tmp_path_factory) -> Path:
    # Audit records and rehearsal CSVs of the test run go to a fresh place, not the user's own.
    path = tmp_path_factory.mktemp("cutover-state")
    os.environ["CUTOVER_STATE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def ci_stack(state_dir):
    """The `ci` stack, freshly up for the whole session, and removed (with its volumes) at the end."""
    from stacks.spec import load_stack

    run_cli("down", "--stack", TEST_STACK, "--volumes")
    result = run_cli("up", "--stack", TEST_STACK, timeout=1200)
    assert result.returncode == 0, f"cutover up failed:\n{result.stdout}\n{result.stderr}"
    yield load_stack(TEST_STACK)
    if os.environ.get("CUTOVER_KEEP_STACK") != "1":
        run_cli("down", "--stack", TEST_STACK, "--volumes")
