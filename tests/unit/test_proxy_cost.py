"""The proxy-cost benchmark's pure parts: merging wrk processes' latencies, splitting connections,
one concurrency's row and its ratios, and bad arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from loadtests.latency_figures import Run, WrkResult, by_name, latency_bands, merged_percentile, parse_wrk_output, split, summarise

REPO_ROOT = Path(__file__).resolve().parents[2]


def result(requests: int, quantiles_ms: list[float]) -> WrkResult:
    return WrkResult(requests, 1.0, dict.fromkeys(("connect", "read", "write", "status", "timeout"), 0), [int(q * 1000) for q in quantiles_ms], 0.0)


def test_merged_percentile_weights_each_process_by_its_requests():
    fast = result(900, [1.0] * 10)
    slow = result(100, [50.0] * 10)
    assert merged_percentile([fast, slow], 50) == 1.0
    assert merged_percentile([fast, slow], 95) == 50.0
    # Equal weights: the median falls on the faster half.
    assert merged_percentile([result(100, [1.0] * 10), result(100, [50.0] * 10)], 50) == 1.0
    assert merged_percentile([], 99) == 0.0


def test_split_spreads_connections_without_an_empty_process():
    assert split(10, 2) == [5, 5]
    assert split(11, 2) == [6, 5]
    assert split(3, 3) == [1, 1, 1]
    assert sum(split(101, 4)) == 101


def test_parse_wrk_output_reads_the_done_line_after_wrks_report():
    text = 'Running 1s test @ http://x\n  1 threads\n{"requests": 5, "duration_us": 1000000, "connect": 0, "read": 0, "write": 0, "status": 1, "timeout": 0, "q": [1, 2]}\n'
    assert parse_wrk_output(text)["status"] == 1


def run(target: str, rps: float, p99: float, failures: int = 0) -> Run:
    return Run(target, 10, 1, int(rps), 1.0, rps, failures, {"status": failures}, 1.0, p99, {"wrk": 10.0})


def test_summarise_gives_ratios_and_no_max_rate_when_requests_failed():
    row = summarise([run("proxy", 900, 12), run("direct", 1000, 10)], 10)
    assert row["ratios"] == {"rate": 0.9, "p50": 1.0, "p99": 1.2}
    assert row["meets_goals"] is True
    row = summarise([run("proxy", 800, 13, failures=3), run("direct", 1000, 10)], 10)
    assert row["proxy"]["max_rps_0_failures"] is None
    assert row["meets_goals"] is False


# Each module runs in a process of its own, as its CLI does: importing it imports Locust.
@pytest.mark.parametrize("argv", [
    ["loadtests.proxy_cost", "--concurrency", "10,x"], ["loadtests.proxy_cost", "--concurrency", "0"],
    ["loadtests.proxy_cost", "--seconds", "0"], ["loadtests.proxy_cost", "--path", "version"],
    ["loadtests.demo_latency", "--users", "0"], ["loadtests.demo_latency", "--seconds", "soon"],
    ["loadtests.benchmark", "--rounds", "0"], ["loadtests.benchmark", "--no-such-option"],
    ["loadtests.demo_latency", "--users", "0"], ["loadtests.demo_latency", "--locustfile", "no-such-locustfile.py"],
    ["loadtests.proxy_cost", "--variant-config", "no-such-file.cfg"],
])
def test_bad_arguments_exit_1_with_one_sentence(argv):
    result = subprocess.run([sys.executable, "-m", *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "MonkeyPatchWarning" not in line and "monkey.patch_all" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), result.stderr
    assert "usage:" not in result.stderr and "Traceback" not in result.stderr


def test_demo_latency_groups_requests_by_name_and_leaves_failures_out_of_latency():
    def record(name: str, status: int, latency: float) -> SimpleNamespace:
        return SimpleNamespace(name=name, latency_ms=latency, failed=not 200 <= status < 300)

    rows = by_name([record("GET /version", 200, 5.0), record("POST /items", 201, 40.0), record("POST /items", 503, 900.0)])
    assert rows["POST /items"] == {"requests": 2, "failures": 1, "p50_ms": 40.0, "p99_ms": 40.0}
    assert rows["GET /version"]["requests"] == 1



def test_latency_bands_put_a_fixed_delay_in_one_band_under_its_request_name():
    def record(name: str, status: int, latency: float) -> SimpleNamespace:
        return SimpleNamespace(name=name, latency_ms=latency, failed=not 200 <= status < 300)

    records = [record("GET /version", 200, 7.0)] * 97 + [record("GET /slow", 200, 310.0)] * 3 + [record("GET /version", 503, 305.0)]
    bands = latency_bands(records, edges=(10, 300, 400))
    assert [b["requests"] for b in bands] == [97, 0, 3, 0]  # the failure counts in no band
    assert bands[2] == {"from_ms": 300, "to_ms": 400, "requests": 3, "share": 0.03, "by_name": {"GET /slow": 3}}
    assert bands[-1]["to_ms"] is None


def test_a_variant_config_must_be_a_whole_base_config(tmp_path):
    from loadtests.proxy_variant import read_variant
    from simulator.errors import CutoverError
    from stacks.proxy_config import render_base_config

    whole = tmp_path / "whole.cfg"
    whole.write_text(render_base_config() + "\n")
    assert "frontend live" in read_variant(str(whole))
    part = tmp_path / "part.cfg"
    part.write_text("global\n    nbthread 1\n")
    with pytest.raises(CutoverError, match="not a whole HAProxy base config"):
        read_variant(str(part))
