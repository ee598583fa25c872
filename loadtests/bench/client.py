"""The bench's load generator: a light keep-alive HTTP client in plain threads, one connection each.

Every way is measured with this same client (Locust's gevent patching would also change how the
simulator's Docker calls run in the same process, and it costs more CPU per request). Each thread
sends GET ``path`` back to back on one keep-alive connection and records every request as a tuple;
after a failure it reconnects after FAILURE_PAUSE_S, so a way that refuses connections for a second
counts about 1/FAILURE_PAUSE_S failures per connection per second, not as many as a CPU can spin.
Bounded by design: every thread stops at ``max_requests`` (over all threads) or ``max_seconds``.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from typing import NamedTuple

VERSION_HEADER = "X-App-Version"  # the demo stamps its version on every response (examples/demo/service.py)
FAILURE_PAUSE_S = 0.01
TIMEOUT_S = 10.0


class Sample(NamedTuple):
    started: float  # wall clock
    finished: float
    status: int  # 0: no response
    version: str
    error: str  # "" or the kind: "connection refused", "connection reset", "timeout", ...
    connection: int = 0  # which of the load's connections (threads) sent it: the report's "users moved"

    @property
    def failed(self) -> bool:
        return bool(self.error) or not 200 <= self.status < 300

    @property
    def kind(self) -> str:
        """What went wrong, for the failures-by-kind column."""
        return self.error or f"HTTP {self.status}"


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed without response"
    if isinstance(exc, BrokenPipeError):
        return "broken pipe"
    return exc.__class__.__name__


class KeepAliveLoad:
    def __init__(self, port: int, connections: int, path: str = "/version", max_seconds: float = 600.0,
                 max_requests: int = 5_000_000) -> None:
        self.port = port
        self.path = path
        self.connections = connections
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.samples: list[Sample] = []  # list.append is atomic under the GIL
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._deadline = time.monotonic() + self.max_seconds
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True, name=f"bench-load-{i}") for i in range(self.connections)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=TIMEOUT_S + 5)

    @property
    def running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline and len(self.samples) < self.max_requests

    def _run(self, connection: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while self.running:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
            started = time.time()
            try:
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                sample = Sample(started, time.time(), response.status, response.getheader(VERSION_HEADER) or "", "", connection)
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                sample = Sample(started, time.time(), 0, "", error_kind(exc), connection)
                conn.close()
                conn = None
            self.samples.append(sample)
            if sample.failed:
                time.sleep(FAILURE_PAUSE_S)
        if conn is not None:
            conn.close()
