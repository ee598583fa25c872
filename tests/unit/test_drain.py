"""The drain's order of things (simulator/drain.py): the budget first, the app's hook only after it,
then a bounded wait; a failing or stuck hook is reported, never waited on forever."""

from __future__ import annotations

import threading
import time

from simulator.drain import drain
from stacks.app import Drain

HOOK = Drain(command=("end-streams",), close_seconds=2)


class Sessions:
    """Open requests on a colour, as HAProxy's counter would report them."""

    def __init__(self, open_now: int) -> None:
        self.open = open_now

    def __call__(self) -> int:
        return self.open


def test_requests_that_finish_within_the_budget_never_see_the_hook():
    sessions, ran = Sessions(0), []
    outcome = drain(sessions, 5, HOOK, lambda: ["blue-1"], lambda name, cmd: ran.append(name) or (0, ""))
    assert outcome.drained and ran == [] and outcome.hook_ran_in == []


def test_the_hook_runs_in_every_container_after_the_budget_and_the_drain_waits_for_the_close():
    sessions, ran = Sessions(2), []

    def exec_in(name, command):
        ran.append((name, command))
        if len(ran) == 2:
            sessions.open = 0  # the app closed its streams
        return 0, "ok"

    outcome = drain(sessions, 0.3, HOOK, lambda: ["blue-1", "blue-2"], exec_in)
    assert outcome.drained and sorted(ran) == [("blue-1", ("end-streams",)), ("blue-2", ("end-streams",))]
    assert outcome.hook_ran_in == ["blue-1", "blue-2"] and outcome.hook_failures == []


def test_without_a_hook_the_budget_is_the_end():
    outcome = drain(Sessions(1), 0.2, None, lambda: ["blue-1"], lambda name, cmd: (0, ""))
    assert not outcome.drained and outcome.hook_ran_in == []


def test_a_failing_or_stuck_hook_is_reported_and_the_drain_still_ends():
    release = threading.Event()

    def exec_in(name, command):
        if name == "blue-2":
            release.wait(30)  # stuck
            return 0, ""
        return 3, "Traceback ...\nPermissionError: /tmp\n"

    began = time.monotonic()
    try:
        outcome = drain(Sessions(1), 0.1, HOOK, lambda: ["blue-1", "blue-2"], exec_in)
    finally:
        release.set()
    assert not outcome.drained
    assert sorted(outcome.hook_failures) == [
        "the drain hook did not finish within 2s in blue-2",
        "the drain hook exited 3 in blue-1: PermissionError: /tmp",
    ]
    print(f"drain with a stuck hook ended after {time.monotonic() - began:.1f}s")
