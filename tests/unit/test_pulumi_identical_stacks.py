"""dev, ci and prod are the same system: any difference must be on an explicit, documented list.

Two kinds of keys may differ between stack files:
- environment keys: where a stack runs and how big it is;
- release keys: which versions run and which colour is live. They move during a rollout (dev runs
  a version before prod does), so the resource comparison below pins them to dev's values and
  compares the environments alone.
Every other key, and every resource input not explained by the allow-list, must be identical.

Secret values (the database password: generated per stack) are compared as ``<secret>``: which
variables carry a secret, and that they are secret, must still be identical.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from pulumi_harness import (
    COMMAND, CONTAINER, DOCKER_PROVIDER, LINT_GATE, LIVE_CHECK, LIVE_COLOUR, ROOT, SMOKE_TEST, STACKS_DIR, flatten, redact, run_program,
    stack_config,
)

from stacks.spec import STACK_FILE_KEYS, known_stacks

STACKS = ("dev", "ci", "prod")
# The swarm kind's shipped stack: compared with these where it must be identical in test_pulumi_swarm.py.
SWARM_STACKS = ("cluster",)

ENVIRONMENT_KEYS = {
    "docker:host": "each stack talks to its own Docker engine",
    "cutover:poolSize": "prod carries more load; the number of containers per colour follows it",
    "cutover:bindAddress": "prod serves other machines, dev and ci only the local one",
    "cutover:previewBindAddress": "where smoke tests run from; loopback in all three today",
    "cutover:livePort": "stacks sharing one machine need their own ports",
    "cutover:previewPort": "stacks sharing one machine need their own ports",
}
# The simulator's own settings (Pulumi never reads them): a stack file may set them or not.
SIMULATOR_KEYS = {
    "cutover:watchSeconds": "ci rehearses a flip every few seconds; its switches watch 3 s, not the default 10 s",
}
RELEASE_KEYS = {
    "cutover:blueVersion": "release state: a version reaches dev before prod",
    "cutover:greenVersion": "release state: a version reaches dev before prod",
    "cutover:liveColor": "release state: each stack switches on its own schedule",
}

# (resource type, input path pattern) -> which allowed key explains the difference.
ALLOWED_INPUT_DIFFERENCES = {
    (DOCKER_PROVIDER, r"host"): "docker:host",
    (COMMAND, r"environment\.DOCKER_HOST"): "docker:host",
    (CONTAINER, r"ports\.\d+\.external"): "cutover:livePort / cutover:previewPort",
    (CONTAINER, r"ports\.\d+\.ip"): "cutover:bindAddress / cutover:previewBindAddress",
    # A digest of the container's own inputs, so it moves with every allowed difference above.
    (CONTAINER, r"labels\.cutover\.fingerprint"): "the allowed differences above",
    # The deploy gates carry the stack's raw config (they rebuild its spec), simulator keys included.
    **{(gate, r"config\.cutover:watchSeconds"): "cutover:watchSeconds (a simulator key)" for gate in (LINT_GATE, LIVE_CHECK, SMOKE_TEST)},
    (LIVE_COLOUR, r"docker_host"): "docker:host",
    # The release gates carry the stack's raw config (their provider rebuilds the spec from it).
    **{(gate, rf"config\.{re.escape(key)}"): key for gate in (LINT_GATE, LIVE_CHECK, SMOKE_TEST) for key in ENVIRONMENT_KEYS},
}
POOL_MEMBER = re.compile(r"-(blue|green)-(\d+)$")
SERVER_LINE = re.compile(r"^\s+server\s", re.MULTILINE)


def _normalise(value: Any, stack: str) -> Any:
    """Take the stack's own name out of names and labels: it differs by definition."""
    if isinstance(value, str):
        return "<stack>" if value == stack else value.replace(f"cutover-{stack}", "cutover-<stack>")
    if isinstance(value, dict):
        return {k: _normalise(v, stack) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, stack) for v in value]
    return value


def _without_server_lines(config: str) -> str:
    # HAProxy lists one `server` line per pool member: that count is the pool size, checked apart.
    return "\n".join(line for line in config.splitlines() if not SERVER_LINE.match(line))


def _resource_inputs(run) -> dict[tuple[str, str], dict[str, Any]]:
    table = {}
    for r in run.resources:
        flat = flatten(_normalise(redact(r.inputs, run.secret_values), run.stack))
        # Each colour's backend in the proxy (installed by its proxy-backend command) lists its servers.
        for path in [p for p in flat if re.fullmatch(r"uploads\.\d+\.content|environment\.CUTOVER_BACKEND", p)]:
            flat[path] = _without_server_lines(flat[path])
        table[(r.type, _normalise(r.name, run.stack))] = flat
    return table


def _shape(run) -> set[tuple]:
    parents = {r.urn: r for r in run.resources}

    def key(r):
        parent = parents.get(r.parent)
        parent_key = (parent.type, _normalise(parent.name, run.stack)) if parent else ("<root>", "")
        return (r.type, POOL_MEMBER.sub(r"-\1-<n>", _normalise(r.name, run.stack)), parent_key)

    return {key(r) for r in run.resources}


def _allowed(type_: str, path: str) -> bool:
    return any(type_ == t and re.fullmatch(pattern, path) for t, pattern in ALLOWED_INPUT_DIFFERENCES)


