"""The judge of a colour that just went live, and the watch loop around it, on counter samples."""

from __future__ import annotations

from simulator.watch import Sample, WatchPolicy, judge, watch

POLICY = WatchPolicy(window_s=10, max_5xx_percent=5, min_requests=20, max_response_ms=2000)
BASE = Sample(seconds=0.0, requests=1000, responses_5xx=7, response_ms=3, servers={"green-1": "UP"})


def at(seconds: float, requests: int, errors: int, response_ms: int = 3, servers: dict | None = None, old_sessions: int = 0) -> Sample:
    """A sample ``requests`` and ``errors`` after the baseline (the counters are cumulative)."""
    return Sample(seconds, BASE.requests + requests, BASE.responses_5xx + errors, response_ms, servers or {"green-1": "UP"}, old_sessions)


def test_a_healthy_colour_is_left_alone():
    assert judge(POLICY, BASE, at(3, 500, 25)) is None  # exactly 5%: not above


def test_5xx_above_the_share_is_bad_and_says_how_bad():
    verdict = judge(POLICY, BASE, at(2.5, 100, 30))
    assert verdict.kind == "5xx"
    assert (verdict.requests, verdict.responses_5xx, verdict.ratio_percent, verdict.seconds_after_flip) == (100, 30, 30.0, 2.5)
    assert "30 of 100 requests (30.0%) got a 5xx" in verdict.reason


def test_too_few_requests_say_nothing_about_a_share_or_a_time():
    assert judge(POLICY, BASE, at(1, 19, 19, response_ms=60_000)) is None
    assert judge(POLICY, BASE, at(1, 20, 19)).kind == "5xx"


def test_counters_before_the_flip_do_not_count():
    # The baseline already had 7 errors: the deltas are what the new colour did since.
    assert judge(POLICY, BASE, at(1, 40, 0)) is None


def test_a_server_out_of_rotation_is_bad_whatever_the_traffic():
    for status in ("DOWN", "DOWN 1/2", "MAINT", "MAINT (resolution)"):
        verdict = judge(POLICY, BASE, at(1, 0, 0, servers={"green-1": "UP", "green-2": status}))
        assert verdict.kind == "server-down" and "green-2" in verdict.reason, status
    assert judge(POLICY, BASE, at(1, 0, 0, servers={"green-1": "UP 1/2"})) is None  # going down, still serving


def test_slow_responses_are_bad():
    verdict = judge(POLICY, BASE, at(4, 50, 0, response_ms=2500))
    assert verdict.kind == "response-time" and "2500 ms" in verdict.reason


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_watch_lasts_the_window_and_the_drain_then_reports_healthy():
    clock = FakeClock()
    # The old colour keeps a session until 12 s after the flip: the watch waits for it past the window.
    outcome = watch(lambda s: at(s, int(s * 10), 0, old_sessions=1 if s < 12 else 0), POLICY, BASE, drain_budget_s=30, interval_s=1, clock=clock, sleep=clock.sleep)
    assert outcome.verdict is None and outcome.drained
    assert outcome.watched_s == 12 and outcome.drain_s == 12


def test_watch_stops_at_the_first_bad_sample():
    clock = FakeClock()
    outcome = watch(lambda s: at(s, int(s * 20), int(s * 20) // 2 if s >= 3 else 0), POLICY, BASE, drain_budget_s=30, interval_s=1, clock=clock, sleep=clock.sleep)
    assert outcome.verdict is not None and outcome.verdict.kind == "5xx" and outcome.watched_s == 3


def test_watch_gives_up_on_a_drain_past_its_budget():
    clock = FakeClock()
    outcome = watch(lambda s: at(s, 0, 0, old_sessions=2), POLICY, BASE, drain_budget_s=15, interval_s=1, clock=clock, sleep=clock.sleep)
    assert outcome.verdict is None and not outcome.drained and outcome.watched_s == 15


def test_the_drain_hook_runs_once_when_the_budget_runs_out_inside_the_window():
    clock = FakeClock()
    called_at = []
    # Streams stay open on the old colour until the hook has run, then close.
    outcome = watch(
        lambda s: at(s, int(s * 10), 0, old_sessions=0 if called_at and s >= called_at[0] + 1 else 3), POLICY, BASE,
        drain_budget_s=3, interval_s=1, clock=clock, sleep=clock.sleep, at_drain_budget=lambda: called_at.append(clock.now),
    )
    assert called_at == [3.0]
    assert outcome.verdict is None and outcome.drained and outcome.watched_s == 10


def test_no_drain_hook_when_the_old_colour_drained_in_time():
    clock = FakeClock()
    called = []
    watch(lambda s: at(s, int(s * 10), 0, old_sessions=1 if s < 2 else 0), POLICY, BASE, drain_budget_s=3, interval_s=1,
          clock=clock, sleep=clock.sleep, at_drain_budget=lambda: called.append(clock.now))
    assert called == []
