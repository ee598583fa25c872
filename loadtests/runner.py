"""Drive Locust headless from code and keep a record of every single request.

Importing this module imports Locust, which patches the standard library with gevent: import it
first in a process of its own (``python -m loadtests.rehearsal`` does).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

import gevent
from locust.env import Environment
from locust.event import Events

from locust import User

from loadtests.locustfile import ReadWriteUser


@dataclass(frozen=True)
class RequestRecord:
    started: float  # wall clock when the request was sent
    finished: float
    phase: str
    name: str
    status: int  # 0 when no response arrived (connection error, reset, timeout)
    version: str
    colour: str
    latency_ms: float
    user: int
    error: str
    item_id: int | None = None  # the id a POST /items got with its 201: a write we must not lose

    @property
    def failed(self) -> bool:
        return bool(self.error) or not 200 <= self.status < 300


class LoadRun:
    """A bounded Locust run: it stops by itself after ``max_seconds`` or ``max_requests``."""

    def __init__(self, host: str, users: int, max_seconds: float, max_requests: int, user_class: type[User] = ReadWriteUser) -> None:
        self.records: list[RequestRecord] = []
        # (wall-clock start, name) of each phase; a request belongs to the phase it was *sent* in.
        self._phase_starts: list[float] = [0.0]
        self._phase_names: list[str] = ["start"]
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.users = users
        events = Events()
        events.request.add_listener(self._on_request)
        # stop_timeout: on quit, users finish the request in hand instead of being killed mid-flight.
        self.env = Environment(user_classes=[user_class], host=host, events=events, catch_exceptions=False, stop_timeout=35)
        self.runner = self.env.create_local_runner()
        self._guard: gevent.Greenlet | None = None
        self.stopped_because = ""

    def _on_request(self, request_type, name, response_time, response_length, response=None, context=None, exception=None, start_time=None, **_) -> None:
        status = getattr(response, "status_code", 0) or 0
        headers = getattr(response, "headers", None) or {}
        now = time.time()
        self.records.append(
            RequestRecord(
                started=start_time or now - (response_time or 0) / 1000,
                finished=now,
                phase=self.phase_at(start_time or now),
                name=name,
                status=status,
                version=headers.get("X-App-Version", "") if status else "",
                colour=headers.get("X-App-Colour", "") if status else "",
                latency_ms=round(response_time or 0.0, 3),
                user=(context or {}).get("user", 0),
                error=f"{exception.__class__.__name__}: {exception}" if exception else "",
                item_id=_acknowledged_id(name, status, response),
            )
        )
        if len(self.records) >= self.max_requests and not self.stopped_because:
            self.stopped_because = f"request budget of {self.max_requests} reached"
            gevent.spawn(self.runner.quit)

    def begin_phase(self, name: str) -> None:
        self._phase_starts.append(time.time())
        self._phase_names.append(name)

    def phase_at(self, moment: float) -> str:
        return self._phase_names[bisect.bisect_right(self._phase_starts, moment) - 1]

    def start(self) -> None:
        self.runner.start(self.users, spawn_rate=self.users)
        self._guard = gevent.spawn_later(self.max_seconds, self._time_up)

    def _time_up(self) -> None:
        if not self.stopped_because:
            self.stopped_because = f"time budget of {self.max_seconds:.0f}s reached"
        self.runner.quit()

    @property
    def running(self) -> bool:
        return not self.stopped_because

    def hold(self, seconds: float) -> None:
        """Keep the load on for ``seconds`` (or less, if a budget ends the run first)."""
        end = time.monotonic() + seconds
        while self.running and time.monotonic() < end:
            gevent.sleep(0.05)

    def stop(self) -> None:
        if not self.stopped_because:
            self.stopped_because = "scenario finished"
        self.runner.quit()
        if self._guard:
            self._guard.kill()
        # Let every in-flight request report before the record is read.
        self.runner.greenlet.join(timeout=60)


def _acknowledged_id(name: str, status: int, response) -> int | None:
    if name != "POST /items" or status != 201:
        return None
    try:
        return int(response.json()["id"])
    except (ValueError, KeyError, TypeError):
        return None
