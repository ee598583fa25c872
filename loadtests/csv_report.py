"""The cutover report of a run whose record is on disk: the soak's million requests.

Holding a million request records in memory costs hundreds of megabytes (the figure is in the
README's "make soak" section, measured by ``python -m loadtests.csv_report --measure``), so the
report is built from the CSV the soak streamed, read twice, one row at a time: the first pass
finds the run's start and end (the timeline's buckets depend on its length), the second feeds
each row to the timeline and the per-phase tally, which keep only counters and each request's
latency as a C double. The per-flip figures were computed during the run (loadtests/soak_record.py).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Iterator, Sequence

from loadtests.charts import TimelineBuilder, flip_marks, timeline
from loadtests.html_report import RunFigures, RunTotals, write_figures
from loadtests.report import FlipFigures, PhaseTally, PlainRecord


def read_records(path: Path) -> Iterator[PlainRecord]:
    with open(path, newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None:
            return
        at = {name: i for i, name in enumerate(header)}
        for row in rows:
            yield PlainRecord(
                started=float(row[at["started"]]), finished=float(row[at["finished"]]), phase=row[at["phase"]],
                status=int(row[at["status"]]), version=row[at["version"]], colour=row[at["colour"]],
                latency_ms=float(row[at["latency_ms"]]), user=int(row[at["user"]]), error=row[at["error"]],
                item_id=row[at["item_id"]] or None,  # the CSV has no types: ids are compared as text
            )


def report_from_csv(
    csv_path: Path,
    flips: Sequence[FlipFigures],
    title: str,
    lost_ids: frozenset = frozenset(),
    stem: str = "report",
) -> tuple[Path, Path]:
    """Write ``<stem>.html`` and ``<stem>.png`` beside ``csv_path``; return their paths."""
    requests, t0, end = 0, float("inf"), float("-inf")
    for r in read_records(csv_path):
        requests += 1
        t0, end = min(t0, r.started), max(end, r.finished)
    if not requests:
        return write_figures(RunFigures(timeline([]), [], RunTotals(0, 0, 0.0), [], flips), csv_path, title, stem=stem)
    line = TimelineBuilder(t0, end)
    tally = PhaseTally(frozenset(str(i) for i in lost_ids))
    failures = 0
    for r in read_records(csv_path):
        line.add(r)
        tally.add(r)
        failures += r.failed
    figures = RunFigures(line.build(), flip_marks(flips, t0), RunTotals(requests, failures, end - t0), tally.figures(), flips)
    return write_figures(figures, csv_path, title, stem=stem)


def _measure(rows: int, directory: Path) -> None:
    """Peak memory of the report of ``rows`` synthetic requests with 100 flips, streamed from disk
    (this process) and, for comparison, held as records (a child process: peaks do not mix)."""
    import resource
    import subprocess
    import time

    csv_path = directory / "requests.csv"
    t0 = 1_700_000_000.0
    rate = 250.0  # requests/s, about the soak's
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PlainRecord._fields)
        for i in range(rows):
            colour = (i // 1500) % 2
            writer.writerow([t0 + i / rate, t0 + i / rate + 0.004, "soak", 200, ("1.0.0", "2.0.0")[colour], ("blue", "green")[colour],
                             4.0 + (i % 97) / 10, i % 20, "", i if i % 4 == 0 else ""])
    flips = [FlipFigures(f"{n} {'rollback' if n % 2 == 0 else 'switch'} to {('blue', 'green')[n % 2]}", ("blue", "green")[n % 2],
                         t0 + n * rows / rate / 101, 2.0, 0, 20, 20) for n in range(1, 101)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    html_path, png_path = report_from_csv(csv_path, flips, f"{rows:,} synthetic requests, 100 flips")
    print(f"streamed from the CSV: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
          f"(before the report: {before / 1024:.0f} MiB), {time.monotonic() - started:.1f} s; {html_path}, {png_path}")
    held = subprocess.run([sys.executable, "-c", _HELD.format(csv=str(csv_path))], capture_output=True, text=True, check=True)
    print(held.stdout.strip())


# The alternative, measured: every row held as a record, then the in-memory report.
_HELD = """
import resource, time
from pathlib import Path
from loadtests.csv_report import read_records
from loadtests.html_report import write_report
from loadtests.report import phase_figures
started = time.monotonic()
records = list(read_records(Path({csv!r})))
write_report(records, phase_figures(records), [], Path({csv!r}), "held", stem="held")
print(f"held as records: peak RSS {{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}} MiB, {{time.monotonic() - started:.1f}} s")
"""


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m loadtests.csv_report",
                                     description="Measure the peak memory of a soak-sized report, streamed from its CSV and held in memory.")
    parser.add_argument("--measure", type=int, default=1_000_000, metavar="ROWS", help="synthetic requests (default: 1,000,000)")
    parser.add_argument("--dir", default="soak-memory", help="where the synthetic CSV and reports go (default: soak-memory)")
    args = parser.parse_args()
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    _measure(args.measure, Path(args.dir))
