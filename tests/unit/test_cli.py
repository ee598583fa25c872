"""The load tools' shared command line (loadtests/cli.py): bad input is one sentence and exit 1,
a measurement that cannot run is one line and exit 1, and SIGTERM still runs its cleanup."""

from __future__ import annotations

import os
import signal

import pytest

from loadtests.cli import Parser, positive, run_measurement


def test_a_bad_argument_is_one_sentence_and_exit_1(capsys):
    parser = Parser(prog="tool")
    parser.add_argument("--users", type=positive(int))
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--users", "0"])
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: argument --users: 0 is not above 0."]


@pytest.mark.parametrize("text, says", [("x", "'x' is not a whole number"), ("-3", "-3 is not above 0")])
def test_positive_says_what_is_wrong(text, says, capsys):
    parser = Parser(prog="tool")
    parser.add_argument("--n", type=positive(int))
    with pytest.raises(SystemExit):
        parser.parse_args(["--n", text])
    assert says in capsys.readouterr().err


def test_a_measurement_that_cannot_run_is_one_line_and_exit_1(capsys):
    def broken() -> dict:
        raise OSError("wrk is not installed [apt-get install wrk]")

    assert run_measurement(broken, (OSError,)) == 1
    assert capsys.readouterr().err.splitlines() == ["error: wrk is not installed [apt-get install wrk]"]


def test_the_exit_status_is_the_summary_s_verdict():
    assert run_measurement(lambda: {"failures": 0}, (OSError,)) == 0
    assert run_measurement(lambda: {"failures": 3}, (OSError,)) == 1


def test_sigterm_stops_the_measurement_through_its_cleanup():
    cleaned = []

    def measure() -> dict:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not interrupt the measurement")
        finally:
            cleaned.append(True)

    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            run_measurement(measure, (OSError,))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM and cleaned == [True]
