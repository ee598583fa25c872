"""The pure planner: hand-built observed states in, lists of actions out. No Docker."""

from __future__ import annotations

from dataclasses import replace

import pytest

from simulator.planner import Action, Observed, ObservedContainer, current_versions, plan_deploy, plan_up
from stacks.spec import COLOURS, load_stack
from stacks.topology import (
    ContainerSpec,
    app_container_name,
    network_name,
    proxy_container_name,
    proxy_state_volume,
    stack_containers,
)


@pytest.fixture
def spec():
    return load_stack("ci")


def observed_from(containers: list[ContainerSpec], *, running: bool = True, network: bool = True, volumes=None) -> Observed:
    """What the driver would observe once exactly ``containers`` had been created from their specs."""
    return Observed(
        containers={
            c.name: ObservedContainer(c.name, c.role, c.colour, c.version, c.fingerprint(), running) for c in containers
        },
        network_exists=network,
        volumes=frozenset(volumes or ()),
    )


def stack_volumes(spec) -> set[str]:
    """Every named volume the stack's containers mount (the proxy's state, and whatever else the topology adds)."""
    return {proxy_state_volume(spec)} | {v.volume for c in stack_containers(spec) for v in c.volumes}


def world_matching(spec, versions=None) -> Observed:
    """An engine on which the stack is exactly as ``plan_up`` would have left it."""
    return observed_from(stack_containers(spec, versions), volumes=stack_volumes(spec))


def with_container(observed: Observed, name: str, **changes) -> Observed:
    containers = dict(observed.containers)
    containers[name] = replace(containers[name], **changes)
    return replace(observed, containers=containers)


def without_container(observed: Observed, name: str) -> Observed:
    containers = {k: v for k, v in observed.containers.items() if k != name}
    return replace(observed, containers=containers)


def kinds_and_targets(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.kind, a.target) for a in actions]


EMPTY = Observed(containers={}, network_exists=False, volumes=frozenset())


# -- plan_up -------------------------------------------------------------------------------------


def test_empty_world_creates_network_volume_proxy_and_both_pools(spec):
    actions = plan_up(spec, EMPTY)
    infrastructure = [a for a in actions if a.container is None]
    creates = [a for a in actions if a.container is not None]
    assert ("create-network", network_name(spec)) in kinds_and_targets(infrastructure)
    assert ("create-volume", proxy_state_volume(spec)) in kinds_and_targets(infrastructure)
    # Network and volumes exist before any container that needs them is created.
    assert actions == infrastructure + creates
    assert all(a.kind == "create" for a in creates)
    roles = [a.container.role for a in creates]
    assert roles.count("proxy") == 1
    assert roles.count("app") == 2 * spec.pool_size
    apps = {app_container_name(spec, c, i) for c in COLOURS for i in range(1, spec.pool_size + 1)}
    assert {proxy_container_name(spec)} | apps <= {a.target for a in creates}
    # Nothing outside the topology (which may hold more than proxy and apps, e.g. a database).
    assert {a.target for a in creates} == {c.name for c in stack_containers(spec)}
    # Every create carries the full definition, at the spec's version for each colour.
    for action in creates:
        assert action.container.name == action.target
        if action.container.role == "app":
            assert action.container.version == spec.version_of(action.container.colour)
            assert action.container.image == spec.app.image_tag(spec.version_of(action.container.colour))


@pytest.mark.parametrize("stack", ["dev", "ci", "prod"])
def test_empty_world_size_follows_the_pool_size(stack):
    spec = load_stack(stack)
    roles = [a.container.role for a in plan_up(spec, EMPTY) if a.kind == "create"]
    assert (roles.count("proxy"), roles.count("app")) == (1, 2 * spec.pool_size)


def test_world_already_matching_needs_nothing(spec):
    assert plan_up(spec, world_matching(spec)) == []


def test_up_is_idempotent_after_applying_its_own_plan(spec):
    """Apply the plan for an empty world to a model of the engine; planning again finds nothing to do."""
    actions = plan_up(spec, EMPTY)
    after = observed_from(
        [a.container for a in actions if a.container],
        network=any(a.kind == "create-network" for a in actions),
        volumes={a.target for a in actions if a.kind == "create-volume"},
    )
    assert plan_up(spec, after) == []


