"""The lost-write check: every acknowledged write read back through one base URL.

A rehearsal acknowledges tens of thousands of writes and reads each back through both ports once the
load has stopped; that check was most of the time after the load. It uses the standard library's
http.client on keep-alive connections, several at once: measured side by side on the `ci` stack
(26,698 ids, two rounds), 8 connections read 1,289-1,388 ids/s this way and 541-549 ids/s through
requests, whose per-request work, not the app, was the limit.
"""

from __future__ import annotations

import http.client
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable
from urllib.parse import urlsplit

from simulator.smoke import TIMEOUT_S
from stacks.app import AppSpec

# Acknowledged writes are read back over this many connections at once (per base URL).
READ_BACK_CONNECTIONS = 8


class _Reader:
    """One keep-alive connection reading ids back; a connection that breaks is opened anew once per id."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the write read-back takes a plain http:// base URL, not {base_url!r}")
        self._host, self._port, self._prefix = parts.hostname, parts.port or 80, parts.path.rstrip("/")
        self._connection: http.client.HTTPConnection | None = None

    def status(self, method: str, path: str) -> int | None:
        """The answer's status, or None when no answer came on a fresh connection either."""
        for _attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT_S)
            try:
                self._connection.request(method, self._prefix + path)
                response = self._connection.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                # A keep-alive connection the server closed between two reads says nothing of the
                # write: try once more on a new one; a second failure counts the write unreadable.
                self.close()
        return None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def missing_writes(app: AppSpec, base_url: str, acknowledged: Iterable[Any], connections: int = READ_BACK_CONNECTIONS) -> set:
    """The acknowledged writes the app at ``base_url`` cannot read back (its write probe's read request)."""
    probe = app.write_probe
    assert probe is not None  # writes are only ever acknowledged through a probe
    _Reader(base_url)  # a URL it cannot read from is refused here, not in every thread
    ids = sorted(acknowledged, key=str)  # bounded by what the run acknowledged
    slices = [ids[start::connections] for start in range(connections)]

    def unreadable(slice_ids: list) -> set:
        reader = _Reader(base_url)
        try:
            return {item_id for item_id in slice_ids if reader.status(probe.read.method, probe.read_path(item_id)) != probe.read.expect_status}
        finally:
            reader.close()

    with ThreadPoolExecutor(max_workers=connections) as pool:
        return set().union(*pool.map(unreadable, slices))


def unreadable(app: AppSpec, base_url: str, ids: Iterable[Any]) -> dict:
    """{id: what reading it back got} for each of ``ids`` the app at ``base_url`` does not return,
    read one at a time: the second look at what ``missing_writes`` missed. A write one read could
    not return may be an error of the app (a pooled database connection gone stale when the
    database restarted answers 503 once), not a lost write; a lost one is missing on this read too."""
    probe = app.write_probe
    assert probe is not None
    reader = _Reader(base_url)
    answers = {}
    try:
        for item_id in sorted(ids, key=str):  # bounded: only what the first read missed
            status = reader.status(probe.read.method, probe.read_path(item_id))
            if status != probe.read.expect_status:
                answers[item_id] = "no answer" if status is None else f"HTTP {status}"
    finally:
        reader.close()
    return answers


def lost_writes(app: AppSpec, base_url: str, acknowledged: Iterable[Any]) -> tuple[set, dict]:
    """The fault suites' check: (what the first read missed, {id: answer} for those a second look
    cannot return either). Only the second are lost; the first may be an error of the app, such as
    a pooled database connection gone stale when the database restarted."""
    first_missed = missing_writes(app, base_url, acknowledged) if acknowledged else set()
    return first_missed, (unreadable(app, base_url, first_missed) if first_missed else {})
