"""Hardening in the pure core: the app definition's security section, and the topology that gives
every container of a stack its user, read-only root, capabilities and no-new-privileges.

(What Docker really runs is tests/infra/test_hardening.py's business.)
"""

from __future__ import annotations

import dataclasses

import pytest
from test_app import minimal, write_app

from stacks.app import AppError, load_app
from stacks.spec import COLOURS, load_stack
from stacks.topology import DATABASE_RUN_AS, PROXY_RUN_AS, TMPFS_OPTIONS, migration_container, stack_containers


def _app(tmp_path, **security):
    document = minimal()
    if security:
        document["security"] = security
    return load_app(write_app(tmp_path, document))


def test_an_app_is_locked_down_unless_its_definition_says_otherwise(tmp_path):
    security = _app(tmp_path).security
    assert (security.capabilities, security.read_only_root, security.writable, security.user) == ((), True, ("/tmp",), None)


def test_an_app_may_add_capabilities_a_user_and_writable_places(tmp_path):
    security = _app(tmp_path, capabilities=["NET_BIND_SERVICE", "CHOWN", "CHOWN"], read_only_root=False, writable=["/tmp", "/var/cache/web"], user="1000:1000").security
    assert security.capabilities == ("CHOWN", "NET_BIND_SERVICE")
    assert (security.read_only_root, security.writable, security.user) == (False, ("/tmp", "/var/cache/web"), "1000:1000")


@pytest.mark.parametrize(
    "security, named",
    [
        ({"capabilities": ["ALL"]}, "security.capabilities"),
        ({"capabilities": ["CAP_NET_ADMIN"]}, "security.capabilities"),
        ({"capabilities": ["net_admin"]}, "security.capabilities"),
        ({"writable": ["tmp"]}, "security.writable"),
        ({"writable": ["/"]}, "security.writable"),
        ({"user": "root"}, "security.user"),
        ({"user": "0:0"}, "security.user"),
        ({"user": "web user"}, "security.user"),
        ({"read_only_root": "sometimes"}, "security.read_only_root"),
        ({"privileged": True}, "security.privileged"),
    ],
)
def test_a_bad_security_section_is_one_sentence_naming_the_field(tmp_path, security, named):
    with pytest.raises(AppError) as raised:
        _app(tmp_path, **security)
    message = str(raised.value)
    assert named in message and "\n" not in message and message.endswith("."), message


@pytest.mark.parametrize("stack", ["dev", "ci", "prod"])
def test_every_container_drops_every_capability_and_cannot_gain_privileges(stack):
    for c in stack_containers(load_stack(stack)):
        assert (c.cap_drop, c.cap_add, c.security_opt) == (("ALL",), (), ("no-new-privileges",)), c.name
        assert c.read_only, f"{c.name} has a writable root"
        assert ("/tmp", TMPFS_OPTIONS) in c.tmpfs, c.name


def test_the_proxy_and_the_database_run_as_their_own_users():
    users = {c.role: c.user for c in stack_containers(load_stack("dev")) if c.role != "app"}
    assert users == {"proxy": PROXY_RUN_AS, "database": DATABASE_RUN_AS}
    for c in stack_containers(load_stack("dev")):
        # Each socket directory belongs to its user: Docker would make the tmpfs root's.
        sockets = dict(c.tmpfs)
        if c.role == "proxy":
            assert sockets["/run/haproxy"].endswith(",uid=990,gid=990")
        if c.role == "database":
            assert sockets["/run/postgresql"].endswith(",uid=991,gid=991")


def test_the_apps_security_reaches_its_containers_and_its_migration_runs(tmp_path):
    spec = load_stack("dev")
    app = _app(tmp_path, capabilities=["NET_BIND_SERVICE"], read_only_root=False, writable=["/tmp", "/var/run/web"], user="web")
    spec = dataclasses.replace(spec, app=app)
    runs = [migration_container(spec, "1.0.0", ("migrate",))]
    apps = [c for c in stack_containers(spec) if c.role == "app"]
    assert {c.colour for c in apps} == set(COLOURS)
    for c in [*apps, *runs]:
        assert (c.user, c.read_only, c.cap_add, c.cap_drop) == ("web", False, ("NET_BIND_SERVICE",), ("ALL",)), c.name
        assert c.tmpfs == (("/tmp", TMPFS_OPTIONS), ("/var/run/web", TMPFS_OPTIONS)), c.name


def test_hardening_is_part_of_the_fingerprint(tmp_path):
    """A changed lock must replace the container, as any other changed input does."""
    (proxy,) = [c for c in stack_containers(load_stack("dev")) if c.role == "proxy"]
    assert dataclasses.replace(proxy, read_only=False).fingerprint() != proxy.fingerprint()
    assert dataclasses.replace(proxy, cap_add=("NET_ADMIN",)).fingerprint() != proxy.fingerprint()
