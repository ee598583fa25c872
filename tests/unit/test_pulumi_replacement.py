"""The replacement matrix (replacement_matrix.py): no config change replaces or removes a container
of the live colour, the database, or the proxy without a graceful path; every config key has a row;
and docs/pulumi.md shows exactly the table computed here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import replacement_matrix as matrix
from pulumi_harness import COMMAND, CONTAINER, IMAGE, ROOT, Registration, run_program

from stacks.spec import KNOWN_KEYS


@pytest.fixture(scope="module")
def outcomes():
    return matrix.compute()


def test_no_change_replaces_the_live_colour_the_database_or_the_proxy_without_a_graceful_path(outcomes):
    found = [line for o in outcomes for line in matrix.violations(o)]
    assert not found, "\n".join(found)


def test_every_config_key_has_a_row(tmp_path):
    keys = {s.key for s in matrix.scenarios(tmp_path)}
    assert keys == set(KNOWN_KEYS), f"without a row: {sorted(set(KNOWN_KEYS) - keys)}; unknown: {sorted(keys - set(KNOWN_KEYS))}"


def test_a_flip_and_a_release_to_the_idle_colour_are_rows(outcomes):
    rows = {(o.scenario.key, tuple(sorted(o.scenario.overrides))): o for o in outcomes}
    release = rows[("cutover:greenVersion", ("cutover:greenVersion",))]
    flip = rows[("cutover:liveColor", ("cutover:liveColor",))]
    both = rows[("cutover:liveColor", ("cutover:greenVersion", "cutover:liveColor"))]
    for outcome in (release, flip, both):
        assert outcome.verdicts is not None

    def kinds(outcome, name):
        return {v.kind for u, v in outcome.verdicts.items() if outcome.names[u].name == name}

    # The flip touches nothing but the switch and its ledger record.
    changed = {outcome.names[u].name for u, v in flip.verdicts.items() if v.kind != matrix.UNTOUCHED}
    assert changed == {"cutover-switch", "cutover-switch-record"}
    assert kinds(flip, "cutover-switch") == {matrix.UPDATED}
    # A release replaces green's containers and adds the version's run.
    assert kinds(release, "cutover-prod-green-1") == {matrix.REPLACED}
    assert kinds(release, "cutover-prod-migrate-1.1.0") == {matrix.CREATED}
    assert kinds(both, "cutover-prod-green-1") == {matrix.REPLACED} and kinds(both, "cutover-switch") == {matrix.UPDATED}


def test_the_live_colours_version_change_is_a_refusal_row(outcomes):
    (row,) = [o for o in outcomes if o.scenario.key == "cutover:blueVersion"]
    assert row.verdicts is None and "serving live traffic now" in row.refusal


def test_only_published_ports_and_addresses_replace_the_proxy_and_gracefully(outcomes):
    for o in outcomes:
        if o.verdicts is None:
            continue
        proxy = [v for u, v in o.verdicts.items() if o.names[u].type == CONTAINER and o.names[u].name == "cutover-prod-proxy"]
        (verdict,) = proxy
        if o.scenario.key in matrix.PROXY_MAY_BE_REPLACED_BY:
            assert verdict.kind == matrix.REPLACED and set(verdict.properties) <= {"ports", "labels"}, o.scenario
            assert "SIGUSR1" in matrix.render([o])
        else:
            assert verdict.kind == matrix.UNTOUCHED, o.scenario


def test_the_docs_table_is_the_computed_one(outcomes):
    document = matrix.DOCS.read_text()
    assert matrix.BEGIN in document and matrix.END in document
    assert matrix.splice(document, matrix.render(outcomes)) == document, "docs/pulumi.md is stale: run `make pulumi-matrix`"


def test_without_the_observed_live_colour_the_matrix_finds_the_replacements():
    """Proof that the guard can fail: the same change with the proxy unseen (nothing frozen)
    replaces blue's containers, and violations() says so."""
    base = run_program("prod")
    changed = run_program("prod", {"cutover:healthIntervalMs": "2000"})
    verdicts = matrix.classify(base, changed)
    names = {r.urn: r for r in (*base.resources, *changed.resources)}
    outcome = matrix.Outcome(matrix.Scenario("cutover:healthIntervalMs", "1000 → 2000"), verdicts, names)
    found = matrix.violations(outcome)
    assert any("live container cutover-prod-blue-1" in line for line in found), found


# --- the classifier on its own -------------------------------------------------------------------


def _reg(name: str, type_: str, inputs: dict, **options) -> Registration:
    defaults = dict(
        urn=f"urn:{type_}::{name}",
        type=type_,
        name=name,
        parent="",
        custom=True,
        provider="",
        dependencies=(),
        delete_before_replace=False,
        ignore_changes=(),
        replace_on_changes=(),
        retain_on_delete=False,
        property_dependencies={},
        additional_secret_outputs=(),
        inputs=inputs,
        state={},
    )
    return Registration(**{**defaults, **options})


