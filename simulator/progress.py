"""Live progress for the long steps (image builds, health waits, drains, load runs): one helper.

On a terminal a step is a rich spinner that shows what it waits for and for how long, replaced by
one line when it ends; in a CI log (stdout not a terminal, or CI set) it is plain lines: one when it
starts, at most one every PLAIN_EVERY_S while it runs, one when it ends. Steps that end within
QUIET_S print no end line on a terminal (a health wait of 0.3 s is not news).

Written to stdout, where the commands' other narrative lines (``Simulator.say``) go: stderr stays
the one sentence of an error, and the ``--json`` outputs come from commands with no long step (or,
like ``build --json``, print their JSON last). Set CUTOVER_PROGRESS=off to silence it, =plain or
=live to force a mode.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

PLAIN_EVERY_S = 10.0
QUIET_S = 1.0


def mode(stream: TextIO | None = None) -> str:
    """'live', 'plain' or 'off'."""
    chosen = os.environ.get("CUTOVER_PROGRESS", "").strip().lower()
    if chosen in ("live", "plain", "off"):
        return chosen
    stream = stream or sys.stdout
    interactive = hasattr(stream, "isatty") and stream.isatty() and not os.environ.get("CI")
    return "live" if interactive else "plain"


class Step:
    """What a running step reports; ``update(detail)`` is cheap to call on every poll."""

    def __init__(self, what: str, write: Callable[[str], None], live=None, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self._write = write
        self._live = live
        self._clock = clock
        self.began = clock()
        self._last_line = self.began
        self.detail = ""

    def elapsed(self) -> float:
        return self._clock() - self.began

    def update(self, detail: str = "") -> None:
        self.detail = detail or self.detail
        text = f"{self.what}{': ' + self.detail if self.detail else ''} ({self.elapsed():.0f}s)"
        if self._live is not None:
            self._live.update(text)
        elif self._clock() - self._last_line >= PLAIN_EVERY_S:
            self._last_line = self._clock()
            self._write(f"... {text}")

    def end_line(self, failed: bool) -> str | None:
        if failed:
            return f"{self.what}: failed after {self.elapsed():.1f}s"
        if self._live is not None and self.elapsed() < QUIET_S:
            return None
        return f"{self.what}: done in {self.elapsed():.1f}s"


@contextmanager
def step(what: str, stream: TextIO | None = None) -> Iterator[Step]:
    """``with step("building app:2.0.0") as s: ... s.update("Step 3/9")``."""
    stream = stream or sys.stdout
    how = mode(stream)

    def write(line: str) -> None:
        if how != "off":
            print(line, file=stream, flush=True)

    if how != "live":
        current = Step(what, write)
        write(f"... {what}")
        yield from _run(current, write)
        return
    from rich.console import Console

    console = Console(file=stream)
    with console.status(f"{what} (0s)") as status:
        current = Step(what, write, live=status)
        yield from _run(current, console.print)


def _run(current: Step, write: Callable[[str], None]) -> Iterator[Step]:
    failed = True
    try:
        yield current
        failed = False
    finally:
        line = current.end_line(failed)
        if line:
            write(line)
