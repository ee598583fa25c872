"""The expand step: each version's migrations run once, before its pool, and a failure stops `up`.

One run per distinct version (see components/migration.py for why not one per stack). The runs are
serialised (two must never race on the schema) and wait for the database; each pool waits for its
own version's run to have exited 0.
"""

from __future__ import annotations

import pytest
from pulumi_harness import CONTAINER, IMAGE, LINT_GATE, LIVE_CHECK, SMOKE_TEST, flatten, labels, run_program

from components.migration import MigrationFailed

GATES = (LINT_GATE, LIVE_CHECK, SMOKE_TEST)

SPLIT = {"cutover:blueVersion": "1.0.0", "cutover:greenVersion": "1.1.0"}
SHARED = {"cutover:blueVersion": "1.0.0", "cutover:greenVersion": "1.0.0"}


def _containers(run, role: str):
    return [c for c in run.of_type(CONTAINER) if labels(c.inputs)["cutover.role"] == role]


def test_one_run_when_both_colours_share_a_version():
    run = run_program("dev", SHARED)
    assert [m.name for m in _containers(run, "migration")] == ["cutover-dev-migrate-1.0.0"]
    assert run.outputs["migration_containers"] == {"1.0.0": "cutover-dev-migrate-1.0.0"}


def test_one_run_per_version_serialised_after_the_database():
    run = run_program("dev", SPLIT)
    runs = {labels(m.inputs)["cutover.version"]: m for m in _containers(run, "migration")}
    assert sorted(runs) == ["1.0.0", "1.1.0"]
    # Each run uses its version's image by ID: the digest that version's image resource reported.
    digests = {i.inputs["imageName"]: i.state["repoDigest"] for i in run.of_type(IMAGE)}
    assert {v: m.inputs["image"] for v, m in runs.items()} == {v: digests[f"cutover-demo:{v}"] for v in ("1.0.0", "1.1.0")}
    (db,) = _containers(run, "database")
    for m in runs.values():
        assert db.urn in m.dependencies, m.name
    # Never two at once against one schema.
    assert runs["1.0.0"].urn in runs["1.1.0"].dependencies


def test_each_pool_waits_for_its_own_versions_run():
    run = run_program("dev", SPLIT)
    runs = {labels(m.inputs)["cutover.version"]: m for m in _containers(run, "migration")}
    for app in _containers(run, "app"):
        version = labels(app.inputs)["cutover.version"]
        assert runs[version].urn in app.dependencies, app.name


def test_a_failed_run_stops_up_before_its_version_starts():
    with pytest.raises(MigrationFailed) as caught:
        run_program("dev", SPLIT, one_shot_exit_codes={"cutover-dev-migrate-1.1.0": 1})
    message = str(caught.value)
    assert "cutover-dev-migrate-1.1.0" in message and "status 1" in message and "docker logs" in message
    created = {r.name for r in caught.value.registrations}
    # The old version's pool is untouched; nothing of the new version started.
    assert "cutover-dev-blue-1" in created
    assert not any(name.startswith("cutover-dev-green-") for name in created), sorted(created)
    # Blue stays live: its (unchanged) switch never waits on green. A flip to the failed version
    # never reaches the switch at all.
    with pytest.raises(MigrationFailed) as flipped:
        run_program("dev", {**SPLIT, "cutover:liveColor": "green"}, one_shot_exit_codes={"cutover-dev-migrate-1.1.0": 1})
    assert "cutover-switch" not in {r.name for r in flipped.value.registrations}


def test_an_unknown_exit_status_is_not_taken_for_success():
    with pytest.raises(MigrationFailed, match="status None"):
        run_program("dev", SHARED, one_shot_exit_codes={"cutover-dev-migrate-1.0.0": None})


def test_releasing_to_the_idle_colour_adds_a_run_and_leaves_the_rest_alone():
    # The release gates carry the stack's config but judge only their version, image or colour
    # (their diff ignores the rest: test_pulumi_switch.py), so config paths are left out here.
    judged = lambda r: {k: v for k, v in flatten(r.inputs).items() if not (r.type in GATES and k.startswith("config."))}  # noqa: E731
    before = {(r.type, r.name): judged(r) for r in run_program("dev", SHARED).resources}
    after = {(r.type, r.name): judged(r) for r in run_program("dev", SPLIT).resources}
    added = sorted(name for _, name in after.keys() - before.keys())
    # The new version's run, its lint gate before it and the live version's check after it.
    assert added == ["app-image-1.1.0", "app-prepare-1.1.0", "cutover-dev-migrate-1.1.0", "cutover-lint-1.1.0", "cutover-live-check-1.1.0"]
    assert before.keys() - after.keys() == set()
    changed = sorted(name for key in before.keys() & after.keys() if before[key] != after[key] for _, name in [key])
    # Only the idle (green) pool is replaced, and the proxy told its new version; the database, the
    # proxy, the live pool and the version already migrated keep their inputs, so they are neither
    # replaced nor re-run.
    # and its smoke test runs again.
    assert changed == ["cutover-dev-green-1", "cutover-smoke-green", "cutover-version-green"]
