"""The bench's cutover report: every way's requests in one CSV, and beside it report.html and
report.png (loadtests/html_report.py), the same report a rehearsal writes.

A bench sample (loadtests/bench/client.py) becomes a report record: its phase is the way, its user
the connection that sent it, and its "colour" the version that answered — the ways other than
cutover have no colours, and a switch is judged by the version it should bring, so a request sent
after the switch returned and answered by the old version counts as stale. The PNG is the whole
run's timeline, the ways one after the other (a line where each began); the HTML adds the five ways'
comparison chart and each way's own timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from loadtests.bench.client import Sample
from loadtests.bench.figures import Switch
from loadtests.charts import FlipMark, flip_marks, timeline, timeline_figure
from loadtests.html_report import write_report
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


def write_bench_report(runs: Sequence[WayRun], comparison: Figure, out: Path, title: str) -> tuple[Path, Path]:
    """requests.csv, report.html and report.png in ``out``; returns (html path, png path)."""
    per_way = [(run, records_of(run)) for run in runs]
    records = [r for _, way_records in per_way for r in way_records]
    flips = [f for run, way_records in per_way for f in switch_figures(run, way_records)]
    csv_path = out / "requests.csv"
    write_csv(records, csv_path)
    t0 = min((r.started for r in records), default=0.0)
    starts = [FlipMark(round(min(r.started for r in way_records) - t0, 3), "phase", run.way) for run, way_records in per_way if way_records]
    charts: list[tuple[str, Figure]] = [("the ways side by side", comparison)]
    for run, way_records in per_way:
        if way_records:
            line = timeline(way_records)
            marks = [FlipMark(round(m.at_s, 3), "switch", m.label.rsplit(" switch ", 1)[-1]) for m in flip_marks(switch_figures(run, way_records), line.t0)]
            charts.append((f"{run.way}: its timeline", timeline_figure(line, marks, f"{run.way}: {len(run.switches)} switches")))
    return write_report(records, phase_figures(records), flips, csv_path, title, extra_charts=charts, stem="report", marks=starts)
