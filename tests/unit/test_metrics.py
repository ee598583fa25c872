"""The DORA keys from a scripted ledger, against values worked out by hand below."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from simulator.metrics import dora

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)


def at(**delta) -> str:
    return (T0 + timedelta(**delta)).isoformat()


def colours(live: str, blue: str, green: str) -> dict:
    return {"live": live, "blue": {"version": blue}, "green": {"version": green}}


class Script:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def end(self, command: str, time: str, outcome: str = "ok", **fields) -> None:
        seq = len(self.records) + 1
        self.records.append({"seq": seq, "time": time, "phase": "start", "command": command})
        self.records.append({"seq": seq + 1, "time": time, "phase": "end", "start_seq": seq, "command": command, "outcome": outcome, **fields})


@pytest.fixture
def ledger() -> list[dict]:
    s = Script()
    s.end("up", at(), colours_after=colours("blue", "1.0.0", "1.0.0"), version="1.0.0")
    s.end("build", at(minutes=5), version="2.0.0", commit_time=at(hours=-2))
    s.end("deploy", at(minutes=10), version="2.0.0", commit_time=at(hours=-2), colours_after=colours("blue", "1.0.0", "2.0.0"))
    # Deployment 1: 2.0.0 live 20 min in; lead time 2 h 20 min = 8400 s.
    s.end("switch", at(minutes=20), from_version="1.0.0", to_version="2.0.0")
    # Undone 10 min later (within the hour): a failed change, restored in 600 s.
    s.end("rollback", at(minutes=30), from_version="2.0.0", to_version="1.0.0")
    # A refused and a failed switch change nothing and count for nothing.
    s.end("switch", at(minutes=35), outcome="refused", from_version="1.0.0", to_version="2.5.0")
    s.end("switch", at(minutes=36), outcome="failed")
    # 2.0.0 again (fixed config, same artefact): not a new version, so not a deployment.
    s.end("switch", at(minutes=40), colours_before=colours("blue", "1.0.0", "2.0.0"), colours_after=colours("green", "1.0.0", "2.0.0"))
    # Deployment 2: 3.0.0, built from source outside git (no commit time): lead time unknown.
    s.end("deploy", at(days=1), version="3.0.0", colours_after=colours("green", "3.0.0", "2.0.0"))
    s.end("switch", at(days=1, minutes=5), from_version="2.0.0", to_version="3.0.0")
    # Rolled back after two hours: outside the window, not a failed change.
    s.end("rollback", at(days=1, hours=2, minutes=5), from_version="3.0.0", to_version="2.0.0")
    s.end("switch", at(days=1, hours=3), from_version="2.0.0", to_version="3.0.0")
    # Deployment 3: 4.0.0 committed an hour before it went live (3600 s); undone after 15 min (900 s).
    s.end("deploy", at(days=2, minutes=-30), version="4.0.0", commit_time=at(days=2, hours=-1))
    s.end("switch", at(days=2), colours_before=colours("blue", "3.0.0", "4.0.0"), colours_after=colours("green", "3.0.0", "4.0.0"))
    s.end("rollback", at(days=2, minutes=15), colours_before=colours("green", "3.0.0", "4.0.0"), colours_after=colours("blue", "3.0.0", "4.0.0"))
    # Deployments 4 and 5: 5.0.0, then 10 min later 6.0.0 on top of it. Rolling forward is not
    # undoing: 5.0.0 is not a failed change. Neither has a commit time.
    s.end("switch", at(days=3), from_version="3.0.0", to_version="5.0.0")
    s.end("switch", at(days=3, minutes=10), from_version="5.0.0", to_version="6.0.0")
    return s.records


def test_the_four_keys_match_the_hand_computed_values(ledger):
    figures = dora(ledger)
    span_days = (3 * 86400 + 10 * 60) / 86400  # first record at T0, last at T0 + 3 d 10 min
    assert figures["span"]["days"] == pytest.approx(span_days, abs=1e-4)

    frequency = figures["deployment_frequency"]
    assert frequency["deployments"] == 5 and frequency["versions"] == ["2.0.0", "3.0.0", "4.0.0", "5.0.0", "6.0.0"]
    assert frequency["per_day"] == pytest.approx(5 / span_days, abs=1e-3)

    lead = figures["lead_time"]
    assert [c["seconds"] for c in lead["changes"]] == [8400, None, 3600, None, None]
    assert lead["known"] == 2 and lead["unknown"] == 3
    assert lead["median_seconds"] == pytest.approx((8400 + 3600) / 2)

    failure = figures["change_failure_rate"]
    assert failure["failed"] == 2 and failure["deployments"] == 5
    assert failure["rate"] == pytest.approx(2 / 5, abs=1e-4)

    restore = figures["time_to_restore"]
    assert [(r["version"], r["seconds"]) for r in restore["restores"]] == [("2.0.0", 600), ("4.0.0", 900)]
    assert restore["median_seconds"] == pytest.approx(750)


def test_a_wider_window_counts_the_late_rollback_as_a_failed_change(ledger):
    figures = dora(ledger, window_s=3 * 3600)
    assert figures["change_failure_rate"]["failed"] == 3
    assert figures["time_to_restore"]["median_seconds"] == pytest.approx(900)  # median of 600, 7200, 900


def test_a_switch_is_live_when_the_proxy_confirmed_it_not_when_its_drain_ended(ledger):
    for record in ledger:
        if record.get("command") == "switch" and record.get("to_version") == "2.0.0" and record.get("outcome") == "ok":
            record["time"] = at(minutes=20, seconds=30)  # the end record, after a 30 s drain
            record["flipped_at"] = (T0 + timedelta(minutes=20)).timestamp()
            break
    assert dora(ledger)["lead_time"]["changes"][0]["seconds"] == 8400


def test_no_deployments_means_unknown_not_zero():
    figures = dora([{"seq": 1, "time": at(), "phase": "end", "command": "up", "outcome": "ok", "colours_after": colours("blue", "1.0.0", "1.0.0")}])
    assert figures["deployment_frequency"]["deployments"] == 0
    assert figures["lead_time"]["median_seconds"] is None
    assert figures["change_failure_rate"]["rate"] is None
    assert figures["time_to_restore"]["median_seconds"] is None


def test_a_switch_rolled_back_by_its_watch_is_a_failed_deployment():
    s = Script()
    s.end("up", at(), colours_after=colours("blue", "1.0.0", "1.0.0"), version="1.0.0")
    flipped = (T0 + timedelta(minutes=10)).timestamp()
    # The ledger as the watch writes it: the auto-rollback command (nested) ends before the switch.
    s.end("auto-rollback", at(minutes=10, seconds=3), from_version="2.0.0-defect30", to_version="1.0.0", flipped_back_at=flipped + 2.5)
    s.end("switch", at(minutes=10, seconds=4), outcome="failed", from_version="1.0.0", to_version="2.0.0-defect30",
          flipped_at=flipped, auto_rollback={"rule": "5xx"})
    # A switch that failed without flipping (no auto_rollback) still counts for nothing.
    s.end("switch", at(minutes=20), outcome="failed", from_version="1.0.0", to_version="3.0.0")
    result = dora(s.records)
    assert result["deployment_frequency"]["versions"] == ["2.0.0-defect30"]
    assert result["change_failure_rate"]["failed"] == 1
    restore = result["time_to_restore"]["restores"][0]
    assert restore["undone_by"] == "auto-rollback" and restore["seconds"] == 2.5
