"""A second Docker engine for the tests: a Docker-in-Docker node (images/node) standing in for a
remote host, started with the flags of simulator/nodes.py (--privileged is refused where we
build). Its API and the ports its stacks publish are published on 127.0.0.1 only."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import docker.errors

from simulator.nodes import NODE_IMAGE, node_build, run_options

REPO_ROOT = Path(__file__).resolve().parent.parent


def build_node_image(client: docker.DockerClient, base_image: str) -> None:
    build = node_build(base_image)
    client.images.build(path=str(build.context_path()), tag=build.tag, buildargs=dict(build.args), rm=True)


def start_node(client: docker.DockerClient, name: str, api_port: int, ports: list[int], deadline_s: float = 60) -> str:
    """Start (afresh) a node named ``name``; return its engine's URL once it answers."""
    remove_node(client, name)
    client.containers.run(
        NODE_IMAGE,
        name=name,
        detach=True,
        **run_options(f"{name}-data"),
        ports={"2375/tcp": ("127.0.0.1", api_port), **{f"{p}/tcp": ("127.0.0.1", p) for p in ports}},
        labels={"cutover.role": "test-node"},
    )
    url = f"tcp://127.0.0.1:{api_port}"
    end = time.monotonic() + deadline_s
    while True:
        try:
            docker.DockerClient(base_url=url, timeout=5).ping()
            return url
        except (docker.errors.DockerException, OSError):
            if time.monotonic() > end:
                logs = client.containers.get(name).logs(tail=5).decode(errors="replace")
                raise RuntimeError(f"node {name} did not answer at {url} within {deadline_s}s: {logs}")
            time.sleep(0.5)


def remove_node(client: docker.DockerClient, name: str) -> None:
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    try:
        client.volumes.get(f"{name}-data").remove(force=True)
    except docker.errors.NotFound:
        pass