@pytest.fixture(scope="module")
def runs():
    # Same release everywhere (dev's), so only the environment can make the stacks differ.
    release = {key: stack_config("dev")[key] for key in RELEASE_KEYS}
    return {stack: run_program(stack, release) for stack in STACKS}


def _unexplained_keys(configs: dict[str, dict[str, str]]) -> set[str]:
    differing = {key for key in STACK_FILE_KEYS if len({config.get(key) for config in configs.values()}) > 1}
    return differing - set(ENVIRONMENT_KEYS) - set(RELEASE_KEYS) - set(SIMULATOR_KEYS)


def test_every_stack_file_sets_every_key_and_differs_only_on_allowed_keys():
    assert sorted(known_stacks(STACKS_DIR)) == sorted(STACKS + SWARM_STACKS)
    configs = {stack: stack_config(stack) for stack in STACKS}
    for stack, config in configs.items():
        assert set(config) - set(SIMULATOR_KEYS) == set(STACK_FILE_KEYS), stack
    assert not _unexplained_keys(configs), sorted(_unexplained_keys(configs))


def test_every_stack_deploys_the_same_app():
    # The app definition is the system itself, not the environment: prod must run what ci tested.
    assert "cutover:app" not in ENVIRONMENT_KEYS and "cutover:app" not in RELEASE_KEYS
    assert len({stack_config(stack)["cutover:app"] for stack in STACKS}) == 1
    # Proof that the key check can fail on it: ci pointed at another app definition.
    drifted = {stack: stack_config(stack) for stack in STACKS}
    drifted["ci"]["cutover:app"] = "../examples/static-site/cutover-app.yaml"
    assert _unexplained_keys(drifted) == {"cutover:app"}


def test_the_three_resource_trees_have_the_same_shape(runs):
    shapes = {stack: _shape(run) for stack, run in runs.items()}
    for a, b in itertools.combinations(STACKS, 2):
        assert shapes[a] == shapes[b], f"{a} vs {b}: only in {a}: {shapes[a] - shapes[b]}; only in {b}: {shapes[b] - shapes[a]}"


def test_pool_size_is_the_only_reason_for_more_containers(runs):
    for stack, run in runs.items():
        size = int(run.config["cutover:poolSize"])
        for colour in ("blue", "green"):
            members = sorted(int(m.group(2)) for r in run.of_type(CONTAINER) if (m := POOL_MEMBER.search(r.name)) and m.group(1) == colour)
            assert members == list(range(1, size + 1)), (stack, colour)
            backend = run.named(COMMAND, f"cutover-backend-{colour}").inputs["environment"]["CUTOVER_BACKEND"]
            assert len(SERVER_LINE.findall(backend)) == size, (stack, colour)
        # The proxy container itself lists no server: pool size is not one of its inputs.
        (proxy,) = [r for r in run.of_type(CONTAINER) if r.name.endswith("-proxy")]
        assert not any(SERVER_LINE.search(u["content"]) for u in proxy.inputs["uploads"]), stack


def _unexplained(runs) -> list[str]:
    tables = {stack: _resource_inputs(run) for stack, run in runs.items()}
    unexplained = []
    for a, b in itertools.combinations(tables, 2):
        # Pool members beyond the smaller pool exist in one stack only: covered by the pool-size test.
        for resource in sorted(set(tables[a]) & set(tables[b])):
            left, right = tables[a][resource], tables[b][resource]
            for path in sorted(set(left) | set(right)):
                if left.get(path, "<absent>") != right.get(path, "<absent>") and not _allowed(resource[0], path):
                    unexplained.append(f"{a} vs {b}: {resource[1]} {path}: {left.get(path, '<absent>')!r} != {right.get(path, '<absent>')!r}")
    return unexplained


def test_inputs_differ_only_where_the_allow_list_says(runs):
    unexplained = _unexplained(runs)
    assert not unexplained, "differences outside the allow-list:\n" + "\n".join(unexplained)


def test_secrets_are_compared_by_name_not_value(runs):
    passwords = {stack: run.secret_values for stack, run in runs.items()}
    assert all(passwords.values()) and len(set(passwords.values())) == len(STACKS), "each stack has its own password"
    for stack, run in runs.items():
        db = _resource_inputs(run)[(CONTAINER, "cutover-<stack>-db")]
        assert "POSTGRES_PASSWORD=<secret>" in db.values(), stack


def test_a_difference_outside_the_allow_list_is_caught(runs):
    # Proof that the comparison above can fail: ci checking health more slowly than dev and prod.
    release = {key: stack_config("dev")[key] for key in RELEASE_KEYS}
    drifted = {**runs, "ci": run_program("ci", {**release, "cutover:healthIntervalMs": "2000"})}
    found = _unexplained(drifted)
    assert any("cutover-<stack>-blue-1 healthcheck.interval: '1s' != '2s'" in line for line in found), found
    # HAProxy's check interval too, in each colour's backend (never in the proxy container's inputs).
    assert any("cutover-backend-blue environment.CUTOVER_BACKEND" in line for line in found), found
    assert not any("cutover-<stack>-proxy" in line for line in found), found


def test_the_allow_list_is_documented():
    text = (ROOT / "docs" / "pulumi.md").read_text()
    for key in [*ENVIRONMENT_KEYS, *RELEASE_KEYS]:
        assert f"`{key}`" in text, key
