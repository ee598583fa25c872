"""The demo workload: a small WSGI service that says which version and colour served each request.

Version is baked into the image at build time (the artefact); colour and instance come from the
container's environment (the deployment). Nothing here is edited to make a release.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import parse_qs

VERSION = os.environ.get("APP_VERSION", "0.0.0")
COLOUR = os.environ.get("APP_COLOUR", "none")
INSTANCE = os.environ.get("APP_INSTANCE", os.uname().nodename)
MAX_SLOW_MS = 30_000


def _respond(start_response, status: str, body: dict) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            # Headers let a load generator count versions without parsing every body.
            ("X-App-Version", VERSION),
            ("X-App-Colour", COLOUR),
            ("X-App-Instance", INSTANCE),
        ],
    )
    return [payload]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        return _respond(start_response, "405 Method Not Allowed", {"error": f"{method} is not allowed on {path}"})
    if path == "/healthz":
        return _respond(start_response, "200 OK", {"status": "ok"})
    if path == "/version":
        return _respond(start_response, "200 OK", {"version": VERSION, "colour": COLOUR, "instance": INSTANCE})
    if path == "/slow":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            ms = int(query.get("ms", ["1000"])[0])
        except ValueError:
            return _respond(start_response, "400 Bad Request", {"error": "ms must be a whole number of milliseconds"})
        if not 0 <= ms <= MAX_SLOW_MS:
            return _respond(start_response, "400 Bad Request", {"error": f"ms must be between 0 and {MAX_SLOW_MS}"})
        time.sleep(ms / 1000)
        return _respond(start_response, "200 OK", {"version": VERSION, "colour": COLOUR, "instance": INSTANCE, "slept_ms": ms})
    return _respond(start_response, "404 Not Found", {"error": f"no route for {path}"})
