"""Server-sent events for the demo: ``GET /events`` streams numbered events saying who serves them.

A stream is a long-lived request, so a blue/green switch cannot simply wait for it to finish. It
ends itself, always at an event boundary and always with a final ``event: end`` (the client's cue
to reconnect, which the proxy sends to the live colour), in three cases:

- cutover's drain hook ran ``cutover-demo.pyz end-streams`` in this container: that writes the
  time into END_STREAMS_FILE, and every stream opened before that time ends (one opened later, e.g.
  after a rollback made this colour live again, is not affected);
- the worker is stopping (SIGTERM: gunicorn's graceful stop, e.g. a deploy replacing the container);
- it sent the ``count`` events it was asked for.

Each event is written as one chunk, so nothing is ever cut in the middle of one.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

# Under /tmp: writable even where the root file system is read-only (a tmpfs there).
END_STREAMS_FILE = Path(os.environ.get("APP_END_STREAMS_FILE", "/tmp/cutover-demo-end-streams"))
INTERVAL_S = float(os.environ.get("APP_EVENT_INTERVAL_S", "0.5"))
DEFAULT_EVENTS = 600
MAX_EVENTS = 7200
# Each stream holds one of a worker's request threads (gunicorn_conf.threads = 32) for its whole
# life; half of them stay free for ordinary requests, and a stream over the limit gets a 503.
MAX_STREAMS = int(os.environ.get("APP_MAX_STREAMS", "16"))
# Tells a standard EventSource client to reconnect after 500 ms rather than its default 3 s.
RETRY_MS = 500

_slots = threading.BoundedSemaphore(MAX_STREAMS)
_stopping = threading.Event()


def end_streams() -> int:
    """The drain hook (``cutover-demo.pyz end-streams``): end the streams open now, in every worker."""
    END_STREAMS_FILE.write_text(f"{time.time():.6f}\n")
    print(f"streams opened before {END_STREAMS_FILE.read_text().strip()} will end at their next event")
    return 0


def end_streams_on_sigterm() -> None:
    """Chain onto the worker's SIGTERM handler (gunicorn_conf's post_worker_init): gunicorn waits for
    open requests on a graceful stop, so streams must notice it and end rather than be killed."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        _stopping.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, handler)


def _ended_since(opened_at: float) -> bool:
    try:
        return float(END_STREAMS_FILE.read_text().strip() or 0) >= opened_at
    except (FileNotFoundError, ValueError):
        return False


def _message(event: str, data: dict, event_id: int | None = None) -> bytes:
    lines = ([f"id: {event_id}"] if event_id is not None else []) + [f"event: {event}", f"data: {json.dumps(data)}"]
    return ("\n".join(lines) + "\n\n").encode()


def events(environ, start_response, who: dict, headers: list[tuple[str, str]]):
    """The WSGI response of GET /events?count=N. A generator: start_response is called on its first
    step, so a refused stream (400, 503) and a slot taken are both decided there, and the slot is
    given back however the stream ends (finished, client gone)."""
    query = parse_qs(environ.get("QUERY_STRING", ""))
    try:
        count = int(query.get("count", [str(DEFAULT_EVENTS)])[0])
    except ValueError:
        count = -1
    if not 1 <= count <= MAX_EVENTS:
        yield _refuse(start_response, "400 Bad Request", f"count must be a whole number from 1 to {MAX_EVENTS}", headers)
        return
    if environ.get("REQUEST_METHOD") == "HEAD":
        # Headers only: gunicorn would otherwise run the whole stream to discard it.
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), *headers])
        return
    if not _slots.acquire(blocking=False):
        yield _refuse(start_response, "503 Service Unavailable", f"this worker already serves {MAX_STREAMS} streams", headers + [("Retry-After", "1")])
        return
    try:
        opened_at = time.time()
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), *headers])
        yield f"retry: {RETRY_MS}\n\n".encode()
        for n in range(1, count + 1):
            yield _message("tick", {"n": n, **who}, event_id=n)
            if _stopping.wait(INTERVAL_S):
                reason = "shutdown"
                break
            if _ended_since(opened_at):
                reason = "drain"
                break
        else:
            reason = "done"
        yield _message("end", {"reason": reason, **who})
    finally:
        _slots.release()


def _refuse(start_response, status: str, error: str, headers: list[tuple[str, str]]) -> bytes:
    payload = json.dumps({"error": error}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *headers])
    return payload
