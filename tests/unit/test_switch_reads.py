"""The reads a switch makes before its flip, made cheaper: several runtime-API commands in one exec,
independent reads at once, a smoke test that stops once every server answered."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from simulator.errors import CutoverError
from simulator.parallel import at_once
from simulator.proxy_api import ProxyAPI
from simulator.smoke import smoke_test
from stacks.app import Request

MAP = "0x1 live blue\n0x2 preview green\n\n"
STAT = (
    "# pxname,svname,scur,status,req_tot,hrsp_5xx,rtime,check_status,check_code\n"
    "live,FRONTEND,0,OPEN,,,,,\npreview,FRONTEND,0,OPEN,,,,,\n"
    "blue,blue-1,0,UP,5,0,1,L7OK,200\nblue,BACKEND,0,UP,5,0,1,,\n"
    "green,green-1,0,UP,3,0,1,L7OK,200\ngreen,green-2,0,DOWN,0,0,0,L7STS,500\ngreen,BACKEND,0,UP,3,0,1,,\n\n"
)


class FakeProxy:
    """A proxy container whose ``proxy-admin`` answers like HAProxy's socket: ``;``-separated
    commands in order, each reply ending with an empty line."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.execs: list[str] = []
        self.name = "fake-proxy"

    def exec_run(self, argv, **_):
        self.execs.append(argv[1])
        out = "".join(self.replies[line.strip()] for line in argv[1].split(";"))
        return SimpleNamespace(exit_code=0, output=out.encode())


def test_colours_and_stats_come_from_one_exec():
    container = FakeProxy({"show map /var/lib/haproxy/state/colours.map": MAP, "show stat": STAT})
    colours, rows = ProxyAPI(container).read()
    assert colours == {"live": "blue", "preview": "green"}
    assert {(r["pxname"], r["svname"]) for r in rows} >= {("green", "green-2"), ("blue", "BACKEND")}
    assert len(container.execs) == 1 and ";" in container.execs[0]


def test_a_batch_that_does_not_split_is_read_one_command_at_a_time():
    # A reply without its empty-line ends (cut short, or another proxy's format) is never guessed at.
    container = FakeProxy({"show map /var/lib/haproxy/state/colours.map": MAP.rstrip("\n") + "\n", "show stat": STAT})
    colours, rows = ProxyAPI(container).read()
    assert colours["live"] == "blue" and rows
    assert len(container.execs) == 3


def test_servers_and_watch_sample_from_rows_already_read():
    api = ProxyAPI(FakeProxy({}))
    _, rows = ProxyAPI(FakeProxy({"show map /var/lib/haproxy/state/colours.map": MAP, "show stat": STAT})).read()
    servers = api.servers_by_backend(rows)
    assert [(s.server, s.up) for s in servers["green"]] == [("green-1", True), ("green-2", False)]
    sample = api.watch_sample("green", "blue", 0.0, rows)
    assert sample.servers == {"green-1": "UP", "green-2": "DOWN"} and sample.requests == 3
    assert api._container.execs == []  # noqa: SLF001 - nothing was read again


def test_at_once_runs_calls_together_and_keeps_their_order():
    began = time.monotonic()
    assert at_once(lambda: (time.sleep(0.3), 1)[1], lambda: (time.sleep(0.3), 2)[1]) == [1, 2]
    assert time.monotonic() - began < 0.55


def test_at_once_raises_the_first_failure_after_every_call_ended():
    finished = []

    def slow():
        time.sleep(0.2)
        finished.append("slow")

    def fails():
        raise CutoverError("no answer")

    with pytest.raises(CutoverError, match="no answer"):
        at_once(fails, slow)
    assert finished == ["slow"]


@pytest.fixture()
def preview():
    """A preview port answering round-robin from two servers of green 2.0.0 (or ``bad`` ones)."""
    state = {"next": 0, "count": 0, "servers": ["green-1", "green-2"], "version": "2.0.0"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - http.server's name
            state["count"] += 1
            server = state["servers"][state["next"] % len(state["servers"])]
            state["next"] += 1
            body = b'{"version": "x"}'
            self.send_response(200)
            for name, value in (("X-Cutover-Colour", "green"), ("X-Cutover-Version", state["version"]), ("X-Cutover-Server", server),
                                ("Content-Length", str(len(body)))):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


CHECKS = (Request(path="/healthz"), Request(path="/version", expect_body='"version"'))


def test_smoke_stops_once_every_server_answered(preview):
    url, state = preview
    assert smoke_test(url, CHECKS, "green", "2.0.0", rounds=4, servers={"green-1", "green-2"}) == ["green-1", "green-2"]
    assert state["count"] == 2  # one round reached both servers; the other three are not sent


def test_smoke_goes_on_until_a_slow_to_appear_server_answered(preview):
    url, state = preview
    state["servers"] = ["green-1", "green-1", "green-1", "green-2"]
    assert smoke_test(url, CHECKS, "green", "2.0.0", rounds=4, servers={"green-1", "green-2"}) == ["green-1", "green-2"]
    assert state["count"] == 4


def test_smoke_without_servers_sends_every_round(preview):
    url, state = preview
    smoke_test(url, CHECKS, "green", "2.0.0", rounds=4)
    assert state["count"] == 8


def test_smoke_still_refuses_a_wrong_version(preview):
    url, state = preview
    state["version"] = "1.0.0"
    with pytest.raises(CutoverError, match="expected green 2.0.0"):
        smoke_test(url, CHECKS, "green", "2.0.0", rounds=4, servers={"green-1", "green-2"})


class CutShortOnce(FakeProxy):
    """The socket's reply cut short once (an empty map), as seen under load right after a reload."""

    def __init__(self, replies: dict[str, str], empty_reads: int) -> None:
        super().__init__(replies)
        self.empty_reads = empty_reads

    def exec_run(self, argv, **kw):
        if argv[1].startswith("show map") and self.empty_reads:
            self.empty_reads -= 1
            self.execs.append(argv[1])
            return SimpleNamespace(exit_code=0, output=b"")
        return super().exec_run(argv, **kw)


def test_an_empty_colour_map_reply_is_read_again():
    proxy = ProxyAPI(CutShortOnce({"show map /var/lib/haproxy/state/colours.map": MAP, "show stat": STAT}, empty_reads=2))
    assert proxy.colours() == {"live": "blue", "preview": "green"}


def test_a_map_that_stays_empty_is_refused_in_one_sentence():
    proxy = ProxyAPI(CutShortOnce({"show map /var/lib/haproxy/state/colours.map": MAP, "show stat": STAT}, empty_reads=99))
    with pytest.raises(CutoverError, match="no valid live colour"):
        proxy.colours()
