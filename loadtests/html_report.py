"""The cutover report: one self-contained HTML page and one PNG, written next to a run's CSV.

The HTML carries its CSS inline and every picture as a base64 ``data:`` URI — no script, no link to
any other file — so it can be attached to a CI run, mailed, or opened offline. The PNG is the same
timeline on its own, for terminals and CI artefact viewers.

Other tools call ``write_report`` (rehearsals, the demo, the bench) and pass extra figures, e.g. the
bench's ``charts.comparison_chart``; the soak, whose record lives on disk, calls
``write_figures`` with figures built from its CSV.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from loadtests.charts import FlipMark, Timeline, deploy_marks, flip_marks, png_bytes, timeline, timeline_figure
from loadtests.report import FlipFigures, PhaseFigures, Record

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1240px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td.text, th:first-child { text-align: left; }
tr.bad td { background: #fde2e2; }
img { max-width: 100%; border: 1px solid #ddd; }
.summary { font-size: 0.95em; } .ok { color: #1a7f37; } .failed { color: #c62828; font-weight: bold; }
"""


@dataclass(frozen=True)
class RunTotals:
    """The headline of a report: what the page says before its tables."""

    requests: int
    failures: int
    duration_s: float

    @classmethod
    def of(cls, records: Sequence[Record]) -> "RunTotals":
        duration = (max(r.finished for r in records) - min(r.started for r in records)) if records else 0.0
        return cls(len(records), sum(1 for r in records if r.failed), duration)


def report_paths(out_csv_path: Path, stem: str | None = None) -> tuple[Path, Path]:
    """The report's two files sit beside the CSV and share its name (run.csv -> run.html, run.png),
    or are named ``stem`` (the soak's requests.csv -> report.html, report.png)."""
    out_csv_path = Path(out_csv_path)
    base = out_csv_path.with_name(stem) if stem else out_csv_path.with_suffix("")
    return base.with_suffix(".html"), base.with_suffix(".png")


@dataclass(frozen=True)
class RunFigures:
    """Everything a report shows: the timeline and the lines drawn on it, the headline, the tables."""

    line: Timeline
    marks: Sequence[FlipMark]
    totals: RunTotals
    phases: Sequence[PhaseFigures]
    flips: Sequence[FlipFigures]

    @classmethod
    def of(cls, records: Sequence[Record], phases: Sequence[PhaseFigures], flips: Sequence[FlipFigures]) -> "RunFigures":
        """A run held as records (a rehearsal): deploys and flips marked where they happened."""
        line = timeline(records)
        marks = [*deploy_marks(records, line.t0), *flip_marks(flips, line.t0)] if records else []
        return cls(line, marks, RunTotals.of(records), phases, flips)


def write_report(
    records: Sequence[Record],
    phases: Sequence[PhaseFigures],
    flips: Sequence[FlipFigures],
    out_csv_path: Path,
    title: str,
    extra_charts: Sequence[Figure | tuple[str, Figure]] = (),
    stem: str | None = None,
) -> tuple[Path, Path]:
    """Write ``<csv stem>.html`` and ``<csv stem>.png`` (or ``<stem>.*``); return (html path, png path).

    ``extra_charts`` are figures (or (caption, figure) pairs) added to the HTML after the tables."""
    return write_figures(RunFigures.of(records, phases, flips), out_csv_path, title, extra_charts, stem)


def write_figures(figures: RunFigures, out_csv_path: Path, title: str, extra_charts: Sequence[Figure | tuple[str, Figure]] = (),
                  stem: str | None = None) -> tuple[Path, Path]:
    """``write_report`` from figures already computed: a run too long to hold as records (the soak)
    builds its timeline and tables from its CSV (loadtests/csv_report.py) and comes here, and so
    does one that marks its own lines (the bench: where each way began, each switch commanded)."""
    html_path, png_path = report_paths(out_csv_path, stem)
    png = png_bytes(timeline_figure(figures.line, sorted(figures.marks, key=lambda m: m.at_s), title))
    png_path.write_bytes(png)
    extras = [(item if isinstance(item, tuple) else ("", item)) for item in extra_charts]
    page = render_html(figures, title, png, [(caption, png_bytes(figure)) for caption, figure in extras], csv_name=Path(out_csv_path).name)
    html_path.write_text(page, encoding="utf-8")
    return html_path, png_path


def render_html(figures: RunFigures, title: str, timeline_png: bytes, extras: Sequence[tuple[str, bytes]] = (), csv_name: str = "") -> str:
    """The page as a string (pure apart from the clock in its footer)."""
    e = html.escape
    totals, phases, flips = figures.totals, figures.phases, figures.flips
    failures, duration = totals.failures, totals.duration_s
    stale = sum(f.stale_after_flip for f in flips)
    rate = f"{totals.requests / duration:.1f}/s" if duration else "n/a"
    verdict = ('<span class="ok">no request failed, none reached the old colour after a flip</span>'
               if not failures and not stale else
               f'<span class="failed">{failures} failed request(s), {stale} stale response(s) after a flip</span>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="summary">{totals.requests} requests in {duration:.1f} s ({rate}), '
        f"{len(flips)} flip(s): {verdict}.</p>",
        f'<img alt="timeline: requests per second by version served, latency, flips" src="{_data_uri(timeline_png)}">',
        "<h2>Per phase</h2>",
        _phase_table(phases),
        "<h2>Per flip <small>(times relative to the proxy confirming the flip)</small></h2>",
        _flip_table(flips),
    ]
    for caption, png in extras:
        if caption:
            parts.append(f"<h2>{e(caption)}</h2>")
        parts.append(f'<img alt="{e(caption or "chart")}" src="{_data_uri(png)}">')
    source = f"every request is in {e(csv_name)}, beside this file; " if csv_name else ""
    parts.append(f'<p class="summary">{source}written {time.strftime("%Y-%m-%d %H:%M:%S %Z")} by cutover.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _phase_table(phases: Sequence[PhaseFigures]) -> str:
    writes = any(p.writes for p in phases)
    head = ["phase", "requests", "failures", *(["writes", "lost"] if writes else []), "versions served", "p50 ms", "p99 ms"]
    rows = []
    for p in phases:
        versions = ", ".join(f"{v}: {n}" for v, n in p.versions.items())
        cells = [_td(p.phase, text=True), _td(p.requests), _td(p.failures),
                 *([_td(p.writes), _td(p.lost)] if writes else []),
                 _td(versions, text=True), _td(f"{p.p50_ms:.1f}"), _td(f"{p.p99_ms:.1f}")]
        rows.append(_tr(cells, bad=bool(p.failures or p.lost)))
    return _table(head, rows)


def _flip_table(flips: Sequence[FlipFigures]) -> str:
    if not flips:
        return "<p>no flip in this run.</p>"
    head = ["flip", "first response from new colour", "stale responses after flip", "users moved"]
    rows = []
    for f in flips:
        first = "none" if f.first_new_ms is None else f"{f.first_new_ms:+.1f} ms"
        cells = [_td(f.label, text=True), _td(first), _td(f.stale_after_flip), _td(f"{f.users_moved}/{f.users_active_after}")]
        rows.append(_tr(cells, bad=bool(f.stale_after_flip) or f.first_new_ms is None))
    return _table(head, rows)


def _td(value: object, text: bool = False) -> str:
    opening = '<td class="text">' if text else "<td>"
    return f"{opening}{html.escape(str(value))}</td>"


def _tr(cells: list[str], bad: bool) -> str:
    opening = '<tr class="bad">' if bad else "<tr>"
    return opening + "".join(cells) + "</tr>"


def _table(head: list[str], rows: list[str]) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
