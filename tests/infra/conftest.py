"""Fixtures for the testinfra checks of the running `ci` stack.

The checks never build or change the stack themselves. ``ci_stack`` makes sure it is up with the
same idempotent `cutover up` a user runs (a no-op when it already is), unless
``CUTOVER_TEST_STACK_UP=1`` says the caller has brought it up already. It overrides the
``ci_stack`` of ``tests/conftest.py`` for this directory: that one starts from a fresh stack and
takes it down afterwards, which a read-only verification must not do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.errors
import pytest
import testinfra

from stacks.spec import StackSpec, load_stack
from stacks.topology import proxy_container_name

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK = "ci"
# `cutover` refuses (rather than queues) a second changing command on a stack; wait that one out.
LOCK_BUSY = "another cutover command is changing stack"
UP_TIMEOUT_S = 1200
LOCK_WAIT_S = 300
HEALTHY_WAIT_S = 120


def _bring_up(stack: str) -> subprocess.CompletedProcess:
    """`cutover up --stack <stack>` (idempotent: a no-op when the stack is already as the spec says)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "simulator", "up", "--stack", stack],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=UP_TIMEOUT_S,
        )
        if result.returncode == 0 or LOCK_BUSY not in result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(5)


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the infra tests need a Docker engine ({exc.__class__.__name__}); deselect them with -m 'not docker'.")
    return client


@pytest.fixture(scope="session")
def ci_stack(docker_client) -> StackSpec:
    """The `ci` stack's spec, with the stack up (brought up here unless CUTOVER_TEST_STACK_UP=1)."""
    spec = load_stack(STACK)
    if os.environ.get("CUTOVER_TEST_STACK_UP") != "1":
        result = _bring_up(STACK)
        if result.returncode != 0:
            pytest.fail(f"cutover up --stack {STACK} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return spec


def _wait_healthy(client: docker.DockerClient, name: str, timeout_s: float = HEALTHY_WAIT_S):
    """The container once Docker reports it running and healthy; other sessions may be redeploying it."""
    deadline = time.monotonic() + timeout_s
    state = "missing"
    while time.monotonic() < deadline:
        try:
            container = client.containers.get(name)
            state = container.attrs["State"].get("Health", {}).get("Status", container.status)
            if container.status == "running" and state == "healthy":
                return container
        except docker.errors.NotFound:
            state = "missing"
        time.sleep(1)
    pytest.fail(f"container {name} is not running and healthy after {timeout_s:.0f}s (last state: {state}).")


@pytest.fixture(scope="session")
def wait_healthy(docker_client):
    """``wait_healthy(name)``: the container once it is running and healthy (the test fails otherwise)."""
    return lambda name, timeout_s=HEALTHY_WAIT_S: _wait_healthy(docker_client, name, timeout_s)


@pytest.fixture(scope="session")
def proxy_container(ci_stack, wait_healthy):
    return wait_healthy(proxy_container_name(ci_stack))


@pytest.fixture(scope="session")
def proxy_host(proxy_container):
    return testinfra.get_host(f"docker://{proxy_container.name}")
