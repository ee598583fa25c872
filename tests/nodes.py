"""A second Docker engine for the tests: a Docker-in-Docker node (images/node) standing in for a
remote host. --privileged is refused where we build, so the node gets every capability but
SYS_RESOURCE by name, no seccomp or AppArmor profile, all devices, the host's cgroup tree and its
/var/lib/docker on a volume. Its API and the ports its stacks publish are published on 127.0.0.1
only."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import docker.errors

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_IMAGE = "cutover-node:1"
CAPABILITIES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE "
    "NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN "
    "SYS_BOOT SYS_NICE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN "
    "SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ"
).split()


def build_node_image(client: docker.DockerClient, base_image: str) -> None:
    client.images.build(path=str(REPO_ROOT / "images/node"), tag=NODE_IMAGE, buildargs={"BASE_IMAGE": base_image}, rm=True)


def start_node(client: docker.DockerClient, name: str, api_port: int, ports: list[int], deadline_s: float = 60) -> str:
    """Start (afresh) a node named ``name``; return its engine's URL once it answers."""
    remove_node(client, name)
    client.containers.run(
        NODE_IMAGE,
        name=name,
        detach=True,
        cap_add=CAPABILITIES,
        security_opt=["seccomp=unconfined", "apparmor=unconfined"],
        device_cgroup_rules=["a *:* rwm"],
        cgroupns="host",
        volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}, f"{name}-data": {"bind": "/var/lib/docker", "mode": "rw"}},
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
