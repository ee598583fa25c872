"""What runs inside the `ci` stack's containers, checked with testinfra over `docker exec`.

Read-only: these tests look at the stack the ``ci_stack`` fixture made sure is up, and never change
it. Expected names and ports come from the stack spec, not from numbers written here.
"""

from __future__ import annotations

import re

import pytest
import testinfra

from stacks.proxy_config import (
    ADMIN_SOCKET,
    HAPROXY_CONFIG_PATH,
    LIVE_CONTAINER_PORT,
    PREVIEW_CONTAINER_PORT,
    backend_path,
    render_backend,
    render_base_config,
)
from stacks.spec import COLOURS, load_stack
from stacks.topology import app_container_name, app_container_names, proxy_container_name

pytestmark = pytest.mark.docker

# Parametrising needs the names at collection time; the spec is a pure file read, so that is cheap.
_SPEC = load_stack("ci")
APP_CONTAINERS = [(colour, app_container_name(_SPEC, colour, i)) for colour in COLOURS for i in range(1, _SPEC.pool_size + 1)]
FRONTEND_PORTS = {LIVE_CONTAINER_PORT, PREVIEW_CONTAINER_PORT}


def listening_tcp(host, process: str | None = None) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket, optionally only those owned by ``process``."""
    out = host.check_output("ss -H --numeric --listening --tcp --processes")
    found = set()
    for line in out.splitlines():
        columns = line.split()
        if process is not None and f'(("{process}",' not in line and f'),("{process}",' not in line:
            continue
        address, port = columns[3].rsplit(":", 1)
        found.add((address.strip("[]"), int(port)))
    return found


@pytest.fixture(scope="module", params=APP_CONTAINERS, ids=[name for _, name in APP_CONTAINERS])
def app(request, ci_stack, wait_healthy):
    colour, name = request.param
    container = wait_healthy(name)
    return colour, container, testinfra.get_host(f"docker://{name}")


# -- the proxy -----------------------------------------------------------------------------------


def test_haproxy_accepts_its_config(proxy_host):
    # The base config, then each colour's backend file: the files HAProxy loads, in its order.
    files = " ".join(f"-f {path}" for path in (HAPROXY_CONFIG_PATH, *(backend_path(c) for c in COLOURS)))
    result = proxy_host.run(f"haproxy -c {files}")
    assert result.rc == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_proxy_runs_the_config_rendered_from_the_spec(ci_stack, proxy_host):
    """No drift: what HAProxy reads is exactly what the spec renders: the constant base config the
    container uploads, and each colour's backend as proxy-backend wrote it (one trailing newline)."""
    assert proxy_host.file(HAPROXY_CONFIG_PATH).content_string == render_base_config()
    servers = app_container_names(ci_stack)
    for colour in COLOURS:
        expected = render_backend(ci_stack, colour, servers[colour], ci_stack.app.port).rstrip("\n") + "\n"
        assert proxy_host.file(backend_path(colour)).content_string == expected, colour


def test_haproxy_is_running(proxy_host):
    master = proxy_host.process.get(pid=1)
    assert master.comm == "haproxy"
    assert HAPROXY_CONFIG_PATH in master.args
    # Master-worker mode: the master (PID 1) plus at least one worker that serves traffic.
    workers = [p for p in proxy_host.process.filter(comm="haproxy") if p.ppid == 1]
    assert workers, "HAProxy has no worker process"


@pytest.mark.parametrize("port", sorted(FRONTEND_PORTS))
def test_proxy_listens_on_its_frontend_ports(proxy_host, port):
    assert proxy_host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_admin_socket_is_a_unix_socket_that_answers(proxy_host):
    admin = proxy_host.file(ADMIN_SOCKET)
    assert admin.exists and admin.is_socket
    assert admin.mode == 0o600
    # (ss shows HAProxy's unix listener under the temporary name it bound before renaming it to
    # ADMIN_SOCKET, so host.socket("unix://...").is_listening cannot be used; asking it is better.)
    reply = proxy_host.check_output("proxy-admin 'show info'")
    assert re.search(r"^Name: HAProxy$", reply, re.MULTILINE), reply


def test_haproxy_listens_on_no_tcp_port_but_its_frontends(proxy_host):
    haproxy_sockets = listening_tcp(proxy_host, "haproxy")
    assert haproxy_sockets == {("0.0.0.0", port) for port in FRONTEND_PORTS}


def test_published_ports_are_bound_to_the_bind_address_only(ci_stack, proxy_container):
    """ci binds to loopback: the live and preview ports must not be reachable from other machines."""
    assert ci_stack.bind_address == "127.0.0.1"
    expected = {
        f"{LIVE_CONTAINER_PORT}/tcp": [{"HostIp": ci_stack.bind_address, "HostPort": str(ci_stack.live_port)}],
        f"{PREVIEW_CONTAINER_PORT}/tcp": [{"HostIp": ci_stack.preview_bind_address, "HostPort": str(ci_stack.preview_port)}],
    }
    proxy_container.reload()
    # What was asked for, and what the engine actually bound.
    assert proxy_container.attrs["HostConfig"]["PortBindings"] == expected
    actual = {port: bindings for port, bindings in proxy_container.attrs["NetworkSettings"]["Ports"].items() if bindings}
    assert actual == expected


def test_the_host_listens_on_loopback_only(ci_stack):
    """The engine's port forwarder on this machine: 127.0.0.1 only, never every interface."""
    local = testinfra.get_host("local://")
    if not local.exists("ss"):
        pytest.skip("ss (iproute2) is not installed on this machine")
    sockets = listening_tcp(local)
    for port in (ci_stack.live_port, ci_stack.preview_port):
        bound = {address for address, p in sockets if p == port}
        # With the userland proxy disabled Docker forwards through iptables and nothing listens.
        assert bound <= {ci_stack.bind_address}, f"port {port} is bound on {sorted(bound)}"


# -- the app containers --------------------------------------------------------------------------


def test_app_container_listens_on_the_app_port(app):
    _, _, host = app
    assert host.socket(f"tcp://0.0.0.0:{_SPEC.app.port}").is_listening


def test_gunicorn_serves_the_app(app):
    _, _, host = app
    master = host.process.get(pid=1)
    assert master.comm == "gunicorn"
    assert "service:application" in master.args
    workers = [p for p in host.process.filter(comm="gunicorn") if p.ppid == 1]
    assert workers, "gunicorn has no worker process"
    owners = {p for p in listening_tcp(host, "gunicorn")}
    assert ("0.0.0.0", _SPEC.app.port) in owners


def test_app_colour_matches_the_container(app):
    colour, container, host = app
    assert container.labels["cutover.colour"] == colour
    # The environment of the serving process itself, not just the container's configuration.
    environ = dict(
        item.split("=", 1) for item in host.file("/proc/1/environ").content.decode().split("\0") if "=" in item
    )
    assert environ["CUTOVER_COLOUR"] == colour
    assert environ["CUTOVER_INSTANCE"] == container.name
    assert host.environment()["CUTOVER_COLOUR"] == colour


def test_app_containers_publish_no_ports(app):
    _, container, _ = app
    assert not container.attrs["HostConfig"].get("PortBindings")
    assert not any(container.attrs["NetworkSettings"]["Ports"].values())


def test_the_stack_names_match_the_spec(ci_stack, docker_client):
    """Every container the spec names is there, labelled with the stack; the proxy too."""
    names = [proxy_container_name(ci_stack)] + [name for _, name in APP_CONTAINERS]
    for name in names:
        container = docker_client.containers.get(name)
        assert container.labels["cutover.stack"] == ci_stack.stack
