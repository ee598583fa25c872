"""The deploy's gates and the live colour as resources of the program (Pulumi's mocks): declared with
the right inputs, and ordered so each gate stands between what it judges and what it protects.

The providers' own behaviour (create/read/diff/update against a real proxy and database) is in
tests/integration/test_dynamic_providers.py; here only what the program declares.
"""

from __future__ import annotations

import base64

import dill
import pytest
from pulumi_harness import (
    COMMAND,
    CONTAINER,
    IMAGE,
    LINT_GATE,
    LIVE_CHECK,
    LIVE_COLOUR,
    SMOKE_TEST,
    STACKS_DIR,
    is_secret,
    labels,
    plain_strings,
    run_program,
)

from components.live_colour import LiveColourProvider
from components.release_gates import LintGateProvider, LiveCheckProvider, SmokeTestProvider
from stacks.spec import KNOWN_KEYS

SPLIT = {"cutover:blueVersion": "1.0.0", "cutover:greenVersion": "1.1.0"}


@pytest.fixture(scope="module")
def run():
    return run_program("dev", SPLIT)


def _pool(run, colour):
    return [c for c in run.of_type(CONTAINER) if labels(c.inputs).get("cutover.role") == "app" and labels(c.inputs)["cutover.colour"] == colour]


def _image(run, version):
    return next(i for i in run.of_type(IMAGE) if i.inputs["imageName"] == f"cutover-demo:{version}")


def test_gates_rebuild_the_stack_from_its_own_config(run):
    for gate in run.of_type(LINT_GATE) + run.of_type(LIVE_CHECK) + run.of_type(SMOKE_TEST):
        assert gate.inputs["stack"] == "dev"
        # The raw strings the program read, every key the stack file sets: the provider validates them again.
        assert gate.inputs["config"] == {key: run.config[key] for key in KNOWN_KEYS if key in run.config}, gate.name


def test_each_versions_steps_are_linted_before_any_migration_runs(run):
    gates = {g.inputs["version"]: g for g in run.of_type(LINT_GATE)}
    assert sorted(gates) == ["1.0.0", "1.1.0"]
    database = next(c for c in run.of_type(CONTAINER) if c.name == "cutover-dev-db")
    for version, gate in gates.items():
        image = _image(run, version)
        assert gate.inputs["image"] == image.state["repoDigest"]  # the exact artefact its migration runs
        assert {image.urn, database.urn} <= set(gate.dependencies)
        # The database password reaches it as a secret only.
        assert is_secret(gate.inputs["secrets"]) and not set(run.secret_values) & set(plain_strings(gate.inputs))
    for migration in (c for c in run.of_type(CONTAINER) if c.name.startswith("cutover-dev-migrate-")):
        assert {g.urn for g in gates.values()} <= set(migration.dependencies), migration.name


def test_the_live_version_is_checked_after_each_migration_and_before_its_pool(run):
    checks = {c.inputs["version"]: c for c in run.of_type(LIVE_CHECK)}
    lint = {g.inputs["version"]: g for g in run.of_type(LINT_GATE)}
    assert sorted(checks) == ["1.0.0", "1.1.0"]
    for version, check in checks.items():
        migration = run.named(CONTAINER, f"cutover-dev-migrate-{version}")
        assert migration.urn in check.dependencies
        # Its `steps` input is the lint gate's answer: checked only when steps were pending, as in `cutover deploy`.
        assert lint[version].urn in check.dependencies
        assert check.inputs["steps"] == [f"step-of-{version}"]
    for colour, version in (("blue", "1.0.0"), ("green", "1.1.0")):
        for member in _pool(run, colour):
            assert checks[version].urn in member.dependencies, member.name
            assert checks["1.1.0" if version == "1.0.0" else "1.0.0"].urn not in member.dependencies, member.name


def test_the_colour_going_live_is_smoke_tested_before_the_switch_and_the_other_after_it():
    run = run_program("dev", {**SPLIT, "cutover:liveColor": "green"})
    switch = run.named(LIVE_COLOUR, "cutover-switch")
    target, other = run.named(SMOKE_TEST, "cutover-smoke-green"), run.named(SMOKE_TEST, "cutover-smoke-blue")
    assert (target.inputs["colour"], target.inputs["version"]) == ("green", "1.1.0")
    assert (other.inputs["colour"], other.inputs["version"]) == ("blue", "1.0.0")
    assert target.inputs["image"] == _image(run, "1.1.0").state["repoDigest"]
    # Once the colour runs its version and the proxy stamps it (the smoke test checks the stamp).
    assert {c.urn for c in _pool(run, "green")} | {run.named(COMMAND, "cutover-version-green").urn} <= set(target.dependencies)
    assert target.urn in switch.dependencies and switch.urn not in target.dependencies
    assert switch.urn in other.dependencies
    assert {c.urn for c in _pool(run, "blue")} | {run.named(COMMAND, "cutover-version-blue").urn} <= set(other.dependencies)


def test_the_switch_is_a_live_colour_and_each_flip_is_recorded(run):
    switch = run.named(LIVE_COLOUR, "cutover-switch")
    assert switch.inputs["wait_seconds"] > 0  # proxy-switch --wait: the servers get time to come UP
    assert run.outputs["switch_output"] == "live=blue"
    record = run.named(COMMAND, "cutover-switch-record")
    # One record per flip: the LiveColour says when it last ran proxy-switch.
    assert record.inputs["triggers"] == [switch.state["flipped_at"]]
    assert switch.urn in record.dependencies


def test_a_read_only_app_has_smoke_tests_but_no_schema_gates():
    run = run_program("static-ci", stacks_dir=STACKS_DIR.parent / "examples/static-site")
    assert not run.of_type(LINT_GATE) and not run.of_type(LIVE_CHECK)
    assert sorted(g.inputs["colour"] for g in run.of_type(SMOKE_TEST)) == ["blue", "green"]


@pytest.mark.parametrize("kind, provider", [(LIVE_COLOUR, LiveColourProvider), (LINT_GATE, LintGateProvider), (SMOKE_TEST, SmokeTestProvider), (LIVE_CHECK, LiveCheckProvider)])
def test_the_provider_travels_by_reference_in_plain_sight(run, kind, provider):
    # The engine stores the serialized provider with the resource and the dynamic-provider host
    # loads it from there: it holds no secret, so it is not made one, and it names our class.
    serialized = run.of_type(kind)[0].inputs["__provider"]
    assert not is_secret(serialized)
    assert type(dill.loads(base64.b64decode(serialized))) is provider


def test_gate_diffs_judge_only_what_they_check():
    olds = {"stack": "dev", "config": {"cutover:liveColor": "blue"}, "colour": "green", "version": "1.1.0", "image": "sha256:a"}
    assert SmokeTestProvider().diff("id", olds, {**olds, "config": {"cutover:liveColor": "green"}}).changes is False
    changed = SmokeTestProvider().diff("id", olds, {**olds, "version": "1.2.0", "image": "sha256:b"})
    assert changed.changes is True and changed.replaces == []  # judged again in place (update), never replaced
    assert LiveColourProvider().diff("id", {"colour": "green", "proxy": "p"}, {"colour": "blue", "proxy": "p"}).changes is True
    assert LiveColourProvider().diff("id", {"colour": "blue", "proxy": "p", "wait_seconds": 5}, {"colour": "blue", "proxy": "p", "wait_seconds": 9}).changes is False
