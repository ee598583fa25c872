"""Hardened containers (issue 9, item 7), checked inside the running `ci` stack with testinfra.

For every container the topology says the stack has: what Docker was asked for (inspect) is what
the topology says, and what runs inside holds to it — no process is root, the root file system is
mounted read-only, the process has no capability and cannot gain one, the database password is on
no command line, and the proxy's admin socket can be reached only by HAProxy's own user inside the
proxy container.
"""

from __future__ import annotations

import time

import pytest
import testinfra

from stacks.proxy_config import ADMIN_SOCKET, COLOUR_MAP_DIR
from stacks.spec import load_stack
from stacks.topology import DATABASE_DATA_DIR, PROXY_RUN_AS, PROXY_UID, stack_containers

pytestmark = pytest.mark.docker

_SPEC = load_stack("ci")
CONTAINERS = {c.name: c for c in stack_containers(_SPEC)}
NO_CAPABILITIES = "0000000000000000"
# Objects these tests make themselves; not a stack's, so no cutover command ever touches them.
TEST_LABELS = {"cutover.test": "hardening"}

# One program that logs "its name, its arguments" and runs the real program of that name: put first
# on PATH under every program's name, it records every command line a script executes.
LOG_ARGV = """#!/bin/sh
printf '%s\\n' "${0##*/} $*" >> /tmp/argv.log
name=${0##*/}
IFS=:
for dir in $REAL_PATH; do
  [ -x "$dir/$name" ] && exec "$dir/$name" "$@"
done
exit 127
"""
WRAP_EVERY_PROGRAM = (
    'mkdir /tmp/wrap && printf %s "$LOG_ARGV" > /tmp/wrap/.log-argv && chmod +x /tmp/wrap/.log-argv && '
    'for dir in $(echo "$PATH" | tr : " "); do for bin in "$dir"/*; do '
    '[ -x "$bin" ] && [ ! -e "/tmp/wrap/${bin##*/}" ] && ln -s .log-argv "/tmp/wrap/${bin##*/}"; done; done; '
    'export REAL_PATH="$PATH" PATH="/tmp/wrap:$PATH"; unset LOG_ARGV; '
)


@pytest.fixture(scope="module", params=sorted(CONTAINERS))
def running(request, ci_stack, wait_healthy):
    """(topology spec, docker container, testinfra host) of one container of the ci stack."""
    container = wait_healthy(request.param)
    return CONTAINERS[request.param], container, testinfra.get_host(f"docker://{container.name}")


def _mounts(host) -> dict[str, tuple[str, set[str]]]:
    """Mount point -> (file system type, options) as the container's kernel sees them."""
    table = {}
    for line in host.file("/proc/self/mounts").content_string.splitlines():
        _, point, fstype, options, *_ = line.split()
        table[point] = (fstype, set(options.split(",")))
    return table


def _status(host, pid: int = 1) -> dict[str, str]:
    lines = host.file(f"/proc/{pid}/status").content_string.splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


# -- what Docker was asked for --------------------------------------------------------------------


def test_docker_runs_each_container_as_the_topology_says(running, docker_client):
    spec, container, _ = running
    config, host_config = container.attrs["Config"], container.attrs["HostConfig"]
    image_user = docker_client.images.get(container.attrs["Image"]).attrs["Config"].get("User") or ""
    # Docker fills in the image's USER when the container names none.
    assert (config.get("User") or "") == (spec.user or image_user)
    assert host_config["ReadonlyRootfs"] is spec.read_only
    assert host_config["CapDrop"] == list(spec.cap_drop)
    assert (host_config.get("CapAdd") or []) == list(spec.cap_add)
    assert host_config["SecurityOpt"] == list(spec.security_opt)
    assert (host_config.get("Tmpfs") or {}) == dict(spec.tmpfs)
    # The policy itself, whatever the topology says: ci's containers are all locked down.
    assert (config.get("User") or image_user) not in ("", "root", "0", "0:0"), "runs as root"
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["CapDrop"] == ["ALL"] and not host_config.get("CapAdd")
    assert "no-new-privileges" in host_config["SecurityOpt"]
    assert host_config["Privileged"] is False


