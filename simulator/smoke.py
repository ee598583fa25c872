"""Smoke tests: the app's own declared requests, sent through the proxy.

Which colour, version and server answered comes from the proxy's response headers, never from
the app, so any HTTP service can be smoke-tested.
"""

from __future__ import annotations

from typing import Any

import requests

from simulator.errors import CutoverError
from stacks.app import Request, WriteProbe
from stacks.proxy_config import COLOUR_HEADER, SERVER_HEADER, VERSION_HEADER

TIMEOUT_S = 10


def send(session: requests.Session, base_url: str, request: Request, path: str | None = None) -> requests.Response:
    url = base_url + (path or request.path)
    try:
        return session.request(request.method, url, json=request.json_body, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise CutoverError(f"smoke test: {request.method} {url} failed: {exc.__class__.__name__}.") from None


def check_answer(response: requests.Response, request: Request, url: str) -> None:
    """The status (and body substring) the app definition expects, or one sentence why not."""
    if response.status_code != request.expect_status:
        raise CutoverError(f"smoke test: {request.method} {url} answered {response.status_code}, expected {request.expect_status}.")
    if request.expect_body is not None and request.expect_body not in response.text:
        raise CutoverError(f"smoke test: {request.method} {url} answered without {request.expect_body!r} in its body.")


def smoke_test(base_url: str, checks: tuple[Request, ...], colour: str, version: str, rounds: int, servers: set[str] | None = None) -> list[str]:
    """Send every declared check ``rounds`` times (enough to visit every server of the colour).

    Each answer must be what the check expects and, by the proxy's headers, come from ``colour``
    running ``version``. With ``servers`` (the colour's servers as HAProxy names them), it stops
    after the first whole round by which every one of them has answered: the rounds are there
    to reach every server, and once they have, more rounds only cost time. Returns the servers
    that answered.
    """
    seen: set[str] = set()
    with requests.Session() as session:
        for _ in range(rounds):
            if servers and servers <= seen:
                break
            for check in checks:
                response = send(session, base_url, check)
                check_answer(response, check, base_url + check.path)
                served = (response.headers.get(COLOUR_HEADER), response.headers.get(VERSION_HEADER))
                if served != (colour, version):
                    raise CutoverError(
                        f"smoke test: {check.method} {base_url}{check.path} was served by {served[0]} {served[1]}, expected {colour} {version}."
                    )
                seen.add(response.headers.get(SERVER_HEADER, "?"))
    return sorted(seen)


def probe_write(base_url: str, probe: WriteProbe, label: str) -> Any:
    """Write once through ``base_url`` and read it back: the version there works on this schema."""
    with requests.Session() as session:
        created = send(session, base_url, probe.create)
        check_answer(created, probe.create, base_url + probe.create.path)
        item_id = created_id(created, probe)
        if item_id is None:
            raise CutoverError(f"smoke test ({label}): {probe.create.describe()} answered without a {probe.id_field!r} field in its JSON body.")
        read = send(session, base_url, probe.read, probe.read_path(item_id))
        if read.status_code != probe.read.expect_status:
            raise CutoverError(
                f"smoke test ({label}): what {probe.create.describe()} wrote through {base_url} (id {item_id}) could not be read back "
                f"({probe.read.method} {probe.read_path(item_id)} answered {read.status_code})."
            )
        return item_id


def created_id(response, probe: WriteProbe) -> Any:
    """The id a write probe's create request got back, or None."""
    try:
        return response.json()[probe.id_field]
    except (ValueError, KeyError, TypeError):
        return None
