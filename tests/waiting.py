"""Waiting on a condition with a deadline, for the integration tests (never sleep-and-hope)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], deadline_s: float, what: str, interval_s: float = 0.3) -> T:
    """``condition()``'s first truthy value; fails the test naming ``what`` after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"{what} within {deadline_s}s"
        time.sleep(interval_s)