# -- what runs inside -----------------------------------------------------------------------------


def test_no_process_runs_as_root(running):
    _, _, host = running
    # Real and effective ids of every process, ps itself included (it runs as the exec user).
    rows = [line.split() for line in host.check_output("ps -eo ruid=,euid=,rgid=,egid=,comm=").splitlines()]
    assert rows, "ps listed nothing"
    # runc:[2:INIT] is the runtime starting a `docker exec` (a health check) and becomes that
    # exec's user a moment later: it is not a process of the container.
    root = [row for row in rows if "0" in row[:4] and not row[4].startswith("runc:")]
    assert not root, f"processes with a root id: {root}"


def test_the_main_process_has_no_capability_and_cannot_gain_one(running):
    spec, _, host = running
    assert not spec.cap_add  # ci's containers need none; an app's own would show in CapEff below
    status = _status(host)
    assert status["NoNewPrivs"] == "1"
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status[field] == NO_CAPABILITIES, f"{field} {status[field]}"


def test_the_root_file_system_is_mounted_read_only(running):
    _, _, host = running
    fstype, options = _mounts(host)["/"]
    assert "ro" in options, f"/ is {fstype} {sorted(options)}"
    # The kernel, not the user's permissions, refuses the write (a non-root user is refused anyway).
    result = host.run("touch /cutover-rw-probe")
    assert result.rc != 0 and "Read-only file system" in result.stderr, result.stderr


def test_each_tmpfs_is_a_writable_tmpfs(running):
    spec, _, host = running
    mounts = _mounts(host)
    for path, _ in spec.tmpfs:
        assert mounts[path][0] == "tmpfs", path
        assert {"nosuid", "nodev", "noexec"} <= mounts[path][1], path
        probe = f"{path}/cutover-write-probe"
        assert host.run(f"touch {probe} && rm {probe}").rc == 0, f"{path} is not writable by the container's user"


# -- the database password ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database_password(docker_client, ci_stack, wait_healthy):
    db = wait_healthy(next(c.name for c in CONTAINERS.values() if c.role == "database"))
    env = dict(entry.split("=", 1) for entry in db.attrs["Config"]["Env"])
    return env["POSTGRES_PASSWORD"]


def test_no_command_line_holds_the_database_password(running, database_password):
    _, _, host = running
    # This shell's own command line does not hold it; every other process's is checked.
    command_lines = host.check_output("for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done")
    assert command_lines.strip()
    assert database_password not in command_lines


def test_the_database_server_does_not_keep_the_password_in_its_environment(ci_stack, database_password, wait_healthy):
    db = next(c for c in CONTAINERS.values() if c.role == "database")
    host = testinfra.get_host(f"docker://{wait_healthy(db.name).name}")
    environ = host.file("/proc/1/environ").content
    # (Booleans, so a failure does not print the password.)
    assert (b"POSTGRES_PASSWORD=" in environ) is False, "PID 1's environment holds POSTGRES_PASSWORD"
    assert (database_password.encode() in environ) is False, "PID 1's environment holds the password"


