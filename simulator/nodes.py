"""How a Docker-in-Docker node (images/node) is started here: the one place its flags live.

`--privileged` is refused by the sandbox we build on ("unable to apply caps"), but an engine runs
inside a container given every capability except SYS_RESOURCE by name, no seccomp or AppArmor
profile, every device, the host's cgroup tree read-write in the host's cgroup namespace, and its
/var/lib/docker on a volume (overlay2 cannot sit on the container's own overlay root). Used by the
swarm nodes (simulator/cluster.py) and by the remote-engine tests (tests/nodes.py).
"""

from __future__ import annotations

from stacks.image_builds import ImageBuild

NODE_IMAGE = "cutover-node:1"
# The engine's API inside the node: plain TCP, so it is only ever published on 127.0.0.1.
ENGINE_PORT = 2375

# Every capability of Linux 5.x but SYS_RESOURCE (the one the sandbox will not grant).
CAPABILITIES: tuple[str, ...] = tuple(
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE NET_BIND_SERVICE "
    "NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN "
    "SYS_BOOT SYS_NICE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN "
    "SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ".split()
)
SECURITY_OPTS: tuple[str, ...] = ("seccomp=unconfined", "apparmor=unconfined")
# The inner engine creates device nodes (overlay whiteouts, /dev/null in its containers).
DEVICE_CGROUP_RULES: tuple[str, ...] = ("a *:* rwm",)
# The inner engine puts its containers into cgroups of its own: it needs the tree, writable.
CGROUP_MOUNT = {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}
CGROUPNS = "host"
DATA_DIR = "/var/lib/docker"


def node_build(base_image: str) -> ImageBuild:
    """The node image: the base image plus Debian's docker.io (images/node)."""
    return ImageBuild(NODE_IMAGE, "images/node", "Dockerfile", (("BASE_IMAGE", base_image),))


def run_options(data_volume: str) -> dict:
    """The keyword arguments of ``containers.run`` that make a node's engine work without
    --privileged; the caller adds name, ports, network, labels and the engine's own flags."""
    return {
        "cap_add": list(CAPABILITIES),
        "security_opt": list(SECURITY_OPTS),
        "device_cgroup_rules": list(DEVICE_CGROUP_RULES),
        "cgroupns": CGROUPNS,
        "volumes": {**CGROUP_MOUNT, data_volume: {"bind": DATA_DIR, "mode": "rw"}},
    }
