"""The lost-write check (loadtests/read_back.py) against a real HTTP server on 127.0.0.1: what the
app has reads back, what it lacks is missing, a server closing keep-alive connections loses nothing,
and no server at all means every write is unreadable."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler

import pytest

from loadtests.read_back import lost_writes, missing_writes, unreadable
from stacks.app import AppSpec
from stacks.spec import load_stack
from tests.local_http import serving

STORED = set(range(0, 300, 3))
ACKNOWLEDGED = set(range(300))


def app() -> AppSpec:
    # The demo app's definition: its write probe reads GET /items/{id} and expects 200.
    return load_stack("ci").app


class _Items(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the app behind the proxy
    served = 0

    def do_GET(self):  # noqa: N802 (the http.server name)
        type(self).served += 1
        item = self.path.rsplit("/", 1)[-1]
        found = self.path.startswith("/items/") and item.isdigit() and int(item) in STORED
        body = b"{}" if found else b"not found"
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        if type(self).served % 7 == 0:
            # Now and then the server ends a keep-alive connection without saying so (as an idle
            # timeout does): the client learns it only when its next request on it fails.
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _StaleOnce(_Items):
    """The stored items, but each of STALE answers 503 the first time it is read (as an app task
    whose pooled database connection went stale when the database restarted)."""

    answered: set = set()

    def do_GET(self):  # noqa: N802
        item = self.path.rsplit("/", 1)[-1]
        if item.isdigit() and int(item) in STALE and int(item) not in self.answered:
            type(self).answered.add(int(item))
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


STALE = set(range(0, 300, 9))  # stored ones (multiples of 3)


@pytest.fixture
def server():
    with serving(_Items) as base_url:
        yield base_url


def test_what_the_app_lacks_is_missing_and_nothing_else(server):
    assert missing_writes(app(), server, ACKNOWLEDGED) == ACKNOWLEDGED - STORED


def test_connections_the_server_closes_lose_no_read(server):
    # Every 7th answer closes its connection unannounced; the read that finds it closed is tried
    # once more on a new one.
    assert missing_writes(app(), server, STORED, connections=3) == set()


def test_the_second_look_names_what_each_unreadable_write_got(server):
    assert unreadable(app(), server, ACKNOWLEDGED) == {item: "HTTP 404" for item in ACKNOWLEDGED - STORED}


def test_with_no_server_every_write_is_unreadable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    assert missing_writes(app(), f"http://127.0.0.1:{port}", {1, 2, 3}) == {1, 2, 3}
    assert unreadable(app(), f"http://127.0.0.1:{port}", {1, 2}) == {1: "no answer", 2: "no answer"}


def test_a_url_it_cannot_read_from_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="plain http:// base URL"):
        missing_writes(app(), "https://127.0.0.1:1", {1})


def test_a_write_unreadable_once_is_not_lost_but_one_the_app_lacks_is():
    _StaleOnce.answered = set()
    with serving(_StaleOnce) as base_url:
        first_missed, lost = lost_writes(app(), base_url, ACKNOWLEDGED)
    assert first_missed == (ACKNOWLEDGED - STORED) | STALE
    assert lost == {item: "HTTP 404" for item in ACKNOWLEDGED - STORED}
