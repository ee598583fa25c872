"""Where rollback goes, and when a retried switch completes instead of flipping, on ledger rows."""

from __future__ import annotations

import pytest

from simulator.errors import Refused
from simulator.ledger import commands
from simulator.switchback import plan_rollback, unfinished_flip


def colours(live: str, blue: str, green: str, blue_image: str = "sha256:b1", green_image: str = "sha256:g1") -> dict:
    return {"live": live, "blue": {"version": blue, "image": blue_image, "containers": 1}, "green": {"version": green, "image": green_image, "containers": 1}}


class Ledger:
    """Start and end records as the real ledger writes them (commands() merges them)."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def run(self, command: str, before: dict, after: dict | None, outcome: str = "ok", **details) -> None:
        start = {"seq": len(self.records) + 1, "phase": "start", "command": command, "colours_before": before}
        self.records.append(start)
        if outcome == "interrupted":
            # Closed by the next command's _close_interrupted: no colours, no details.
            self.records.append({"seq": len(self.records) + 1, "phase": "end", "start_seq": start["seq"], "command": command, "outcome": "interrupted"})
            return
        self.records.append({"seq": len(self.records) + 1, "phase": "end", "start_seq": start["seq"], "command": command, "outcome": outcome,
                             "colours_before": before, "colours_after": after, **details})

    def switch(self, before: dict, after: dict, command: str = "switch", **details) -> None:
        self.run(command, before, after, from_colour=before["live"], to_colour=after["live"], **details)

    @property
    def rows(self) -> list[dict]:
        return commands(self.records)


V1_LIVE = colours("blue", "1.0.0", "1.0.0")
V2_IDLE = colours("blue", "1.0.0", "2.0.0", green_image="sha256:g2")
V2_LIVE = colours("green", "1.0.0", "2.0.0", green_image="sha256:g2")


def test_no_switch_to_undo():
    ledger = Ledger()
    ledger.run("up", {}, V1_LIVE)
    ledger.run("deploy", V1_LIVE, V2_IDLE)
    with pytest.raises(Refused, match="no switch has made a colour live yet"):
        plan_rollback("s", ledger.rows, V2_IDLE)


def test_rollback_goes_back_to_the_colour_and_version_before_the_last_switch():
    ledger = Ledger()
    ledger.run("deploy", V1_LIVE, V2_IDLE)
    ledger.switch(V2_IDLE, V2_LIVE)
    plan = plan_rollback("s", ledger.rows, V2_LIVE)
    assert (plan.target, plan.version, plan.image, plan.undoes_seq) == ("blue", "1.0.0", "sha256:b1", 3)


def test_a_flip_already_undone_is_not_undone_again():
    ledger = Ledger()
    ledger.switch(V2_IDLE, V2_LIVE)
    ledger.switch(V2_LIVE, V2_IDLE, command="rollback")
    with pytest.raises(Refused, match=r"already went back to blue; 'cutover switch' goes forward to green"):
        plan_rollback("s", ledger.rows, V2_IDLE)


def test_an_automatic_rollback_counts_as_undone():
    ledger = Ledger()
    # The switch's own rows: it flipped and was flipped back inside it, so it ends failed and unchanged.
    ledger.records.append({"seq": 1, "phase": "start", "command": "switch", "colours_before": V2_IDLE})
    ledger.run("auto-rollback", V2_LIVE, V2_IDLE, from_colour="green", to_colour="blue")
    ledger.records.append({"seq": 4, "phase": "end", "start_seq": 1, "command": "switch", "outcome": "failed", "colours_before": V2_IDLE,
                           "colours_after": V2_IDLE, "from_colour": "blue", "to_colour": "green"})
    with pytest.raises(Refused, match=r"auto-rollback, seq 2\) already went back to blue"):
        plan_rollback("s", ledger.rows, V2_IDLE)


def test_a_colour_flipped_outside_cutover_is_refused():
    ledger = Ledger()
    ledger.switch(V2_IDLE, V2_LIVE)
    with pytest.raises(Refused, match="made green live, but blue is live now"):
        plan_rollback("s", ledger.rows, V2_IDLE)


def test_a_colour_redeployed_since_is_refused_and_named():
    ledger = Ledger()
    ledger.switch(V2_IDLE, V2_LIVE)
    v3_on_blue = colours("green", "3.0.0", "2.0.0", blue_image="sha256:b3", green_image="sha256:g2")
    ledger.run("deploy", V2_LIVE, v3_on_blue)
    with pytest.raises(Refused, match=r"blue ran 1.0.0 \(b1\) before switch seq 1 but runs 3.0.0 \(b3\) now \(redeployed since\); 'cutover deploy 1.0.0'"):
        plan_rollback("s", ledger.rows, v3_on_blue)


def test_the_same_version_rebuilt_as_another_image_is_redeployed_too():
    ledger = Ledger()
    ledger.switch(V2_IDLE, V2_LIVE)
    rebuilt = colours("green", "1.0.0", "2.0.0", blue_image="sha256:b9", green_image="sha256:g2")
    with pytest.raises(Refused, match="redeployed since"):
        plan_rollback("s", ledger.rows, rebuilt)


def test_refused_and_failed_switches_are_not_flips():
    ledger = Ledger()
    ledger.switch(V2_IDLE, V2_LIVE)
    ledger.run("switch", V2_LIVE, V2_LIVE, outcome="refused")
    assert plan_rollback("s", ledger.rows, V2_LIVE).target == "blue"


def test_nothing_to_undo_after_the_stack_was_removed():
    ledger = Ledger()
    ledger.switch(V2_IDLE, V2_LIVE)
    ledger.run("down", V2_LIVE, {})
    with pytest.raises(Refused, match="removed"):
        plan_rollback("s", ledger.rows, V1_LIVE)


def test_an_interrupted_switch_that_flipped_is_completed_by_its_retry_and_then_undone_by_rollback():
    ledger = Ledger()
    ledger.run("switch", V2_IDLE, None, outcome="interrupted")
    flip = unfinished_flip(ledger.rows, "switch", "green")
    assert (flip.seq, flip.from_colour, flip.to_colour) == (1, "blue", "green")
    assert unfinished_flip(ledger.rows, "rollback", "green") is None  # a rollback is not its retry
    # A rollback right after it undoes it: the proxy says it flipped.
    assert plan_rollback("s", ledger.rows, V2_LIVE).target == "blue"
    ledger.switch(V2_LIVE, V2_LIVE, completes_seq=1)  # the retry records from_colour/to_colour of the flip it completed
    ledger.records[-1].update(from_colour="blue", to_colour="green")
    assert unfinished_flip(ledger.rows, "switch", "green") is None


def test_an_interrupted_switch_that_never_flipped_is_retried_normally():
    ledger = Ledger()
    ledger.switch(V1_LIVE, colours("green", "1.0.0", "1.0.0"))
    ledger.run("switch", colours("green", "1.0.0", "1.0.0"), None, outcome="interrupted")
    assert unfinished_flip(ledger.rows, "switch", "green") is None
    # The earlier, finished switch is still the one to undo.
    assert plan_rollback("s", ledger.rows, colours("green", "1.0.0", "1.0.0")).undoes_seq == 1


def test_a_colour_retired_by_finalize_is_nothing_to_go_back_to():
    ledger = Ledger()
    ledger.switch(V2_IDLE, V2_LIVE)
    retired = {**V2_LIVE, "blue": {"version": None, "image": None, "containers": 0}}
    with pytest.raises(Refused, match="runs nothing now \\(retired since"):
        plan_rollback("s", ledger.rows, retired)