def test_initialising_the_database_puts_the_password_on_no_command_line(ci_stack, docker_client, wait_healthy):
    """First start (initdb, the role, the database) of the image ci runs, with every program it
    executes wrapped to log its argv: the password must be in none of them.

    Steady-state /proc checks cannot see this: the init commands live for milliseconds.
    """
    db = next(c for c in CONTAINERS.values() if c.role == "database")
    image = wait_healthy(db.name).attrs["Image"]
    password = "argv-probe-5f3c1d9e"
    container = docker_client.containers.run(
        image,
        entrypoint=["sh", "-c", WRAP_EVERY_PROGRAM + "exec /usr/local/bin/postgres-entrypoint"],
        environment={"POSTGRES_PASSWORD": password, "POSTGRES_USER": "cutover", "POSTGRES_DB": "cutover", "LOG_ARGV": LOG_ARGV},
        labels=TEST_LABELS,
        detach=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "initialised" not in container.logs().decode(errors="replace"):
            container.reload()
            assert container.status == "running", container.logs().decode(errors="replace")
            assert time.monotonic() < deadline, "the database did not initialise within 120 s"
            time.sleep(0.5)
        logged = container.exec_run(["cat", "/tmp/argv.log"]).output.decode(errors="replace")
    finally:
        container.remove(force=True)
    executed = {line.split(" ", 1)[0] for line in logged.splitlines()}
    assert {"initdb", "pg_ctl", "psql"} <= executed, f"the wrappers saw only {sorted(executed)}"
    leaking = [line for line in logged.splitlines() if password in line]
    assert not leaking, f"the password is on these command lines: {leaking}"


# -- the admin socket -----------------------------------------------------------------------------


def test_the_admin_socket_belongs_to_haproxy_alone(proxy_host):
    admin = proxy_host.file(ADMIN_SOCKET)
    assert admin.is_socket
    assert (admin.user, admin.group, admin.mode) == (PROXY_RUN_AS, PROXY_RUN_AS, 0o600)
    assert admin.uid == PROXY_UID


def test_the_admin_socket_lives_on_a_tmpfs_of_the_proxy_only(proxy_host, proxy_container):
    """Not on a volume or bind mount, where another container or the host could reach it."""
    directory = ADMIN_SOCKET.rsplit("/", 1)[0]
    assert _mounts(proxy_host)[directory][0] == "tmpfs"
    shared = [m["Destination"] for m in proxy_container.attrs["Mounts"]]
    assert not [d for d in shared if ADMIN_SOCKET.startswith(d.rstrip("/") + "/")], shared


def test_root_in_the_proxy_container_cannot_use_the_admin_socket(proxy_container):
    """Even `docker exec --user root`: without capabilities root cannot pass the socket's 0600."""
    as_root = testinfra.get_host(f"docker://root@{proxy_container.name}")
    result = as_root.run("proxy-admin 'show info'")
    assert "Name: HAProxy" not in result.stdout
    assert "Permission denied" in result.stdout + result.stderr, result.stdout + result.stderr


def test_no_other_container_has_the_admin_socket(running):
    spec, _, host = running
    if spec.role != "proxy":
        assert not host.file(ADMIN_SOCKET).exists


# -- volumes left by the older, root-run images -------------------------------------------------

# role -> (where its volume is mounted, what the older image left in it, owned by whom).
OLD_VOLUMES = {
    "proxy": (COLOUR_MAP_DIR, "echo 'live green' > /old/colours.map", "0:0"),
    "database": (DATABASE_DATA_DIR, "echo 15 > /old/PG_VERSION", "100:102"),
}


@pytest.mark.parametrize("role", sorted(OLD_VOLUMES))
def test_a_volume_made_by_the_older_image_is_refused_in_one_sentence(role, ci_stack, docker_client, wait_healthy):
    """Not a crash loop or a half-written map: one sentence with the command that fixes it."""
    mount, leftover, owner = OLD_VOLUMES[role]
    image = wait_healthy(next(c.name for c in CONTAINERS.values() if c.role == role)).attrs["Image"]
    volume = docker_client.volumes.create(f"cutover-harden-test-old-{role}", labels=TEST_LABELS)
    try:
        docker_client.containers.run(
            image, entrypoint=["sh", "-c", f"{leftover} && chown -R {owner} /old"],
            user="root", volumes={volume.name: {"bind": "/old", "mode": "rw"}}, labels=TEST_LABELS, remove=True,
        )
        container = docker_client.containers.run(
            image, volumes={volume.name: {"bind": mount, "mode": "rw"}}, environment={"POSTGRES_PASSWORD": "unused"},
            labels=TEST_LABELS, detach=True,
        )
        try:
            status = container.wait(timeout=60)["StatusCode"]
            stderr = container.logs(stdout=False, stderr=True).decode()
        finally:
            container.remove(force=True)
        assert status == 1
        assert len(stderr.strip().splitlines()) == 1 and "chown it once" in stderr, stderr
    finally:
        volume.remove(force=True)
