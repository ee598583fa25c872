"""The fault suite's stream reader against a real local HTTP server sending server-sent events."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

import pytest

from loadtests.sse import read_stream
from stacks.proxy_config import COLOUR_HEADER
from tests.local_http import serving

STREAMS = {
    "/clean/events": b"data: 1\n\ndata: 2\n\nevent: end\ndata: bye\n\n",
    "/cut/events": b"data: 1\n\nevent: tick\ndata: hal",  # closed in the middle of an event
    "/noend/events": b"data: 1\n\n",  # closed cleanly, but without saying it ends
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = STREAMS.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header(COLOUR_HEADER, "blue")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    with serving(Handler) as base_url:
        yield base_url


def test_a_stream_that_ends_cleanly(server):
    result = read_stream(server + "/clean", 10)
    assert result == {"status": 200, "colour": "blue", "events": 3, "ended": True, "partial": False, "error": ""}


def test_a_stream_cut_mid_event_is_partial(server):
    result = read_stream(server + "/cut", 10)
    assert result["partial"] and not result["ended"] and result["events"] == 1


def test_a_stream_closed_without_end_is_not_ended(server):
    result = read_stream(server + "/noend", 10)
    assert not result["ended"] and not result["partial"]


def test_no_stream_is_its_status(server):
    assert read_stream(server + "/missing", 10)["status"] == 404
