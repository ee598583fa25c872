"""Hand-made request records for the unit tests of the figures, the report and the soak's record:
loadtests/report.py's PlainRecord with a test's defaults (a 200 from version "1" on blue, 1 ms)."""

from __future__ import annotations

from loadtests.report import PlainRecord

DEFAULTS = {"phase": "p", "status": 200, "version": "1", "colour": "blue", "latency_ms": 1.0, "user": 1, "error": "", "item_id": None}


def request(started: float, finished: float, **fields) -> PlainRecord:
    """A request sent at ``started`` and answered at ``finished``; ``fields`` override DEFAULTS."""
    unknown = set(fields) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"a request record has no field {sorted(unknown)[0]!r}")
    return PlainRecord(started, finished, **{**DEFAULTS, **fields})
