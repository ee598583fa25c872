"""The fault suite's figures, on hand-made request records."""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.fault_figures import error_kind, recovered_at, traffic_figures


@dataclass(frozen=True)
class R:
    started: float
    finished: float
    status: int = 200
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error) or not 200 <= self.status < 300


FAULT = 100.0


def test_error_kinds_name_the_status_or_the_exception():
    assert error_kind(R(1, 2, 503, "HTTPError: 503")) == "HTTP 503"
    assert error_kind(R(1, 2, 0, "ConnectionRefusedError: [Errno 111] refused")) == "ConnectionRefusedError"
    assert error_kind(R(1, 2, 0, "")) == "no response"
    assert error_kind(R(1, 2, 201, "HTTPConnectionClosed: closed")) == "HTTPConnectionClosed after HTTP 201"


def test_errors_last_from_the_first_to_the_last_failure_after_the_fault():
    records = [R(99, 99.5, 503, "x"), R(100.1, 100.2, 0, "Reset: x"), R(101, 101.7, 502, "x"), R(102, 102.1)]
    figures = traffic_figures(records, FAULT, recovered=101.7)
    assert figures.errors == 3 and figures.errors_before_fault == 1
    assert figures.first_error_s == 0.2 and figures.last_error_s == 1.7 and figures.error_seconds == 1.5
    assert figures.errors_by_kind == {"HTTP 503": 1, "Reset": 1, "HTTP 502": 1}
    assert figures.errors_after_recovery == 0


def test_a_failure_sent_after_recovery_is_counted_as_such():
    records = [R(100.1, 100.2, 503, "x"), R(105, 105.1, 503, "x")]
    assert traffic_figures(records, FAULT, recovered=100.2).errors_after_recovery == 1


def test_recovery_needs_a_quiet_settle_window_with_successes():
    records = [R(100.1, 100.5, 0, "Refused: x")] + [R(100.6 + i / 10, 100.7 + i / 10) for i in range(10)]
    assert recovered_at(records, FAULT, now=102.0, settle_s=3) is None  # not quiet long enough yet
    assert recovered_at(records, FAULT, now=103.6, settle_s=3) == 100.5
    assert recovered_at(records[:3], FAULT, now=110, settle_s=3) is None  # too few successes to tell


def test_no_failure_at_all_is_recovered_from_the_fault_on():
    records = [R(100 + i, 100.1 + i) for i in range(6)]
    assert recovered_at(records, FAULT, now=104, settle_s=3) == FAULT