def test_only_the_proxy_state_volume_missing(spec):
    observed = replace(world_matching(spec), volumes=frozenset(stack_volumes(spec) - {proxy_state_volume(spec)}))
    assert kinds_and_targets(plan_up(spec, observed)) == [("create-volume", proxy_state_volume(spec))]


def test_only_the_network_missing(spec):
    observed = replace(world_matching(spec), network_exists=False)
    assert kinds_and_targets(plan_up(spec, observed)) == [("create-network", network_name(spec))]


def test_drifted_app_fingerprint_is_replaced(spec):
    name = app_container_name(spec, "blue", 1)
    observed = with_container(world_matching(spec), name, fingerprint="0000000000000000")
    actions = plan_up(spec, observed)
    assert kinds_and_targets(actions) == [("replace", name)]
    wanted = next(c for c in stack_containers(spec) if c.name == name)
    assert actions[0].container == wanted


def test_drifted_proxy_fingerprint_is_replaced(spec):
    name = proxy_container_name(spec)
    observed = with_container(world_matching(spec), name, fingerprint=None)  # created by hand, no label
    assert kinds_and_targets(plan_up(spec, observed)) == [("replace", name)]


def test_changed_spec_replaces_only_what_it_changes(spec):
    """A new health interval changes every app container (its Docker health check) and never the
    proxy: the proxy's checks are in the backend files proxy-backend reloads; nothing is created or removed."""
    observed = world_matching(spec)
    changed = replace(spec, health_interval_ms=spec.health_interval_ms * 2)
    actions = plan_up(changed, observed)
    assert {a.kind for a in actions} == {"replace"}
    apps = {app_container_name(spec, c, i) for c in COLOURS for i in range(1, spec.pool_size + 1)}
    assert apps <= {a.target for a in actions}
    assert proxy_container_name(spec) not in {a.target for a in actions}
    # ...and exactly the containers whose definition the new interval changes.
    changed_names = {c.name for c in stack_containers(changed) if c.fingerprint() != observed.containers[c.name].fingerprint}
    assert {a.target for a in actions} == changed_names


def test_stopped_container_is_started(spec):
    name = app_container_name(spec, "green", 2)
    observed = with_container(world_matching(spec), name, running=False)
    actions = plan_up(spec, observed)
    assert kinds_and_targets(actions) == [("start", name)]


def test_stopped_and_drifted_is_replaced_not_started(spec):
    name = app_container_name(spec, "green", 2)
    observed = with_container(world_matching(spec), name, running=False, fingerprint="stale")
    assert kinds_and_targets(plan_up(spec, observed)) == [("replace", name)]


def test_missing_container_is_created(spec):
    name = app_container_name(spec, "blue", 2)
    observed = without_container(world_matching(spec), name)
    assert kinds_and_targets(plan_up(spec, observed)) == [("create", name)]


def test_pool_shrunk_removes_the_extra_containers(spec):
    bigger = replace(spec, pool_size=spec.pool_size + 1)
    observed = world_matching(bigger)
    actions = plan_up(spec, observed)
    extras = {app_container_name(spec, c, spec.pool_size + 1) for c in COLOURS}
    removes = [a for a in actions if a.kind == "remove"]
    assert {a.target for a in removes} == extras
    assert all(a.container is None for a in removes)
    # Neither the apps that stay nor the proxy change: the servers are in the backend files.
    assert [a for a in actions if a.kind != "remove"] == []


def test_a_stray_labelled_container_is_removed(spec):
    stray = ObservedContainer("cutover-ci-old-thing", "app", "blue", "0.9.0", "abc", True)
    observed = world_matching(spec)
    observed = replace(observed, containers={**observed.containers, stray.name: stray})
    assert kinds_and_targets(plan_up(spec, observed)) == [("remove", stray.name)]


def test_up_keeps_the_version_a_colour_already_runs(spec):
    """`up` never changes versions: green, deployed to 2.0.0, stays on 2.0.0 even though the spec says 1.0.0."""
    assert spec.green_version != "2.0.0"
    versions = {"blue": spec.blue_version, "green": "2.0.0"}
    observed = world_matching(spec, versions)
    assert current_versions(spec, observed) == versions
    assert plan_up(spec, observed) == []


