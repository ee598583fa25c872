"""Fixtures for the testinfra checks of the running `ci` stack.

The checks never change the stack themselves: they read the `ci` stack that the session fixture
``ci_stack`` (tests/conftest.py) brings up fresh for the whole run, the same one the integration
tests then exercise.
"""

from __future__ import annotations

import time

import docker
import docker.errors
import pytest
import testinfra

from stacks.topology import proxy_container_name

HEALTHY_WAIT_S = 120


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the infra tests need a Docker engine ({exc.__class__.__name__}); deselect them with -m 'not docker'.")
    return client


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
