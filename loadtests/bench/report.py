"""The bench's cutover report: every way's requests in one CSV, and beside it report.html and
report.png (loadtests/html_report.py), the same report a rehearsal writes.

A bench sample (loadtests/bench/client.py) becomes a report record: its phase is the way, its user
the connection that sent it, and its "colour" the version that answered — the ways other than
cutover have no colours, and a switch is judged by the version it should bring, so a request sent
after the switch returned and answered by the old version counts as stale. The PNG is the whole
run's timeline, the ways one after the other (a line where each began, one where each switch was
commanded); the HTML adds the five ways' comparison chart and each way's own timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from loadtests.bench.client import Sample
from loadtests.bench.figures import Switch
from loadtests.charts import FlipMark, timeline, timeline_figure
from loadtests.html_report import RunFigures, RunTotals, write_figures
from loadtests.report import FlipFigures, PlainRecord, flip_figures, phase_figures, write_csv


@dataclass(frozen=True)
class WayRun:
    """What one way's measurement leaves for the report."""

    way: str
    samples: Sequence[Sample]
    switches: Sequence[Switch]


def records_of(run: WayRun) -> list[PlainRecord]:
    return [PlainRecord(s.started, s.finished, run.way, s.status, s.version, s.version, round((s.finished - s.started) * 1000, 3),
                        s.connection, s.error) for s in run.samples]


def switch_figures(run: WayRun, records: Sequence[PlainRecord]) -> list[FlipFigures]:
    """A flip row per switch, timed from when the way says traffic moved (cutover: the map flip
    confirmed) or else from when its command returned; a switch's span ends at the next command."""
    ends = [sw.commanded_at for sw in run.switches[1:]] + [float("inf")]
    return [flip_figures(records, f"{run.way} {n} switch to {sw.to_version}", sw.to_version, sw.flipped_at or sw.returned_at, end)
            for n, (sw, end) in enumerate(zip(run.switches, ends), start=1)]


def switch_marks(run: WayRun, t0: float) -> list[FlipMark]:
    """A line where each switch was commanded: what follows it (refused connections while a
    container restarts, a reload's resets) belongs to the switch, however long its command took."""
    return [FlipMark(round(sw.commanded_at - t0, 3), "switch", f"to {sw.to_version}") for sw in run.switches]


def write_bench_report(runs: Sequence[WayRun], comparison: Figure, out: Path, title: str) -> tuple[Path, Path]:
    """requests.csv, report.html and report.png in ``out``; returns (html path, png path)."""
    per_way = [(run, records_of(run)) for run in runs if run.samples]
    records = [r for _, way_records in per_way for r in way_records]
    flips = [f for run, way_records in per_way for f in switch_figures(run, way_records)]
    csv_path = out / "requests.csv"
    write_csv(records, csv_path)
    line = timeline(records)
    marks = [mark for run, way_records in per_way
             for mark in [FlipMark(round(min(r.started for r in way_records) - line.t0, 3), "phase", run.way), *switch_marks(run, line.t0)]]
    charts: list[tuple[str, Figure]] = [("the ways side by side", comparison)]
    for run, way_records in per_way:
        own = timeline(way_records)
        charts.append((f"{run.way}: its timeline", timeline_figure(own, switch_marks(run, own.t0), f"{run.way}: {len(run.switches)} switches")))
    return write_figures(RunFigures(line, marks, RunTotals.of(records), phase_figures(records), flips), csv_path, title, charts, stem="report")