def test_up_recreates_a_missing_member_at_the_version_its_pool_runs(spec):
    versions = {"blue": spec.blue_version, "green": "2.0.0"}
    name = app_container_name(spec, "green", 1)
    observed = without_container(world_matching(spec, versions), name)
    actions = plan_up(spec, observed)
    assert kinds_and_targets(actions) == [("create", name)]
    assert actions[0].container.version == "2.0.0"
    assert actions[0].container.image == spec.app.image_tag("2.0.0")


def test_up_replaces_a_drifted_member_at_the_version_its_pool_runs(spec):
    versions = {"blue": spec.blue_version, "green": "2.0.0"}
    name = app_container_name(spec, "green", 2)
    observed = with_container(world_matching(spec, versions), name, fingerprint="stale")
    actions = plan_up(spec, observed)
    assert kinds_and_targets(actions) == [("replace", name)]
    assert actions[0].container.version == "2.0.0"


def test_up_keeps_versions_when_the_pool_grows(spec):
    versions = {"blue": "3.1.0", "green": "2.0.0"}
    bigger = replace(spec, pool_size=spec.pool_size + 1)
    actions = plan_up(bigger, world_matching(spec, versions))
    created = {a.target: a.container.version for a in actions if a.kind == "create"}
    assert created == {app_container_name(spec, "blue", spec.pool_size + 1): "3.1.0", app_container_name(spec, "green", spec.pool_size + 1): "2.0.0"}


# -- plan_deploy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("colour", COLOURS)
def test_deploy_touches_only_the_named_colour(spec, colour):
    actions = plan_deploy(spec, world_matching(spec), colour, "2.0.0")
    assert len(actions) == spec.pool_size
    assert {a.target for a in actions} == {app_container_name(spec, colour, i) for i in range(1, spec.pool_size + 1)}
    for action in actions:
        assert action.kind == "replace"
        assert action.container.colour == colour
        assert action.container.version == "2.0.0"
        assert action.container.image == spec.app.image_tag("2.0.0")
        assert dict(action.container.env)["CUTOVER_COLOUR"] == colour


def test_deploy_never_touches_proxy_network_or_volume(spec):
    actions = plan_deploy(spec, EMPTY, "green", "2.0.0")
    assert {a.kind for a in actions} == {"create"}
    assert proxy_container_name(spec) not in {a.target for a in actions}
    assert all(a.container is not None and a.container.role == "app" for a in actions)


def test_deploy_creates_a_missing_member(spec):
    name = app_container_name(spec, "green", 1)
    observed = without_container(world_matching(spec), name)
    actions = plan_deploy(spec, observed, "green", "2.0.0")
    others = [("replace", app_container_name(spec, "green", i)) for i in range(2, spec.pool_size + 1)]
    assert kinds_and_targets(actions) == [("create", name), *others]


def test_deploy_replaces_even_when_the_version_is_unchanged(spec):
    """A deploy always starts from fresh containers, so redeploying the same version still replaces."""
    actions = plan_deploy(spec, world_matching(spec), "blue", spec.blue_version)
    assert [a.kind for a in actions] == ["replace"] * spec.pool_size
    assert all(f"{spec.blue_version} -> {spec.blue_version}" in a.reason for a in actions)


def test_a_read_only_app_has_no_database_container_or_volume():
    from pathlib import Path

    site = load_stack("static-ci", Path(__file__).resolve().parents[2] / "examples/static-site")
    actions = plan_up(site, Observed({}, network_exists=False, volumes=frozenset()))
    roles = {a.container.role for a in actions if a.container}
    assert roles == {"proxy", "app"}
    assert [a.target for a in actions if a.kind == "create-volume"] == [proxy_state_volume(site)]
    for action in actions:
        if action.container and action.container.role == "app":
            # Nothing a database would bring: no secret, no database settings.
            assert action.container.secret_env == ()
            assert {k for k, _ in action.container.env} == {"CUTOVER_COLOUR", "CUTOVER_INSTANCE", "CUTOVER_VERSION"}
