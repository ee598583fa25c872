"""What a killed command left, judged from hand-built observations. No Docker."""

from __future__ import annotations

from simulator.leftovers import Finding, OneShot, Seen, find_leftovers, needs_history
from simulator.planner import ObservedContainer
from simulator.proxy_api import ServerState


def app(colour: str, index: int, version: str = "1.0.0", running: bool = True) -> ObservedContainer:
    return ObservedContainer(f"cutover-x-{colour}-{index}", "app", colour, version, "f", running)


def server(colour: str, index: int, status: str = "UP") -> ServerState:
    return ServerState(colour, f"{colour}-{index}", status, 0, "L7OK")


def whole(**changes) -> Seen:
    """A stack of two per colour, blue live, every server up; ``changes`` override fields."""
    values = dict(
        stack="x", pool_size=2, live="blue",
        containers=tuple(app(c, i) for c in ("blue", "green") for i in (1, 2)),
        servers={c: (server(c, 1), server(c, 2)) for c in ("blue", "green")},
    )
    values.update(changes)
    return Seen(**values)


def deploy_row(seq: int, outcome: str, version: str = "2.0.0", live_before: str = "blue", command: str = "deploy") -> dict:
    return {"seq": seq, "command": command, "outcome": outcome, "version": version, "args": {"version": version},
            "colours_before": {"live": live_before}}


def kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


def test_a_whole_stack_has_no_leftovers():
    assert find_leftovers(whole(rows=(deploy_row(3, "ok"),))) == []


def test_a_server_forced_into_maint_is_repaired_but_maint_for_resolution_is_haproxys_own():
    servers = {"blue": (server("blue", 1), server("blue", 2)), "green": (server("green", 1, "MAINT"), server("green", 2, "MAINT (resolution)"))}
    findings = find_leftovers(whole(servers=servers))
    assert [(f.kind, f.colour, f.server, f.automatic) for f in findings] == [("forced-state", "green", "green-1", True)]
    assert "green/green-1 is held in MAINT" in findings[0].describe()


def test_a_forced_drain_is_a_leftover_too():
    servers = {"blue": (server("blue", 1, "DRAIN"), server("blue", 2)), "green": (server("green", 1), server("green", 2))}
    assert kinds(find_leftovers(whole(servers=servers))) == ["forced-state"]


def test_an_idle_pool_short_of_a_container_names_the_interrupted_deploy_and_the_command():
    containers = (app("blue", 1), app("blue", 2), app("green", 1, "2.0.0"))
    findings = find_leftovers(whole(containers=containers, rows=(deploy_row(40, "ok", "1.0.0"), deploy_row(41, "interrupted"))))
    assert len(findings) == 1
    finding = findings[0]
    assert (finding.kind, finding.automatic, finding.fix) == ("half-replaced", False, "cutover deploy 2.0.0 --stack x")
    assert finding.describe() == (
        "green has 1 of 2 containers, left by an interrupted deploy of 2.0.0 (ledger seq 41): run 'cutover deploy 2.0.0 --stack x'"
    )


def test_stopped_members_and_mixed_versions_are_named():
    containers = (app("blue", 1), app("blue", 2), app("green", 1, "2.0.0"), app("green", 2, "1.0.0", running=False))
    finding = find_leftovers(whole(containers=containers, rows=(deploy_row(7, "failed"),)))[0]
    assert "cutover-x-green-2 stopped" in finding.problem
    assert "mixed versions 1.0.0, 2.0.0" in finding.problem
    assert "a failed deploy of 2.0.0 (ledger seq 7)" in finding.problem


def test_an_empty_idle_pool_is_a_leftover_only_after_an_unfinished_replacement():
    containers = (app("blue", 1), app("blue", 2))
    # finalize retired it on purpose
    assert find_leftovers(whole(containers=containers, rows=(deploy_row(5, "interrupted"), {"seq": 6, "command": "finalize", "outcome": "ok"}))) == []
    assert find_leftovers(whole(containers=containers, rows=())) == []
    finding = find_leftovers(whole(containers=containers, rows=(deploy_row(5, "interrupted"),)))[0]
    assert finding.problem.startswith("green has 0 of 2 containers")


def test_a_deploy_that_went_to_the_other_colour_says_nothing_about_this_one():
    # Live was green when the deploy ran: it replaced blue, which is live now and not judged here.
    containers = (app("blue", 1), app("blue", 2), app("green", 1))
    rows = (deploy_row(9, "interrupted", live_before="green"),)
    assert find_leftovers(whole(containers=containers, rows=rows))[0].problem == "green has 1 of 2 containers"
    assert find_leftovers(whole(containers=containers, rows=rows))[0].fix == "cutover deploy 1.0.0 --stack x"


def test_an_interrupted_promote_is_fixed_by_promoting_again():
    containers = (app("blue", 1), app("blue", 2))
    finding = find_leftovers(whole(containers=containers, rows=(deploy_row(3, "interrupted", command="promote"),)))[0]
    assert finding.fix == "cutover promote 2.0.0 --to x"


def test_stray_one_shot_containers_are_removed_but_a_running_ledger_read_is_someone_elses():
    one_shots = (
        OneShot("cutover-x-migrate", "migration", "running", "2.0.0"),
        OneShot("eager_turing", "inspect", "created"),
        OneShot("busy_ledger", "ledger-writer", "running"),
        OneShot("dead_ledger", "ledger-writer", "exited"),
    )
    findings = find_leftovers(whole(one_shots=one_shots))
    assert [(f.kind, f.subject, f.automatic) for f in findings] == [
        ("one-shot", "cutover-x-migrate", True), ("one-shot", "eager_turing", True), ("one-shot", "dead_ledger", True),
    ]
    assert findings[0].problem == "the migration run of 2.0.0 cutover-x-migrate outlived its command (running)"


def test_nothing_is_judged_while_another_command_holds_the_lock():
    seen = whole(servers={"blue": (server("blue", 1, "MAINT"),), "green": ()}, one_shots=(OneShot("cutover-x-migrate", "migration", "running"),),
                 lock_held_by="deploy")
    assert find_leftovers(seen) == []


def test_a_stale_lock_is_shown_by_status_and_left_to_the_ledger_when_we_hold_the_lock():
    assert kinds(find_leftovers(whole(stale_lock="its holder (pid 4 on this machine) is gone"))) == ["stale-lock"]
    assert find_leftovers(whole(stale_lock="gone", holding_lock=True)) == []


def test_without_a_running_proxy_no_pool_is_judged():
    assert find_leftovers(whole(live=None, containers=(), servers={}, rows=(deploy_row(2, "interrupted"),))) == []


def test_a_finalize_killed_while_retiring_the_idle_pool_is_finished_by_finalize():
    containers = (app("blue", 1, "2.0.0"), app("blue", 2, "2.0.0"), app("green", 2))
    rows = (deploy_row(3, "ok"), {"seq": 4, "command": "finalize", "outcome": "interrupted", "version": "2.0.0", "colours_before": {"live": "blue"}})
    finding = find_leftovers(whole(containers=containers, rows=rows))[0]
    assert finding.fix == "cutover finalize --stack x"
    assert "left by an interrupted finalize of 2.0.0 (ledger seq 4)" in finding.problem


def test_the_ledger_is_read_only_for_an_idle_pool_that_is_not_whole():
    assert not needs_history(whole())
    assert needs_history(whole(containers=(app("blue", 1), app("blue", 2))))  # empty: retired, or left by a deploy?
    assert needs_history(whole(containers=(app("blue", 1), app("blue", 2), app("green", 1), app("green", 2, running=False))))
    assert not needs_history(whole(live=None))
