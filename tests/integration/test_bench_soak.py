"""The short forms of make bench and make soak, for real: 2 switches per way and a 3-flip soak on
one small stack (`benchtest`, ports 19932-19937; the bench leaves it up for the soak, which removes
it). They prove the harness runs and counts, and that each writes its cutover report (report.html and
report.png beside requests.csv), never
how fast anything is: speed is for the full-size runs' printed figures.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from loadtests.bench.stack import write_stack
from loadtests.charts import DPI, TIMELINE_INCHES
from stacks.spec import load_stack
from tests.conftest import REPO_ROOT, remove_stale_app_images

pytestmark = pytest.mark.docker

# A helper working beside others runs these on a stack and ports of its own.
STACK = os.environ.get("BENCHTEST_STACK", "benchtest")
BASE_PORT = int(os.environ.get("BENCHTEST_PORT", "19932"))


def run(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def assert_report(directory, requests: int, flips: int, charts: int) -> None:
    """report.html and report.png beside requests.csv: a PNG of the timeline's size, a page that
    embeds it and every extra chart, counts the run's requests and has a row per flip."""
    png = (directory / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == tuple(int(inches * DPI) for inches in TIMELINE_INCHES)
    page = (directory / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count('src="data:image/png;base64,') == 1 + charts and "<script" not in page
    assert f"<p class=\"summary\">{requests} requests in " in page
    assert page.split("<h2>Per flip")[1].split("</table>")[0].count("<tr") == 1 + flips  # header + one per flip


def test_bench_short_form_measures_every_way(tmp_path):
    # A version stays bound to its source: forget images of another source, reuse those of this one.
    remove_stale_app_images(load_stack(STACK, write_stack(STACK, BASE_PORT)))
    result = run("loadtests.bench", "--stack", STACK, "--base-port", str(BASE_PORT), "--switches", "2", "--connections", "4",
                 "--warmup", "0.5", "--steady", "1", "--hold", "0.5", "--out", str(tmp_path))
    print(result.stdout[-3000:], result.stderr[-2000:])
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "results.json").read_text())["ways"]
    assert [r["way"] for r in rows] == ["cutover (HAProxy map flip)", "stop-then-start", "nginx reload", "HAProxy reload", "Caddy /load"]
    for row in rows:
        assert row["switches"] == 2 and row["requests"] > 0 and len(row["converge_ms"]) == 2
        assert row["failed"] == sum(row["failures_by_kind"].values())
    assert "| way |" in (tmp_path / "results.md").read_text()
    assert_report(tmp_path, requests=sum(r["requests"] for r in rows), flips=2 * len(rows), charts=1 + len(rows))


def test_soak_short_form_counts_requests_flips_and_writes(tmp_path):
    result = run("loadtests.soak", "--stack", STACK, "--live-port", str(BASE_PORT), "--requests", "300", "--flips", "3",
                 "--flip-every", "1", "--users", "4", "--out", str(tmp_path), "--down")
    print(result.stdout[-3000:], result.stderr[-2000:])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] >= 300 and summary["flips"] == 3
    assert summary["first_response_from_new_colour_ms"]["count"] + summary["first_response_from_new_colour_ms"]["flips_with_none"] == 3
    assert summary["writes_acknowledged"] > 0 and "writes_lost" in summary
    lines = (tmp_path / "requests.csv").read_text().count("\n")
    assert lines == summary["requests"] + 1  # every request recorded, plus the header
    assert_report(tmp_path, requests=summary["requests"], flips=3, charts=0)
    assert result.returncode in (0, 1)  # the verdict is the soak's to give, not this test's
