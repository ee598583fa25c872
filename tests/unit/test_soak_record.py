"""The soak's streamed record (loadtests/soak_record.py): every request reaches the CSV exactly once,
counts and acknowledged writes survive the flushes, and a flip's figures still see its requests."""

from __future__ import annotations

import csv
from types import SimpleNamespace

from request_records import request

from loadtests.soak_record import StreamedRecord, figure_ready


def test_records_stream_to_csv_once_and_flip_figures_see_their_requests(tmp_path):
    before = [request(t, t + 0.001, item_id=t if t % 2 == 0 else None) for t in range(0, 10)]  # blue, up to the flip at 10
    after = [request(t + 0.5, t + 0.501, colour="green", version="2") for t in range(10, 20)]
    late_stale = request(12.0, 12.1, colour="blue")  # sent after the flip, answered by the old colour
    failed = request(15.0, 15.2, status=0, error="ConnectionResetError")
    load = SimpleNamespace(records=[*before, *after, late_stale, failed])
    record = StreamedRecord(load, tmp_path / "requests.csv")
    pending = [("1 switch to green", "green", 10.0, 20.0)]
    flips = []

    figure_ready(pending, flips, record, settled_before=5.0)  # the flip's span has not settled yet
    assert flips == [] and pending
    assert all(r.finished >= 10.0 - 2.0 for r in load.records)  # only what the flip may look back at stays
    figure_ready(pending, flips, record, settled_before=float("inf"))
    record.close()

    assert [f.stale_after_flip for f in flips] == [1]
    assert flips[0].first_new_ms == 501.0
    rows = list(csv.reader(open(tmp_path / "requests.csv")))
    assert rows[0][:2] == ["started", "finished"] and len(rows) == 1 + 22
    assert record.flushed == 22 and load.records == []
    assert record.failures == {"ConnectionResetError": 1}
    assert record.acknowledged == {0, 2, 4, 6, 8}
