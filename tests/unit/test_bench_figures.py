"""make bench's figures (loadtests/bench/figures.py) on hand-made samples, and the bench and soak
commands' bad input (one sentence, exit 1)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loadtests.bench.client import Sample
from loadtests.bench.figures import Switch, convergence_s, markdown_table, way_figures
from tests.conftest import REPO_ROOT


def ok(t: float, version: str, latency: float = 0.002) -> Sample:
    return Sample(t, t + latency, 200, version, "")


def test_convergence_is_the_last_old_or_failed_response_after_the_command():
    samples = [ok(9.9, "1"), ok(10.1, "1"), Sample(10.2, 10.3, 0, "", "connection reset"), ok(10.4, "2"), ok(10.5, "1"), ok(10.7, "2"), ok(11.0, "2")]
    switch = Switch(10.0, 10.05, "2")
    # the old version's last response finished at 10.502
    assert convergence_s(samples, switch, until=20.0) == pytest.approx(0.502)


def test_a_span_that_ends_on_an_old_response_never_converged():
    samples = [ok(10.1, "2"), ok(10.2, "1")]
    assert convergence_s(samples, Switch(10.0, 10.0, "2"), until=20.0) is None


def test_way_figures_count_failures_by_kind_and_split_switch_window_from_steady_state():
    samples = [ok(t / 10, "1", 0.001) for t in range(0, 100)]  # steady: 0..10 s, 1 ms each
    samples += [Sample(10.0 + i / 100, 10.0 + i / 100 + 0.001, 0, "", "connection refused") for i in range(5)]
    samples += [Sample(10.1, 10.2, 502, "", ""), ok(10.3, "2", 0.05), ok(10.6, "2", 0.05)]
    row = way_figures("demo", samples, [Switch(10.0, 10.01, "2")], measured_from=1.0)
    assert row.failed == 6
    assert row.failures_by_kind == {"connection refused": 5, "HTTP 502": 1}
    assert row.converge_ms == [pytest.approx(200.0)]
    assert row.switch_p50_ms == pytest.approx(50.0)  # only the new version's two answers fall in the window
    assert row.steady_p50_ms == pytest.approx(1.0)
    assert row.requests == len([s for s in samples if s.started >= 1.0])
    table = markdown_table([row])
    assert "| demo | 1 |" in table and "connection refused: 5, HTTP 502: 1" in table


@pytest.mark.parametrize("module, args, says", [
    ("loadtests.bench", ["--switches", "0"], "0 is not above 0"),
    ("loadtests.bench", ["--ways", "cutover,blue-green-magic"], "'blue-green-magic' is not a way"),
    ("loadtests.soak", ["--flips", "none"], "'none' is not a whole number"),
    ("loadtests.soak", ["--requests", "0"], "is not above 0"),
])
def test_bad_input_is_one_sentence_and_exit_1(module, args, says):
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_bench_report_has_every_way_its_switches_and_timelines(tmp_path):
    from loadtests.bench.report import WayRun, write_bench_report
    from loadtests.charts import comparison_chart

    runs = []
    for n, way in enumerate(("cutover", "stop-then-start")):
        t0 = 100.0 * n
        switches = [Switch(t0 + 2.0, t0 + 2.1, "2"), Switch(t0 + 4.0, t0 + 4.1, "1")]
        samples = [Sample(t0 + i / 10, t0 + i / 10 + 0.002, 200, "1" if i < 21 or i >= 41 else "2", "", i % 2) for i in range(60)]
        if way == "stop-then-start":
            samples[22] = Sample(t0 + 2.2, t0 + 2.201, 0, "", "connection refused", 0)
        runs.append(WayRun(way, samples, switches))
    chart = comparison_chart([{"way": r.way, "failed": 0} for r in runs], ["failed"])
    html_path, png_path = write_bench_report(runs, chart, tmp_path, "two ways")
    assert (html_path, png_path) == (tmp_path / "report.html", tmp_path / "report.png")
    assert (tmp_path / "requests.csv").read_text().count("\n") == 1 + 120
    page = html_path.read_text()
    assert "120 requests" in page and "1 failed request(s)" in page
    assert page.count('src="data:image/png;base64,') == 1 + 1 + 2  # the run, the comparison, each way's timeline
    assert "<h2>cutover: its timeline</h2>" in page and "<h2>stop-then-start: its timeline</h2>" in page
    flips = page.split("<h2>Per flip")[1].split("</table>")[0]
    assert flips.count("<tr") == 1 + 4 and "stop-then-start 1 switch to 2</td>" in flips
