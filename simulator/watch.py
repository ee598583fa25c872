"""Watching a colour after it went live, by HAProxy's own counters, to undo a bad switch by itself.

``judge`` is pure: given the stack's thresholds, the counters sampled just before the flip and a
sample taken since, it says whether the new colour has degraded, and why, in one sentence with the
evidence beside it. ``watch`` is the thin loop around it: it samples the proxy until the window is
over *and* the old colour has drained (or its drain budget ran out), and stops at the first bad
verdict. Nothing here flips anything; the caller does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from simulator.errors import CutoverError


@dataclass(frozen=True)
class WatchPolicy:
    """When a colour that just went live is bad enough to flip back (stack-file keys, stacks/spec.py)."""

    window_s: float  # how long to watch after the flip; 0 turns the watch off
    max_5xx_percent: float  # above this share of 5xx responses (of at least min_requests) it is bad
    min_requests: int  # fewer requests than this since the flip say nothing about a ratio or a time
    max_response_ms: int  # above this average response time (HAProxy's rtime) it is bad

    @property
    def enabled(self) -> bool:
        return self.window_s > 0


@dataclass(frozen=True)
class Sample:
    """One reading of the proxy's stats, as far as the watch cares."""

    seconds: float  # since the flip (negative for the baseline, taken just before it)
    requests: int  # the new colour's backend req_tot (cumulative)
    responses_5xx: int  # its hrsp_5xx (cumulative; HAProxy's own 5xx for the backend count too)
    response_ms: int  # its rtime: average response time of its last 1024 requests
    servers: dict[str, str] = field(default_factory=dict)  # server -> status (UP, DOWN, MAINT, ...)
    old_sessions: int = 0  # the old colour's current sessions: its drain is over at 0
    old_servers: dict[str, str] = field(default_factory=dict)  # the old colour's servers: something to go back to?


@dataclass(frozen=True)
class Verdict:
    """Why the new colour is judged bad, and the numbers that say so (kept in the ledger)."""

    reason: str  # one sentence fragment: "12 of 80 requests (15.0%) got a 5xx, above 5%"
    kind: str  # "5xx", "server-down" or "response-time"
    seconds_after_flip: float
    requests: int  # since the flip
    responses_5xx: int  # since the flip
    ratio_percent: float
    response_ms: int
    servers: dict[str, str]

    def evidence(self) -> dict:
        return asdict(self)


def judge(policy: WatchPolicy, baseline: Sample, sample: Sample) -> Verdict | None:
    """The new colour's health since the flip: None while it is fine, else the first rule it broke."""
    requests = max(0, sample.requests - baseline.requests)
    errors = max(0, sample.responses_5xx - baseline.responses_5xx)
    ratio = 100.0 * errors / requests if requests else 0.0

    def verdict(kind: str, reason: str) -> Verdict:
        return Verdict(reason, kind, round(sample.seconds, 2), requests, errors, round(ratio, 2), sample.response_ms, dict(sample.servers))

    down = sorted(name for name, status in sample.servers.items() if _is_down(status))
    if down:
        return verdict("server-down", f"HAProxy took {', '.join(f'{n} ({sample.servers[n]})' for n in down)} out of rotation")
    if requests < policy.min_requests:
        return None  # too few requests to judge a share or an average
    if ratio > policy.max_5xx_percent:
        return verdict("5xx", f"{errors} of {requests} requests ({ratio:.1f}%) got a 5xx, above the {policy.max_5xx_percent:g}% allowed")
    if sample.response_ms > policy.max_response_ms:
        return verdict("response-time", f"its average response time is {sample.response_ms} ms, above the {policy.max_response_ms} ms allowed")
    return None


def _is_down(status: str) -> bool:
    # "DOWN", "DOWN 1/2" (failing its checks), "MAINT", "MAINT (resolution)"; a server going
    # down ("UP 1/2") is still serving and is judged at its next sample.
    return status.startswith("DOWN") or status.startswith("MAINT")


@dataclass(frozen=True)
class WatchOutcome:
    verdict: Verdict | None
    samples: int
    watched_s: float
    drained: bool  # the old colour had no session left before its budget ran out
    drain_s: float
    last: Sample | None


def watch(
    sample: Callable[[float], Sample],
    policy: WatchPolicy,
    baseline: Sample,
    drain_budget_s: float,
    interval_s: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    at_drain_budget: Callable[[], None] | None = None,
) -> WatchOutcome:
    """Sample (``sample(seconds_since_flip)``) from the flip until the window is over and the old
    colour has drained, or until ``judge`` finds the new colour bad. The clock starts at the call,
    which the caller makes right after the flip. ``at_drain_budget`` is called once, when the drain
    budget runs out with the old colour still busy (the app's drain hook ends its streams then,
    not at the end of a longer window)."""
    began = clock()
    drained_at: float | None = None
    budget_spent = False
    count, last = 0, None
    while True:
        last = sample(clock() - began)
        # Timed when the reading arrived: a stats read through docker exec takes a while on a busy engine.
        elapsed = clock() - began
        last = replace(last, seconds=round(elapsed, 3))
        count += 1
        verdict = judge(policy, baseline, last)
        if drained_at is None and last.old_sessions == 0:
            drained_at = elapsed
        if verdict is not None:
            return WatchOutcome(verdict, count, round(elapsed, 3), drained_at is not None, round(drained_at if drained_at is not None else elapsed, 3), last)
        drain_over = drained_at is not None or elapsed >= drain_budget_s
        if drained_at is None and drain_over and not budget_spent:
            budget_spent = True
            if at_drain_budget is not None:
                at_drain_budget()
        if elapsed >= policy.window_s and drain_over:
            return WatchOutcome(None, count, round(elapsed, 3), drained_at is not None, round(drained_at if drained_at is not None else elapsed, 3), last)
        sleep(interval_s)


class RolledBack(CutoverError):
    """A switch whose new colour degraded inside the watch window, and was flipped back."""
