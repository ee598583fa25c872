"""The cutover report: the figures that go into its charts (pure), and its two files — an HTML page
that needs nothing but itself, and a PNG of the expected size."""

from __future__ import annotations

import base64
import re
import struct

import pytest
from request_records import request

from loadtests.charts import (DPI, MAX_BUCKETS, MAX_LABELLED_MARKS, TIMELINE_INCHES, FlipMark, bucket_seconds, comparison_chart, deploy_marks,
                              flip_marks, timeline, timeline_figure)
from loadtests.csv_report import read_records, report_from_csv
from loadtests.html_report import report_paths, write_report
from loadtests.report import FlipFigures, PlainRecord, flip_figures, phase_figures, write_csv

T0 = 1_700_000_000.0


def rec(at: float, latency_ms: float = 10.0, **kw) -> PlainRecord:
    """A rehearsal's request: in its baseline, from 1.0.0, unless told otherwise."""
    return request(T0 + at, T0 + at + latency_ms / 1000, latency_ms=latency_ms, **{"phase": "0 baseline", "version": "1.0.0", **kw})


def flip(label: str, at: float, to: str = "green") -> FlipFigures:
    return FlipFigures(label, to, T0 + at, 1.0, 0, 1, 1)


# -- the figures ------------------------------------------------------------------------------


def test_requests_per_second_by_version_served_with_failures_apart():
    records = [rec(0.1), rec(0.2), rec(0.5, version="2.0.0", colour="green"),
               rec(1.1, version="2.0.0"), rec(1.2, status=503, version="2.0.0"), rec(1.3, error="ConnectionResetError", status=0, version="")]
    line = timeline(records)
    assert line.bucket_s == 1.0 and line.starts == [0.0, 1.0] and line.t0 == T0 + 0.1
    # Buckets count from the first request (sent at 0.1 s): the one sent at 1.1 s is in the second.
    assert line.per_version == {"1.0.0": [2.0, 0.0], "2.0.0": [1.0, 1.0]}
    assert line.failures == [0.0, 2.0]  # a 503 and a reset: failures, not rate of their version


def test_a_request_counts_when_it_finished():
    line = timeline([rec(0.0), rec(0.5, latency_ms=1200.0)])
    assert line.per_version["1.0.0"] == [1.0, 1.0]
    assert line.p99_ms[1] == 1200.0


def test_latency_percentiles_per_bucket_and_gaps():
    records = [rec(i / 200, latency_ms=float(i + 1)) for i in range(100)] + [rec(3.5, latency_ms=7.0)]
    line = timeline(records)
    assert len(line.starts) == 4
    assert line.p50_ms[0] == pytest.approx(50.5) and line.p99_ms[0] == pytest.approx(99.01)
    assert line.p50_ms[1] is None and line.p99_ms[2] is None  # nothing finished: a gap, not a zero
    assert line.p50_ms[3] == 7.0


def test_long_runs_get_wider_buckets():
    assert bucket_seconds(30) == 1.0 and bucket_seconds(MAX_BUCKETS) == 1.0
    assert bucket_seconds(MAX_BUCKETS + 1) == 2.0 and bucket_seconds(3600) == 6.0
    line = timeline([rec(0), rec(3599)])
    assert line.bucket_s == 6.0 and len(line.starts) == 600
    assert line.per_version["1.0.0"][0] == pytest.approx(1 / 6)


def test_flips_become_labelled_marks_on_the_time_axis():
    marks = flip_marks([flip("2 after switch to green (2.0.0)", 8.25), flip("3 after rollback to blue (1.0.0)", 16.0, "blue")], T0)
    assert [(m.at_s, m.kind, m.label) for m in marks] == [
        (8.25, "switch", "switch to green (2.0.0)"), (16.0, "rollback", "rollback to blue (1.0.0)")]


def test_a_deploy_is_marked_where_its_phase_began():
    records = [rec(0.0), rec(5.5, phase="1 after deploy 2.0.0 to green"), rec(5.0, phase="1 after deploy 2.0.0 to green"),
               rec(9.0, phase="2 after switch to green (2.0.0)")]
    assert [(m.at_s, m.kind, m.label) for m in deploy_marks(records, T0)] == [(5.0, "deploy", "deployed 2.0.0 to green")]


def test_no_records_no_buckets():
    line = timeline([])
    assert line.starts == [] and line.per_version == {} and line.failures == []


def test_comparison_chart_one_panel_per_metric():
    rows = [{"way": "cutover", "failed": 0, "p99_ms": 12.5}, {"way": "stop-then-start", "failed": 800, "p99_ms": None}]
    figure = comparison_chart(rows, ["failed", "p99_ms"])
    assert [axis.get_title() for axis in figure.axes] == ["failed", "p99_ms"]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["cutover", "stop-then-start"]
    assert [t.get_text() for t in figure.axes[1].texts] == ["12.5", "n/a"]  # a missing figure says so
    with pytest.raises(ValueError):
        comparison_chart([], ["failed"])


