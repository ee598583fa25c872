"""Turning a rehearsal's request record into figures: per phase, and per flip of the proxy.

Pure functions over records (no Locust import), so they are unit-tested on hand-made data.
"""

from __future__ import annotations

import csv
import statistics
from array import array
from collections import Counter, namedtuple
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Protocol, Sequence


# The new colour may answer before the flip command has returned (HAProxy applies the map change
# before `docker exec` comes back), so the first response is looked for from this far back.
FLIP_LOOKBACK_S = 1.0


class Record(Protocol):
    started: float
    finished: float
    phase: str
    status: int
    version: str
    colour: str
    latency_ms: float
    user: int
    error: str
    item_id: int | None

    @property
    def failed(self) -> bool: ...


class PlainRecord(namedtuple("PlainRecord", list(Record.__annotations__), defaults=(None,))):
    """A request record as plain data, with the Record protocol's fields in its order, for what is
    not a live rehearsal's RequestRecord (loadtests/runner.py): a row of a request CSV read back
    (loadtests/csv_report.py), a bench sample (loadtests/bench/report.py), a test's hand-made request."""

    __slots__ = ()

    @property
    def failed(self) -> bool:
        return bool(self.error) or not 200 <= self.status < 300


@dataclass(frozen=True)
class PhaseFigures:
    phase: str
    requests: int
    failures: int
    versions: dict[str, int]
    p50_ms: float
    p99_ms: float
    writes: int = 0  # POST /items answered 201
    lost: int = 0  # of those, items no longer readable afterwards


@dataclass(frozen=True)
class FlipFigures:
    """How one flip looked from the clients' side."""

    label: str
    to_colour: str
    returned_at: float  # when the proxy confirmed the flip
    first_new_ms: float | None  # first response from the new colour, relative to returned_at
    stale_after_flip: int  # requests sent after the flip returned but answered by the old colour
    users_active_after: int  # users that sent a request after the flip
    users_moved: int  # of those, users whose requests after the flip all reached the new colour


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return round(statistics.quantiles(values, n=1000, method="inclusive")[int(pct * 10) - 1], 2)


def acknowledged_writes(records: Iterable[Record]) -> set[int]:
    return {r.item_id for r in records if r.item_id is not None}


class PhaseTally:
    """Per-phase figures accumulated one request at a time, so a run read back from its CSV need
    not be held as records: per phase, counters and its latencies as C doubles."""

    def __init__(self, lost_ids: frozenset = frozenset()) -> None:
        self.lost_ids = lost_ids
        self._phases: dict[str, tuple[Counter, Counter, array]] = {}  # (counts, versions, latencies)

    def add(self, r: Record) -> None:
        counts, versions, latencies = self._phases.setdefault(r.phase, (Counter(), Counter(), array("d")))
        counts["requests"] += 1
        counts["failures"] += r.failed
        counts["writes"] += r.item_id is not None
        counts["lost"] += r.item_id is not None and r.item_id in self.lost_ids
        versions[r.version or "none"] += 1
        latencies.append(r.latency_ms)

    def figures(self) -> list[PhaseFigures]:
        result = []
        for phase, (counts, versions, latencies) in self._phases.items():
            ordered = sorted(latencies)
            result.append(PhaseFigures(
                phase=phase, requests=counts["requests"], failures=counts["failures"], versions=dict(sorted(versions.items())),
                p50_ms=percentile(ordered, 50), p99_ms=percentile(ordered, 99), writes=counts["writes"], lost=counts["lost"],
            ))
        return result


def phase_figures(records: Iterable[Record], lost_ids: frozenset = frozenset()) -> list[PhaseFigures]:
    tally = PhaseTally(lost_ids)
    for record in records:
        tally.add(record)
    return tally.figures()


def flip_figures(records: Sequence[Record], label: str, to_colour: str, returned_at: float, until: float) -> FlipFigures:
    """Figures for one flip; ``until`` is when the next step began (its requests are not ours)."""
    # Requests sent before the flip may rightly finish on the old colour; any request sent after
    # the proxy confirmed it must reach the new one, keep-alive connection or not.
    after = [r for r in records if returned_at < r.started < until and not r.failed]
    stale = [r for r in after if r.colour != to_colour]
    window_start = returned_at - FLIP_LOOKBACK_S
    first_new = min((r.finished for r in records if r.colour == to_colour and r.finished >= window_start), default=None)
    users = {r.user for r in after}
    stale_users = {r.user for r in stale}
    return FlipFigures(
        label=label,
        to_colour=to_colour,
        returned_at=returned_at,
        first_new_ms=round((first_new - returned_at) * 1000, 1) if first_new is not None else None,
        stale_after_flip=len(stale),
        users_active_after=len(users),
        users_moved=len(users - stale_users),
    )


def record_fields(record: Record) -> list[str]:
    """The CSV's columns: a RequestRecord's (dataclass) or a PlainRecord's (named tuple) fields."""
    return list(record._fields) if isinstance(record, tuple) else [f.name for f in fields(record)]


def write_csv(records: Sequence[Record], path: Path) -> None:
    names = record_fields(records[0]) if records else ["started"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for record in records:
            writer.writerow([getattr(record, n) for n in names])
