"""The rehearsal's options, checked in one place: by the CLI before the rehearsal's process starts,
and by that process when it is run on its own. Pure: importing it does not import Locust (which
patches the standard library with gevent as it loads)."""

from __future__ import annotations

STEPS = ("deploy", "switch", "rollback")
MIXES = ("read-write", "read")


def parse_steps(text: str) -> list[str]:
    """``deploy,switch`` -> ["deploy", "switch"]; ValueError with one sentence for anything else."""
    steps = [s.strip() for s in text.split(",") if s.strip()]
    if not steps:
        raise ValueError(f"{text!r} names no step; use a comma-separated list of {', '.join(STEPS)}")
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a step; use a comma-separated list of {', '.join(STEPS)}")
    return steps


def check_users(users: int) -> int:
    if users < 1:
        raise ValueError(f"{users} users would send no load; use 1 or more")
    return users


def check_phase_seconds(seconds: float) -> float:
    if not seconds > 0:  # also refuses NaN
        raise ValueError(f"{seconds:g} is not a load time; use a number of seconds above 0")
    return seconds
