"""The rehearsal's figures, computed from hand-made request records (no Locust, no Docker)."""

from __future__ import annotations

from request_records import request

from loadtests.report import acknowledged_writes, flip_figures, percentile, phase_figures


def test_percentiles_of_known_values():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50.5
    assert 99 <= percentile(values, 99) <= 100
    assert percentile([], 50) == 0.0
    assert percentile([7.0], 99) == 7.0


def test_phase_figures_count_failures_versions_writes_and_losses():
    records = [
        request(0, 1, phase="a", version="1", item_id=10),
        request(0, 1, phase="a", version="1", status=503),
        request(0, 1, phase="b", version="2", item_id=11),
        request(0, 1, phase="b", version="", status=0, error="ConnectionResetError"),
    ]
    a, b = phase_figures(records, lost_ids=frozenset({11}))
    assert (a.phase, a.requests, a.failures, a.writes, a.lost) == ("a", 2, 1, 1, 0)
    assert a.versions == {"1": 2}
    assert (b.requests, b.failures, b.writes, b.lost) == (2, 1, 1, 1)
    assert b.versions == {"2": 1, "none": 1}
    assert acknowledged_writes(records) == {10, 11}


def test_flip_counts_requests_sent_after_the_flip_that_reached_the_old_colour():
    flip_at = 100.0
    records = [
        request(99.0, 100.5, colour="blue", user=1),  # in flight at the flip: may finish on blue
        request(100.2, 100.3, colour="green", user=1),
        request(100.4, 100.5, colour="blue", user=2),  # sent after the flip, served by blue: stale
        request(100.6, 100.7, colour="green", user=2),
        request(200.0, 200.1, colour="blue", user=3),  # after the next step began: not this flip's
    ]
    figures = flip_figures(records, "to green", "green", flip_at, until=150.0)
    assert figures.stale_after_flip == 1
    assert (figures.users_active_after, figures.users_moved) == (2, 1)
    assert figures.first_new_ms == 300.0


def test_flip_with_no_response_from_the_new_colour_says_so():
    figures = flip_figures([request(99, 99.5, colour="blue")], "to green", "green", 100.0, until=200.0)
    assert figures.first_new_ms is None and figures.users_active_after == 0
