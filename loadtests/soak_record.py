"""The soak's record, streamed: requests go to CSV once no flip's figures can still need them.

Pure of Locust (unit-tested on hand-made records): ``load`` is anything with a ``records`` list
that the load appends to (loadtests/runner.py LoadRun).
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

from loadtests.report import FLIP_LOOKBACK_S, FlipFigures, flip_figures, record_fields


class StreamedRecord:
    """The load's records, flushed to CSV once no flip figure needs them; counts kept as it goes."""

    def __init__(self, load, path: Path) -> None:
        self.load = load
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "w", newline="")
        self._writer = csv.writer(self._handle)
        self._names: list[str] = []  # the record's fields, from the first one flushed
        self.flushed = 0
        self.failures: Counter[str] = Counter()
        self.acknowledged: set = set()
        self.versions: Counter[str] = Counter()
        self.latencies_sample: list[float] = []  # every 10th request's latency: percentiles without a million floats

    @property
    def total(self) -> int:
        return self.flushed + len(self.load.records)

    def flush(self, before: float) -> None:
        """Write out (and forget) every record that finished before ``before``."""
        records = self.load.records
        keep = [r for r in records if r.finished >= before]
        gone = [r for r in records if r.finished < before]
        # Runs between two greenlet switches (no I/O above): no request can report in between.
        self.load.records = keep
        if gone and not self._names:
            self._names = record_fields(gone[0])
            self._writer.writerow(self._names)
        for r in gone:
            self._writer.writerow([getattr(r, n) for n in self._names])
            if r.failed:
                self.failures[r.error or f"HTTP {r.status}"] += 1
            if r.item_id is not None:
                self.acknowledged.add(r.item_id)
            self.versions[r.version or "none"] += 1
            if self.flushed % 10 == 0:
                self.latencies_sample.append(r.latency_ms)
            self.flushed += 1

    def close(self) -> None:
        self.flush(float("inf"))
        self._handle.close()


def figure_ready(pending: list, flips: list[FlipFigures], record: StreamedRecord, settled_before: float) -> None:
    """Figures for each pending flip whose span ended before ``settled_before``; then flush what no
    pending flip can still need (it looks back FLIP_LOOKBACK_S before its own flip)."""
    while pending and pending[0][3] < settled_before:
        label, colour, at, until = pending.pop(0)
        flips.append(flip_figures(record.load.records, label, colour, at, until))
    if settled_before == float("inf"):
        for label, colour, at, until in pending:
            flips.append(flip_figures(record.load.records, label, colour, at, until))
        pending.clear()
        return
    oldest = pending[0][2] if pending else time.time()
    record.flush(min(oldest, time.time()) - FLIP_LOOKBACK_S - 1.0)