# -- the files --------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def a_run() -> tuple[list[PlainRecord], list, list[FlipFigures]]:
    records = []
    for i in range(400):
        at = i * 0.05
        after = at > 10
        records.append(rec(at, latency_ms=5.0 + i % 7, user=i % 4, phase="2 after switch to green (2.0.0)" if after else "0 <baseline> & co",
                           version="2.0.0" if after else "1.0.0", colour="green" if after else "blue",
                           status=500 if i == 300 else 200))
    flips = [flip_figures(records, "2 after switch to green (2.0.0)", "green", T0 + 10.0, until=float("inf"))]
    return records, phase_figures(records), flips


def test_the_report_is_two_files_beside_the_csv(tmp_path):
    records, phases, flips = a_run()
    csv_path = tmp_path / "rehearsal-1.csv"
    html_path, png_path = write_report(records, phases, flips, csv_path, "a rehearsal")
    assert (html_path, png_path) == report_paths(csv_path) == (tmp_path / "rehearsal-1.html", tmp_path / "rehearsal-1.png")
    assert png_size(png_path.read_bytes()) == (int(TIMELINE_INCHES[0] * DPI), int(TIMELINE_INCHES[1] * DPI))


def test_the_html_needs_nothing_but_itself(tmp_path):
    records, phases, flips = a_run()
    extra = comparison_chart([{"way": "cutover", "failed": 0}], ["failed"])
    html_path, png_path = write_report(records, phases, flips, tmp_path / "run.csv", "a rehearsal", extra_charts=[("five ways", extra)])
    page = html_path.read_text()
    # No address to fetch: no http(s) source or link, no script, no stylesheet link, no url().
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"<script|<link|@import|url\(", page, re.I)
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    # The timeline in the page is the PNG beside it, byte for byte; the extra chart is a PNG too.
    assert base64.b64decode(sources[0].split(",", 1)[1]) == png_path.read_bytes()
    png_size(base64.b64decode(sources[1].split(",", 1)[1]))
    assert "<h2>five ways</h2>" in page


def test_the_html_carries_the_tables_escaped(tmp_path):
    records, phases, flips = a_run()
    page = write_report(records, phases, flips, tmp_path / "run.csv", "rehearsal <dev>")[0].read_text()
    assert "<title>rehearsal &lt;dev&gt;</title>" in page
    assert "<td class=\"text\">0 &lt;baseline&gt; &amp; co</td>" in page  # a phase name is text, not markup
    assert page.count('<tr class="bad">') == 1  # the phase with the failed request is marked
    assert "2 after switch to green (2.0.0)</td>" in page and "stale responses after flip" in page
    assert "400 requests" in page and "1 failed request(s)" in page


def test_a_run_without_requests_still_gets_a_report(tmp_path):
    html_path, png_path = write_report([], [], [], tmp_path / "empty.csv", "nothing happened")
    assert "0 requests" in html_path.read_text() and "no flip in this run" in html_path.read_text()
    assert png_size(png_path.read_bytes()) == (1200, 700)


# -- a run too long to hold: the report from its CSV (the soak) ---------------------------------


def test_the_report_from_the_csv_says_what_the_records_say(tmp_path):
    records, phases, flips = a_run()
    records = [r._replace(item_id=i) if i % 10 == 0 else r for i, r in enumerate(records)]
    csv_path = tmp_path / "requests.csv"
    write_csv(records, csv_path)
    lost = frozenset({20, 30})
    html_path, png_path = report_from_csv(csv_path, flips, "a soak", lost)
    assert (html_path, png_path) == report_paths(csv_path, "report") == (tmp_path / "report.html", tmp_path / "report.png")
    streamed = list(read_records(csv_path))
    assert [tuple(r) for r in streamed] == [(*r[:9], None if r.item_id is None else str(r.item_id)) for r in records]
    assert timeline(streamed) == timeline(records)
    assert phase_figures(streamed, frozenset({"20", "30"})) == phase_figures(records, lost)
    page = html_path.read_text()
    assert "400 requests in 20.0 s" in page and "1 failed request(s)" in page
    # the writes of each phase, the 2 lost ones in the first, in the per-phase table
    assert "<td>21</td><td>2</td>" in page and "<td>19</td><td>0</td>" in page
    assert png_size(png_path.read_bytes()) == (int(TIMELINE_INCHES[0] * DPI), int(TIMELINE_INCHES[1] * DPI))


def test_many_flips_are_lines_without_labels_and_counted_in_the_legend():
    line = timeline([rec(i * 1.0) for i in range(300)])
    many = [FlipMark(i * 2.5, "switch" if i % 2 else "rollback", f"flip {i}") for i in range(MAX_LABELLED_MARKS + 1)]
    few = [FlipMark(5.0, "phase", "nginx reload")]
    figure = timeline_figure(line, many + few, "a soak")
    rate_axis = figure.axes[0]
    assert [t.get_text().strip() for t in rate_axis.texts] == ["nginx reload"]
    legend = [t.get_text() for t in rate_axis.get_legend().get_texts()]
    assert legend == ["v1.0.0 served", "phase (1)", "rollback (13)", "switch (12)"]
    # One flip fewer, and every flip is labelled again.
    assert len(timeline_figure(line, many[:-1], "a soak").axes[0].texts) == MAX_LABELLED_MARKS
