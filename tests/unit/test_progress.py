"""Live progress for long steps: plain lines in a log (throttled), a spinner on a terminal, nothing when off."""

from __future__ import annotations

import io

import pytest

from simulator import progress
from simulator.progress import PLAIN_EVERY_S, Step, mode, step


def test_a_log_gets_a_start_line_and_an_end_line(monkeypatch):
    monkeypatch.delenv("CUTOVER_PROGRESS", raising=False)
    log = io.StringIO()  # not a terminal
    assert mode(log) == "plain"
    with step("docker build app:2.0.0", stream=log) as shown:
        shown.update("Step 1/9")  # within PLAIN_EVERY_S of the start: no line for it
    lines = log.getvalue().splitlines()
    assert lines[0] == "... docker build app:2.0.0"
    assert len(lines) == 2 and lines[1].startswith("docker build app:2.0.0: done in ")


def test_a_failed_step_says_so_and_the_error_goes_on(monkeypatch):
    monkeypatch.setenv("CUTOVER_PROGRESS", "plain")
    log = io.StringIO()
    with pytest.raises(RuntimeError):
        with step("draining blue", stream=log):
            raise RuntimeError("boom")
    assert log.getvalue().splitlines()[-1].startswith("draining blue: failed after ")


def test_plain_updates_at_most_every_few_seconds():
    now = [0.0]
    lines: list[str] = []
    shown = Step("waiting for app to be healthy", lines.append, clock=lambda: now[0])
    for t in range(0, 25):
        now[0] = float(t)
        shown.update("up to 60s")
    # t=10 and t=20: one line per PLAIN_EVERY_S, with the time waited so far.
    assert lines == ["... waiting for app to be healthy: up to 60s (10s)", "... waiting for app to be healthy: up to 60s (20s)"]
    assert PLAIN_EVERY_S == 10.0


def test_off_is_silent(monkeypatch):
    monkeypatch.setenv("CUTOVER_PROGRESS", "off")
    log = io.StringIO()
    with step("load: 0 baseline (8s)", stream=log) as shown:
        shown.update("100 requests recorded")
    assert log.getvalue() == ""


def test_a_terminal_gets_a_spinner_and_no_line_for_a_short_step(monkeypatch):
    monkeypatch.setenv("CUTOVER_PROGRESS", "live")
    log = io.StringIO()
    with step("waiting for HAProxy to see green up", stream=log) as shown:
        shown.update("up to 60s")
    assert "done in" not in log.getvalue()  # under QUIET_S: the spinner was enough
    monkeypatch.setattr(progress, "QUIET_S", 0.0)
    with step("waiting for HAProxy to see green up", stream=log):
        pass
    assert "waiting for HAProxy to see green up: done in" in log.getvalue()


def test_ci_is_never_live(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CUTOVER_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert mode(Terminal()) == "live"
    monkeypatch.setenv("CI", "true")
    assert mode(Terminal()) == "plain"
