"""The proxy-cost benchmark's pure parts: merging wrk processes' latencies, splitting connections,
one concurrency's row and its ratios, and bad arguments."""

from __future__ import annotations

import pytest

from loadtests.proxy_cost import Run, WrkResult, merged_percentile, parse_args, parse_wrk_output, split, summarise


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


@pytest.mark.parametrize("argv", [["--concurrency", "10,x"], ["--concurrency", "0"], ["--seconds", "0"], ["--path", "version"]])
def test_bad_arguments_exit_with_one_sentence(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
