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

from simulator import progress
from simulator.smoke import created_id
from stacks.app import WriteProbe
from stacks.proxy_config import COLOUR_HEADER, VERSION_HEADER


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
    item_id: object = None  # the id the app's write probe request got back: a write we must not lose

    @property
    def failed(self) -> bool:
        return bool(self.error) or not 200 <= self.status < 300


class LoadRun:
    """A bounded Locust run: it stops by itself after ``max_seconds`` or ``max_requests``."""

    def __init__(
        self,
        host: str,
        users: int,
        max_seconds: float,
        max_requests: int,
        user_classes: list[type[User]],
        write_probe: WriteProbe | None = None,
        exclude_tags: list[str] | None = None,
    ) -> None:
        self.records: list[RequestRecord] = []
        # (wall-clock start, name) of each phase; a request belongs to the phase it was *sent* in.
        self._phase_starts: list[float] = [0.0]
        self._phase_names: list[str] = ["start"]
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.users = users
        self.write_probe = write_probe
        events = Events()
        events.request.add_listener(self._on_request)
        # stop_timeout: on quit, users finish the request in hand instead of being killed mid-flight.
        self.env = Environment(
            user_classes=[_identified(c) for c in user_classes],
            host=host,
            events=events,
            catch_exceptions=False,
            stop_timeout=35,
            exclude_tags=exclude_tags,
        )
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
                # Who served it, as the proxy says: no app has to tell.
                version=headers.get(VERSION_HEADER, "") if status else "",
                colour=headers.get(COLOUR_HEADER, "") if status else "",
                latency_ms=round(response_time or 0.0, 3),
                user=(context or {}).get(USER_KEY, 0),
                error=f"{exception.__class__.__name__}: {exception}" if exception else "",
                item_id=self._acknowledged_id(request_type, name, status, response),
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
        """Keep the load on for ``seconds`` (or less, if a budget ends the run first), shown as a
        live step (simulator/progress.py) with the requests recorded so far."""
        end = time.monotonic() + seconds
        with progress.step(f"load: {self._phase_names[-1]} ({seconds:g}s)") as shown:
            while self.running and time.monotonic() < end:
                shown.update(f"{len(self.records)} requests recorded")
                gevent.sleep(0.05)

    def stop(self) -> None:
        if not self.stopped_because:
            self.stopped_because = "scenario finished"
        self.runner.quit()
        if self._guard:
            self._guard.kill()
        # Let every in-flight request report before the record is read.
        self.runner.greenlet.join(timeout=60)


    def _acknowledged_id(self, method: str, name: str, status: int, response) -> object:
        """The id a request matching the app's write probe got back with the expected status."""
        probe = self.write_probe
        if probe is None or method != probe.create.method or name not in (probe.create.describe(), probe.create.path):
            return None
        if status != probe.create.expect_status:
            return None
        return created_id(response, probe)


USER_KEY = "cutover_user"


def _identified(user_class: type[User]) -> type[User]:
    """The same user, with its identity in every request's context (the per-flip analysis needs it)."""

    def context(self) -> dict:
        return {**user_class.context(self), USER_KEY: id(self)}

    return type(user_class.__name__, (user_class,), {"context": context, "__module__": user_class.__module__})
