"""Pure: one way's samples and switches -> its row of figures; rows -> a Markdown table.

Definitions (the README's "make bench" section says the same):
- a switch's *convergence* is the time from the switch command until every response comes from
  the new version: the finish of the last response inside the switch's span (until the next
  switch) that failed or came from another version, minus the command's start; None when the
  span ends before the new version answers everything;
- the *switch window* of a switch is from its command until it converged (at least
  MIN_WINDOW_S): latency there is that of requests sent inside it;
- *steady state* is every request sent after the warm-up and outside every switch window (and
  SETTLE_S after it).
Failures count over the whole measured run, by kind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from loadtests.bench.client import Sample
from loadtests.report import percentile

MIN_WINDOW_S = 1.0
SETTLE_S = 0.5


@dataclass(frozen=True)
class Switch:
    commanded_at: float  # wall clock, when the switch command started
    returned_at: float  # when it returned
    to_version: str
    flipped_at: float | None = None  # when the way says traffic moved, where it says so (cutover: the map flip confirmed)


@dataclass
class WayFigures:
    way: str
    switches: int
    requests: int
    failed: int
    failures_by_kind: dict[str, int]
    converge_ms_p50: float | None
    converge_ms_max: float | None
    not_converged: int  # switches whose span ended before every response came from the new version
    command_ms_p50: float  # how long the switch command itself took
    flip_ms_p50: float | None  # command start to the moment the way says traffic moved (cutover only: its preflight before the flip)
    switch_p50_ms: float
    switch_p99_ms: float
    steady_p50_ms: float
    steady_p99_ms: float
    steady_rps: float
    converge_ms: list[float | None] = field(default_factory=list)
    notes: str = ""


def convergence_s(samples: Sequence[Sample], switch: Switch, until: float) -> float | None:
    """Seconds from the command until every response finishing in [command, until) is new."""
    span = [s for s in samples if switch.commanded_at <= s.finished < until]
    if not span:
        return None
    bad = [s.finished for s in span if s.failed or s.version != switch.to_version]
    if not bad:
        return 0.0
    last_bad = max(bad)
    if not any(s.finished > last_bad for s in span):
        return None  # the span ended on an old or failed response
    return last_bad - switch.commanded_at


def way_figures(way: str, samples: Sequence[Sample], switches: Sequence[Switch], measured_from: float, notes: str = "") -> WayFigures:
    measured = [s for s in samples if s.started >= measured_from]
    ends = [sw.commanded_at for sw in switches[1:]] + [float("inf")]
    converge = [convergence_s(measured, sw, end) for sw, end in zip(switches, ends)]
    windows = [(sw.commanded_at, sw.commanded_at + max(MIN_WINDOW_S, c if c is not None else end - sw.commanded_at))
               for sw, c, end in zip(switches, converge, ends)]

    def in_window(t: float, settle: float = 0.0) -> bool:
        return any(a <= t < b + settle for a, b in windows)

    ok = [s for s in measured if not s.failed]
    switch_lat = sorted((s.finished - s.started) * 1000 for s in ok if in_window(s.started))
    steady = [s for s in ok if not in_window(s.started, SETTLE_S)]
    steady_lat = sorted((s.finished - s.started) * 1000 for s in steady)
    steady_seconds = _steady_seconds(measured, windows)
    failed = [s for s in measured if s.failed]
    done = sorted(c * 1000 for c in converge if c is not None)
    return WayFigures(
        way=way,
        switches=len(switches),
        requests=len(measured),
        failed=len(failed),
        failures_by_kind=dict(Counter(s.kind for s in failed).most_common()),
        converge_ms_p50=round(percentile(done, 50), 1) if done else None,
        converge_ms_max=round(done[-1], 1) if done else None,
        not_converged=sum(1 for c in converge if c is None),
        command_ms_p50=round(percentile(sorted((sw.returned_at - sw.commanded_at) * 1000 for sw in switches), 50), 1),
        flip_ms_p50=_flip_p50(switches),
        switch_p50_ms=percentile(switch_lat, 50),
        switch_p99_ms=percentile(switch_lat, 99),
        steady_p50_ms=percentile(steady_lat, 50),
        steady_p99_ms=percentile(steady_lat, 99),
        steady_rps=round(len(steady) / steady_seconds, 1) if steady_seconds > 0 else 0.0,
        converge_ms=[round(c * 1000, 1) if c is not None else None for c in converge],
        notes=notes,
    )


def _flip_p50(switches: Sequence[Switch]) -> float | None:
    known = sorted((sw.flipped_at - sw.commanded_at) * 1000 for sw in switches if sw.flipped_at is not None)
    return round(percentile(known, 50), 1) if known else None


def _steady_seconds(measured: Sequence[Sample], windows: Iterable[tuple[float, float]]) -> float:
    if not measured:
        return 0.0
    start = min(s.started for s in measured)
    end = max(s.started for s in measured)
    excluded = sum(max(0.0, min(b + SETTLE_S, end) - max(a, start)) for a, b in windows)
    return max(0.0, end - start - excluded)


COLUMNS = (
    ("way", "way"), ("switches", "switches"), ("requests", "requests"), ("failed", "failed"),
    ("failures by kind", "failures_by_kind"), ("converged p50 ms", "converge_ms_p50"), ("converged max ms", "converge_ms_max"),
    ("never converged", "not_converged"), ("command p50 ms", "command_ms_p50"), ("flip after p50 ms", "flip_ms_p50"),
    ("switch p50 ms", "switch_p50_ms"), ("switch p99 ms", "switch_p99_ms"),
    ("steady p50 ms", "steady_p50_ms"), ("steady p99 ms", "steady_p99_ms"), ("steady req/s", "steady_rps"),
)


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


def markdown_table(rows: Sequence[WayFigures]) -> str:
    head = "| " + " | ".join(title for title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" if i == 0 or key in ("failures_by_kind",) else "---:" for i, (_, key) in enumerate(COLUMNS)) + "|"
    body = ["| " + " | ".join(_cell(getattr(row, key)) for _, key in COLUMNS) + " |" for row in rows]
    notes = [f"- {row.way}: {row.notes}" for row in rows if row.notes]
    return "\n".join([head, rule, *body, *([""] + notes if notes else [])])
