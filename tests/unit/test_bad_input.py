"""Every bad input is one sentence on stderr and exit status 1, never a usage block or a traceback,
and nothing is changed. Through the real CLI (python -m simulator) and the rehearsal's own
entry point; none of these reaches a Docker engine that answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT


def run(*args: str, module: str = "simulator", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def one_sentence(result: subprocess.CompletedProcess) -> str:
    """The error line, after checking it is the whole output and the status is 1."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith("."), lines[0]
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, names",
    [
        (["deploy", "--bogus", "1.0"], ["cutover deploy", "--bogus"]),
        (["deploy", "--stak", "x", "1.0"], ["--stak", "did you mean --stack"]),
        (["deploy"], ["missing argument 'VERSION'"]),
        (["deploy", "1.0", "2.0"], ["unexpected extra argument (2.0)"]),
        (["nonsense"], ["no such command 'nonsense'"]),
        (["registry", "nonsense"], ["cutover registry", "'nonsense'"]),
        (["metrics", "--json", "--window"], ["--window", "requires an argument"]),
        (["rehearse", "--users", "0"], ["'--users'", "0 users"]),
        (["rehearse", "--users", "many"], ["'--users'", "'many'"]),
        (["rehearse", "--steps", "foo"], ["'--steps'", "'foo' is not a step"]),
        (["rehearse", "--steps", ","], ["'--steps'", "names no step"]),
        (["rehearse", "--phase-seconds", "-1"], ["'--phase-seconds'", "-1 is not a load time"]),
        (["rehearse", "--mix", "writes"], ["'--mix'", "'writes'"]),
    ],
)
def test_a_usage_error_is_one_sentence_naming_the_option_and_value(args, names, tmp_path):
    line = one_sentence(run(*args, CUTOVER_STATE_DIR=str(tmp_path)))
    for name in names:
        assert name in line, line
    # Refused before anything ran: not even the state directory was made.
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args, names",
    [
        (["--users", "0"], ["--users", "0 users"]),
        (["--steps", "deploy,jump"], ["--steps", "'jump' is not a step"]),
        (["--phase-seconds", "-1"], ["--phase-seconds", "-1"]),
        (["--max-users", "3"], ["--max-users"]),
    ],
)
def test_the_rehearsal_run_on_its_own_says_the_same_in_one_sentence(args, names):
    line = one_sentence(run(*args, module="loadtests.rehearsal"))
    for name in names:
        assert name in line, line


def test_the_cli_checks_rehearse_options_before_the_rehearsal_process_starts(tmp_path):
    # A rehearsal process would have said "argument --users: ..." (argparse's words), not click's.
    line = one_sentence(run("rehearse", "--users", "0", CUTOVER_STATE_DIR=str(tmp_path)))
    assert line.startswith("error: cutover rehearse: invalid value for '--users'"), line


def test_a_state_directory_that_cannot_be_written_is_one_sentence(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    line = one_sentence(run("status", "--stack", "ci", CUTOVER_STATE_DIR=str(blocker / "state")))
    assert f"the state directory {blocker / 'state'} cannot be written" in line and "CUTOVER_STATE_DIR" in line, line


def stack_on(tmp_path: Path, docker_host: str) -> Path:
    """The static site's stack file, pointed at ``docker_host``; returns the stacks dir."""
    site = tmp_path / "site"
    shutil.copytree(REPO_ROOT / "examples/static-site", site)
    stack = yaml.safe_load((site / "Pulumi.static-ci.yaml").read_text())
    stack["config"]["docker:host"] = docker_host
    (site / "Pulumi.bad-input.yaml").write_text(yaml.safe_dump(stack))
    return site


@pytest.mark.parametrize("host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"])
def test_an_engine_that_is_not_running_is_one_sentence(host, tmp_path):
    stacks = stack_on(tmp_path, host)
    line = one_sentence(run("--stacks-dir", str(stacks), "deploy", "--stack", "bad-input", "2.0.0", CUTOVER_STATE_DIR=str(tmp_path / "state")))
    assert f"no Docker engine answers at {host}" in line, line


def test_a_bad_engine_timeout_setting_is_one_sentence(tmp_path):
    stacks = stack_on(tmp_path, "unix:///nonexistent/docker.sock")
    line = one_sentence(run("--stacks-dir", str(stacks), "status", "--stack", "bad-input", CUTOVER_STATE_DIR=str(tmp_path / "state"),
                            CUTOVER_ENGINE_TIMEOUT_S="soon"))
    assert "CUTOVER_ENGINE_TIMEOUT_S='soon'" in line, line


@pytest.mark.parametrize(
    "args, names",
    [
        (["finalize", "--stack", "cluster"], ["'cutover finalize'", "runs up, deploy, status, scale, switch, rollback, rehearse, down there"]),
        (["audit", "--stack", "cluster"], ["'cutover audit'", "not yet supported"]),
        (["switch", "--stack", "cluster", "--to", "purple"], ["--to", "'purple'"]),
        (["scale", "--stack", "cluster", "purple", "2"], ["cutover scale", "'purple'"]),
        (["scale", "--stack", "cluster", "blue", "21"], ["cutover scale", "21"]),
        (["scale", "--stack", "dev", "blue", "3"], ["is for swarm stacks", "stack 'dev' runs on one engine"]),
    ],
)
def test_a_command_the_simulator_lacks_on_a_swarm_stack_is_one_sentence(args, names, tmp_path):
    """Refused before any engine is asked (the cluster stack's manager does not run here)."""
    line = one_sentence(run(*args, CUTOVER_STATE_DIR=str(tmp_path)))
    for name in names:
        assert name in line, line
