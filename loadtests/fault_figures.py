"""What one fault case did to the traffic, from its request record.

Pure functions over records (no Locust, no Docker), so they are unit-tested on hand-made data.
Times are wall-clock seconds, as the runner records them; figures are reported relative to the
moment the fault was injected.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence


class Record(Protocol):
    started: float
    finished: float
    status: int
    error: str

    @property
    def failed(self) -> bool: ...


@dataclass(frozen=True)
class TrafficFigures:
    requests: int
    errors: int
    errors_by_kind: dict[str, int]
    first_error_s: float | None  # after the fault, when the first failed request ended
    last_error_s: float | None
    error_seconds: float  # from the first to the last failed request: how long the errors lasted
    errors_before_fault: int  # failures that ended before the fault: the stack was not healthy to start with
    errors_after_recovery: int  # failures sent after recovery was declared: it did not last


def error_kind(record: Record) -> str:
    """``HTTP 503`` for a failing status, else the client's exception class (ConnectionRefusedError,
    ...), with the status when one came first (a body cut short after ``HTTP 200``)."""
    if record.status and not 200 <= record.status < 300:
        return f"HTTP {record.status}"
    name = record.error.split(":", 1)[0].strip() or "no response"
    return f"{name} after HTTP {record.status}" if record.status else name


def recovered_at(records: Sequence[Record], fault_at: float, now: float, settle_s: float, min_ok: int = 5) -> float | None:
    """The moment traffic came back for good, if it has: the end of the last failure after the
    fault (or the fault itself), provided every request since has succeeded for ``settle_s`` and
    at least ``min_ok`` of them ended."""
    since = max([fault_at, *(r.finished for r in records if r.failed)])
    ok_since = sum(1 for r in records if r.started >= since and not r.failed)
    if now - since >= settle_s and ok_since >= min_ok:
        return since
    return None


def traffic_figures(records: Iterable[Record], fault_at: float, recovered: float | None) -> TrafficFigures:
    records = list(records)
    failed = [r for r in records if r.failed]
    during = [r for r in failed if r.finished >= fault_at]
    first = min((r.finished for r in during), default=None)
    last = max((r.finished for r in during), default=None)
    return TrafficFigures(
        requests=len(records),
        errors=len(failed),
        errors_by_kind=dict(Counter(error_kind(r) for r in failed).most_common()),
        first_error_s=None if first is None else round(first - fault_at, 3),
        last_error_s=None if last is None else round(last - fault_at, 3),
        error_seconds=0.0 if first is None or last is None else round(last - first, 3),
        errors_before_fault=len(failed) - len(during),
        errors_after_recovery=0 if recovered is None else sum(1 for r in during if r.started > recovered),
    )
