"""The demo's server-sent events (examples/demo/streams.py) as a WSGI iterable, without a server:
which streams the drain hook ends, that each ends with the final event, and the refusals."""

from __future__ import annotations

import importlib
import json
import sys
import threading
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples/demo"
WHO = {"colour": "blue", "version": "1.0.0"}


@pytest.fixture
def streams(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_END_STREAMS_FILE", str(tmp_path / "end-streams"))
    monkeypatch.setenv("APP_EVENT_INTERVAL_S", "0.05")
    monkeypatch.setenv("APP_MAX_STREAMS", "2")
    monkeypatch.syspath_prepend(str(DEMO))
    sys.modules.pop("streams", None)
    module = importlib.import_module("streams")
    yield module
    sys.modules.pop("streams", None)


class Response:
    def __init__(self) -> None:
        self.status = None

    def __call__(self, status, headers):
        self.status = status


def events(body: bytes) -> list[tuple[str, dict]]:
    """(event, data) of each whole message; the body must end at a message boundary."""
    assert body.endswith(b"\n\n"), body[-40:]
    parsed = []
    for raw in body.decode().split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in raw.splitlines())
        if "event" in fields:
            parsed.append((fields["event"], json.loads(fields["data"])))
    return parsed


def open_stream(streams, query="count=100", method="GET"):
    response = Response()
    return response, streams.events({"QUERY_STRING": query, "REQUEST_METHOD": method}, response, WHO, [])


def test_the_hook_ends_streams_opened_before_it_with_the_final_event_and_not_later_ones(streams):
    _, before = open_stream(streams)
    chunks = [next(before), next(before)]  # retry, tick 1: the stream is open
    streams.end_streams()
    chunks += list(before)
    received = events(b"".join(chunks))
    assert received[-1] == ("end", {"reason": "drain", **WHO})
    assert [d["n"] for e, d in received if e == "tick"] == list(range(1, len(received)))

    response, after = open_stream(streams, "count=3")
    received = events(b"".join(after))
    assert response.status == "200 OK"
    assert [e for e, _ in received] == ["tick", "tick", "tick", "end"] and received[-1][1]["reason"] == "done"


def test_a_stopping_worker_ends_its_streams_with_the_final_event(streams):
    _, stream = open_stream(streams)
    chunks = [next(stream), next(stream)]
    threading.Timer(0.1, streams._stopping.set).start()
    received = events(b"".join(chunks + list(stream)))
    assert received[-1] == ("end", {"reason": "shutdown", **WHO})


def test_refusals_are_whole_answers(streams):
    response, bad = open_stream(streams, "count=lots")
    assert json.loads(b"".join(bad))["error"].startswith("count must be") and response.status.startswith("400")
    response, head = open_stream(streams, method="HEAD")
    assert b"".join(head) == b"" and response.status == "200 OK"
    open_now = [open_stream(streams)[1] for _ in range(2)]
    for stream in open_now:
        next(stream)  # each takes one of the 2 slots
    response, third = open_stream(streams)
    assert json.loads(b"".join(third))["error"] == "this worker already serves 2 streams" and response.status.startswith("503")
    for stream in open_now:
        stream.close()  # a client gone gives its slot back
    response, fourth = open_stream(streams, "count=1")
    assert events(b"".join(fourth))[-1][0] == "end" and response.status == "200 OK"
