"""stacks/ownership.py: who may act on a stack, decided from its containers' owner labels (pure)."""

from __future__ import annotations

import re
import subprocess

import pytest

from stacks.ownership import MANAGED_BY, PULUMI, SIMULATOR, foreign, listing_command, owner_labels, parse_listing, refusal
from stacks.spec import load_stack
from stacks.topology import stack_containers


def test_the_owner_mark_is_outside_the_fingerprint():
    # Both executors compute the same fingerprint from the spec; the mark is each one's own.
    spec = load_stack("ci")
    for c in stack_containers(spec):
        marked = owner_labels(c.labels_with_fingerprint(), PULUMI)
        assert marked[MANAGED_BY] == PULUMI
        assert marked["cutover.fingerprint"] == c.fingerprint()
    with pytest.raises(ValueError):
        owner_labels({}, "terraform")


def test_only_the_other_executors_containers_are_foreign():
    owners = {"a": PULUMI, "b": SIMULATOR, "c": None}
    assert foreign(owners, SIMULATOR) == ["a"]
    assert foreign(owners, PULUMI) == ["b"]
    assert foreign({"c": None}, PULUMI) == []  # unlabelled: made before the mark existed


@pytest.mark.parametrize("me", [PULUMI, SIMULATOR])
def test_a_refusal_is_one_sentence_naming_stack_containers_and_remedy(me):
    other = SIMULATOR if me == PULUMI else PULUMI
    owners = {f"cutover-ci-{n}": other for n in ("proxy", "db", "blue-1", "blue-2", "green-1")}
    message = refusal("ci", owners, me)
    assert message is not None and message.endswith(".") and not re.search(r"[.!?]\s", message)
    assert "cutover-ci-blue-1, cutover-ci-blue-2, cutover-ci-db and 2 more" in message
    assert f"{MANAGED_BY}={other}" in message
    assert ("pulumi destroy -s ci" if me == SIMULATOR else "cutover down --stack ci") in message
    assert refusal("ci", {name: me for name in owners}, me) is None


def test_the_listing_command_is_parsed_as_docker_prints_it():
    # The real docker CLI's format engine, on a container that does not exist: the template must parse.
    command = listing_command("ci", "cutover")
    assert "--filter label=cutover.stack=ci" in command and "--all" in command
    assert parse_listing("cutover-ci-proxy\tpulumi\ncutover-ci-db\t\n\n") == {"cutover-ci-proxy": "pulumi", "cutover-ci-db": None}


def test_the_listing_command_runs_against_the_engine():
    docker_cli = subprocess.run(["sh", "-c", "command -v docker"], capture_output=True, text=True)
    if docker_cli.returncode != 0:
        pytest.skip("no docker CLI here")
    result = subprocess.run(["sh", "-c", listing_command("robust-no-such-stack", "cutover")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert parse_listing(result.stdout) == {}
