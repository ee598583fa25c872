"""The Locust users of a rehearsal: the app's own locustfile, or users built from its definition.

A team writes a ``locustfile.py`` (Locust's own convention) and names it in the app definition;
every non-abstract ``User`` class in it runs, with its own tasks, weights and wait times. Tasks
tagged ``write`` (``@locust.tag("write")``) are left out of a read-only mix. With no locustfile,
each user sends the app's smoke checks and, for a read-write mix, its write probe, reading back
what it wrote. Either way the runner records every request and reads who served it from the
proxy's headers.
"""

from __future__ import annotations

import importlib.util
import inspect
import random
import sys
from pathlib import Path

from locust import FastHttpUser, User, constant, tag, task

from simulator.errors import CutoverError
from stacks.app import AppSpec, Request

WRITE_TAG = "write"


class KeepAliveUser(FastHttpUser):
    """One keep-alive connection, requests back to back, never a retry: a failure counts as dropped."""

    abstract = True
    wait_time = constant(0)
    max_retries = 0
    network_timeout = 30.0
    connection_timeout = 5.0


def _send(client, request: Request, path: str | None = None):
    kwargs = {"name": request.describe()} if path is None else {"name": f"{request.method} {request.path}"}
    if request.json_body is not None:
        kwargs["json"] = request.json_body
    return client.request(request.method, path or request.path, **kwargs)


def smoke_path_user(app: AppSpec) -> type[User]:
    """A user that sends the app's smoke checks, and its write probe (tagged ``write``) if it has one."""
    checks = app.smoke
    probe = app.write_probe

    class SmokePathUser(KeepAliveUser):
        def on_start(self) -> None:
            self.written: list = []

        @task(max(1, 2 * len(checks)))
        def smoke(self) -> None:
            _send(self.client, random.choice(checks))

        if probe is not None:

            @tag(WRITE_TAG)
            @task(max(1, len(checks)))
            def write(self) -> None:
                response = _send(self.client, probe.create)
                if response.status_code == probe.create.expect_status:
                    try:
                        self.written.append(response.json()[probe.id_field])
                    except (ValueError, KeyError, TypeError):
                        pass

            @tag(WRITE_TAG)
            @task(max(1, len(checks)) // 2 or 1)
            def read_back(self) -> None:
                if self.written:
                    _send(self.client, probe.read, probe.read_path(random.choice(self.written)))

    return SmokePathUser


def new_connection_user(app: AppSpec, count: int) -> type[User]:
    """``count`` users that open a new connection for every request (``Connection: close``) and
    send the app's first smoke check: each request is balanced anew by whatever sits in front (a
    cluster's edge), so a node leaving shows on them first, where keep-alive users would stay on
    connections they already have."""
    check = app.smoke[0]

    class NewConnectionUser(KeepAliveUser):
        fixed_count = count

        @task
        def check(self) -> None:
            self.client.request(check.method, check.path, name=f"{check.describe()} (new connection)", headers={"Connection": "close"})

    return NewConnectionUser


def locustfile_users(path: Path) -> list[type[User]]:
    """Every non-abstract User class a locustfile defines (as Locust itself would pick them)."""
    spec = importlib.util.spec_from_file_location(f"cutover_locustfile_{abs(hash(str(path)))}", path)
    if spec is None or spec.loader is None:
        raise CutoverError(f"locustfile {path} cannot be imported.")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: say where it broke, in one sentence
        raise CutoverError(f"locustfile {path} failed to import: {exc.__class__.__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.parent))
    users = [
        value
        for value in vars(module).values()
        if inspect.isclass(value) and issubclass(value, User) and not value.__dict__.get("abstract", False) and value.__module__ == module.__name__
    ]
    if not users:
        raise CutoverError(f"locustfile {path} defines no User class to run (a non-abstract subclass of locust.User).")
    return users


def rehearsal_users(app: AppSpec) -> list[type[User]]:
    if app.locustfile:
        return locustfile_users(app.resolve(app.locustfile))
    return [smoke_path_user(app)]


def excluded_tags(mix: str) -> list[str] | None:
    """What a mix leaves out: a read-only mix sends no writes."""
    return [WRITE_TAG] if mix == "read" else None