class _Run:
    def __init__(self, *resources):
        self.resources = resources


def test_a_flagged_input_replaces_an_unflagged_one_updates_an_ignored_one_is_nothing():
    old = _reg("c", CONTAINER, {"image": "a", "restart": "no", "envs": ["X=1"]}, delete_before_replace=True)
    verdict = matrix.classify(_Run(old), _Run(_reg("c", CONTAINER, {"image": "b", "restart": "no", "envs": ["X=1"]}, delete_before_replace=True)))
    assert verdict[old.urn] == matrix.Verdict(matrix.REPLACED, ("image",), True)
    assert matrix.classify(_Run(old), _Run(_reg("c", CONTAINER, {"image": "a", "restart": "always", "envs": ["X=1"]})))[old.urn].kind == matrix.UPDATED
    ignored = _reg("c", CONTAINER, {"image": "b", "restart": "no", "envs": ["X=2"]}, ignore_changes=("image", "envs"))
    assert matrix.classify(_Run(old), _Run(ignored))[old.urn].kind == matrix.UNTOUCHED


def test_a_commands_triggers_replace_it_its_environment_re_runs_it():
    old = _reg("s", COMMAND, {"create": "x", "environment": {"A": "1"}, "triggers": ["p-id"]}, replace_on_changes=("triggers[*]",))
    env = _reg("s", COMMAND, {"create": "x", "environment": {"A": "2"}, "triggers": ["p-id"]}, replace_on_changes=("triggers[*]",))
    assert matrix.classify(_Run(old), _Run(env))[old.urn].kind == matrix.UPDATED


def test_a_replaced_or_rebuilt_source_changes_what_came_from_it():
    proxy_old = _reg("proxy", CONTAINER, {"ports": [1]})
    proxy_new = _reg("proxy", CONTAINER, {"ports": [2]})
    cmd = dict(inputs={"create": "x", "triggers": ["proxy-id"]}, replace_on_changes=("triggers[*]",))
    command_old = _reg("s", COMMAND, **cmd)
    command_new = _reg("s", COMMAND, **cmd, property_dependencies={"triggers": (proxy_new.urn,)})
    verdicts = matrix.classify(_Run(proxy_old, command_old), _Run(proxy_new, command_new))
    assert verdicts[command_old.urn].kind == matrix.REPLACED
    # A rebuilt image (an update of the native Image) gives the containers running it a new image ID.
    image_old, image_new = _reg("i", IMAGE, {"build": {"args": {"B": "1"}}}), _reg("i", IMAGE, {"build": {"args": {"B": "2"}}})
    app_old = _reg("app", CONTAINER, {"image": "sha256:x"})
    app_new = _reg("app", CONTAINER, {"image": "sha256:x"}, property_dependencies={"image": (image_new.urn,)})
    verdicts = matrix.classify(_Run(image_old, app_old), _Run(image_new, app_new))
    assert verdicts[image_old.urn].kind == matrix.UPDATED and verdicts[app_old.urn].kind == matrix.REPLACED
    # ... unless the container ignores that input.
    frozen = _reg("app", CONTAINER, {"image": "sha256:x"}, property_dependencies={"image": (image_new.urn,)}, ignore_changes=("image",))
    assert matrix.classify(_Run(image_old, app_old), _Run(image_new, frozen))[app_old.urn].kind == matrix.UNTOUCHED


def test_an_input_the_facts_do_not_know_stops_the_matrix():
    old, new = _reg("c", CONTAINER, {"deviceCgroupRules": []}), _reg("c", CONTAINER, {"deviceCgroupRules": ["a *:* rwm"]})
    with pytest.raises(LookupError, match="deviceCgroupRules"):
        matrix.classify(_Run(old), _Run(new))


# --- the vendored facts ----------------------------------------------------------------------------


def test_the_vendored_lists_agree_with_the_project_facts_for_5_1_0():
    """The shared facts (5.1.0's schema) and the vendored file (5.1.0 and the newest master, the
    5.2.0 SDK checked against it) must not disagree on any resource both cover."""
    shared = Path(ROOT).parent / "shared" / "facts" / "pulumi-docker-5.1.0-replace-on-change.json"
    if not shared.is_file():
        shared = Path("/work/shared/facts/pulumi-docker-5.1.0-replace-on-change.json")
    if not shared.is_file():
        pytest.skip("the project's shared facts are not on this machine")
    older = json.loads(shared.read_text())["resources"]
    for type_, facts in matrix.FACTS.items():
        if type_ in older:
            assert facts["replaceOnChanges"] == older[type_], type_


def test_every_container_input_the_program_sets_is_in_the_facts():
    run = run_program("prod")
    known = set(matrix.FACTS[CONTAINER]["inputs"])
    for container in run.of_type(CONTAINER):
        assert set(container.inputs) <= known, (container.name, sorted(set(container.inputs) - known))
