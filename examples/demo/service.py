"""The demo workload: a small WSGI service that says which version and colour served each request.

Version is baked into the image at build time (the artefact); colour and instance come from the
container's environment (the deployment). Nothing here is edited to make a release.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
from urllib.parse import parse_qs

import psycopg2
import psycopg2.pool

import streams
from db_settings import connection_kwargs

VERSION = os.environ.get("APP_VERSION", "0.0.0")
COLOUR = os.environ.get("CUTOVER_COLOUR", "none")
INSTANCE = os.environ.get("CUTOVER_INSTANCE", os.uname().nodename)
MAX_SLOW_MS = 30_000
MAX_BODY_BYTES = 64 * 1024
# Release 2 fills items.body_length (added by the expand migration 0002); release 1 never knew it.
RELEASE = int(VERSION.split(".", 1)[0]) if VERSION.split(".", 1)[0].isdigit() else 0
WRITES_BODY_LENGTH = RELEASE >= 2

# A version named like 2.0.0-defect30 misbehaves only under real traffic, for proving automatic
# rollback: its first DEFECT_AFTER requests in each worker process succeed (enough for the smoke
# tests at deploy and at the switch's preflight), /healthz always does (so the proxy keeps it in
# rotation), and afterwards every request but /healthz fails with 500 at the version's percentage,
# spread evenly (no randomness: the same traffic fails the same way). The artefact is the same file
# for every version; the version comes from the container (CUTOVER_VERSION, else APP_VERSION).
_DEFECT = re.search(r"-defect([0-9]{1,3})(?![0-9])", os.environ.get("CUTOVER_VERSION") or VERSION)
DEFECT_PERCENT = min(100, int(_DEFECT.group(1))) if _DEFECT else 0
DEFECT_AFTER = 20
_served = itertools.count(1)  # next() on a count is atomic under the GIL: safe across request threads


def _defective() -> bool:
    """Whether this request is one the defect fails (never one of the first DEFECT_AFTER)."""
    number = next(_served) - DEFECT_AFTER
    if number <= 0:
        return False
    # Request n fails when it crosses the next whole multiple of 100/PERCENT: exactly PERCENT in every 100.
    return (number * DEFECT_PERCENT) // 100 > ((number - 1) * DEFECT_PERCENT) // 100


# Connections per worker process. psycopg2's pool fails when empty instead of waiting, so a
# semaphore makes request threads queue for a connection (bounded by DB_WAIT_S) rather than fail.
DB_CONNECTIONS = int(os.environ.get("APP_DB_CONNECTIONS", "8"))
DB_WAIT_S = 10.0
_pool: psycopg2.pool.ThreadedConnectionPool | None = None
_pool_lock = threading.Lock()
_pool_slots = threading.BoundedSemaphore(DB_CONNECTIONS)


class DatabaseBusy(psycopg2.Error):
    """No pooled connection came free in time."""


def _connections() -> psycopg2.pool.ThreadedConnectionPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = psycopg2.pool.ThreadedConnectionPool(1, DB_CONNECTIONS, **connection_kwargs())
            # psycopg2 closes a connection handed back while the pool already holds `minconn` idle
            # ones, so with 1 most requests would open a new session (a DNS lookup of the database
            # host, a backend, a SCRAM handshake). Raised after construction, the pool still opens
            # one at start and grows on demand, but keeps every connection it is given back: no
            # new session per request, and none needing Docker's DNS while the engine restarts.
            _pool.minconn = DB_CONNECTIONS
        return _pool


def _query(sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on a pooled connection; a write returns only after COMMIT succeeded."""
    if not _pool_slots.acquire(timeout=DB_WAIT_S):
        raise DatabaseBusy("no database connection free")
    try:
        return _query_on_pooled_connection(sql, params)
    finally:
        _pool_slots.release()


def _query_on_pooled_connection(sql: str, params: tuple) -> list[tuple]:
    pool = _connections()
    conn = pool.getconn()
    broken = False
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    except psycopg2.Error:
        broken = conn.closed != 0
        if not broken:
            conn.rollback()
        raise
    finally:
        pool.putconn(conn, close=broken)


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
    if DEFECT_PERCENT and path != "/healthz" and _defective():
        return _respond(start_response, "500 Internal Server Error", {"error": f"defect: {VERSION} fails {DEFECT_PERCENT}% of requests"})
    if path == "/items" or path.startswith("/items/"):
        try:
            return _items(environ, start_response, method, path)
        except psycopg2.Error as exc:
            # The request did not commit: a 503 the client may retry, never a false 201.
            return _respond(start_response, "503 Service Unavailable", {"error": f"database: {exc.__class__.__name__}"})
    if method not in ("GET", "HEAD"):
        return _respond(start_response, "405 Method Not Allowed", {"error": f"{method} is not allowed on {path}"})
    if path == "/healthz":
        return _respond(start_response, "200 OK", {"status": "ok"})
    if path == "/version":
        return _respond(start_response, "200 OK", {"version": VERSION, "colour": COLOUR, "instance": INSTANCE})
    if path == "/events":
        return _events(environ, start_response)
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


def _events(environ, start_response):
    """Server-sent events naming who serves them (streams.py), with the same X-App-* headers."""
    who = {"version": VERSION, "colour": COLOUR, "instance": INSTANCE}
    headers = [("X-App-Version", VERSION), ("X-App-Colour", COLOUR), ("X-App-Instance", INSTANCE)]
    return streams.events(environ, start_response, who, headers)


def _item(row: tuple) -> dict:
    item = {"id": row[0], "body": row[1]}
    if WRITES_BODY_LENGTH:
        item["body_length"] = row[2]
    return item


def _items(environ, start_response, method: str, path: str):
    columns = "id, body, body_length" if WRITES_BODY_LENGTH else "id, body"
    if path == "/items" and method == "POST":
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            if size > MAX_BODY_BYTES:
                raise ValueError
            body = json.loads(environ["wsgi.input"].read(size) or b"{}").get("body")
        except (ValueError, AttributeError):
            return _respond(start_response, "400 Bad Request", {"error": "send JSON {\"body\": \"text\"} of at most 64 KiB"})
        if not isinstance(body, str):
            return _respond(start_response, "400 Bad Request", {"error": "body must be a string"})
        if WRITES_BODY_LENGTH:
            rows = _query("INSERT INTO items (body, body_length) VALUES (%s, %s) RETURNING id", (body, len(body)))
        else:
            rows = _query("INSERT INTO items (body) VALUES (%s) RETURNING id", (body,))
        return _respond(start_response, "201 Created", {"id": rows[0][0]})
    if method not in ("GET", "HEAD"):
        return _respond(start_response, "405 Method Not Allowed", {"error": f"{method} is not allowed on {path}"})
    if path == "/items":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            after = int(query.get("after", ["0"])[0])
            limit = min(int(query.get("limit", ["100"])[0]), 1000)
        except ValueError:
            return _respond(start_response, "400 Bad Request", {"error": "after and limit must be whole numbers"})
        rows = _query(f"SELECT {columns} FROM items WHERE id > %s ORDER BY id LIMIT %s", (after, limit))
        return _respond(start_response, "200 OK", {"items": [_item(r) for r in rows]})
    item_id = path[len("/items/") :]
    if not item_id.isdigit():
        return _respond(start_response, "404 Not Found", {"error": f"no item {item_id!r}"})
    rows = _query(f"SELECT {columns} FROM items WHERE id = %s", (int(item_id),))
    if not rows:
        return _respond(start_response, "404 Not Found", {"error": f"no item {item_id}"})
    return _respond(start_response, "200 OK", _item(rows[0]))
