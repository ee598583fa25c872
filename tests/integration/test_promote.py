"""Promotion by digest: a version reaches the next stack only as the exact image that went live on
the stack before it (by that stack's ledger). Real Docker, two stacks of the static site."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest
import yaml

from tests.conftest import remove_app_images, run_cli, static_site_copy, write_stack_file

pytestmark = pytest.mark.docker

APP = "promo-site"
LOWER, UPPER = "promo-dev", "promo-ci"


@pytest.fixture
def stacks(tmp_path, state_dir) -> Path:
    directory = static_site_copy(tmp_path / "stacks", APP)
    write_stack_file(directory, LOWER, 19520)
    write_stack_file(directory, UPPER, 19530)
    (directory / "promotion.yaml").write_text(yaml.safe_dump({"order": [LOWER, UPPER]}))
    remove_app_images(APP)
    yield directory
    for stack in (LOWER, UPPER):
        run_cli("--stacks-dir", str(directory), "down", "--stack", stack, "--volumes", "--ledger")
    remove_app_images(APP)


def cli(stacks: Path, *args: str):
    return run_cli("--stacks-dir", str(stacks), *args, timeout=600)


def pools(stacks: Path, stack: str) -> dict:
    return json.loads(cli(stacks, "status", "--stack", stack, "--json").stdout)["pools"]


def test_only_what_went_live_below_is_promoted_and_it_is_the_same_image(stacks):
    for stack in (LOWER, UPPER):
        assert cli(stacks, "up", "--stack", stack).returncode == 0
    assert cli(stacks, "deploy", "--stack", LOWER, "2.0.0").returncode == 0

    # Deployed below but never live there: not proven, so not promoted.
    refused = cli(stacks, "promote", "2.0.0", "--to", UPPER)
    assert refused.returncode == 1
    assert "version 2.0.0 never went live on stack promo-dev" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert {p["version"] for p in pools(stacks, UPPER).values()} == {"1.0.0"}

    assert cli(stacks, "switch", "--stack", LOWER).returncode == 0
    proven = pools(stacks, LOWER)["green"]["image_id"]
    # The source changes after the proof: a promotion does not rebuild, it moves the proven image.
    (stacks / "site/index.html").write_text((stacks / "site/index.html").read_text() + "<p>later work</p>\n")
    promoted = cli(stacks, "promote", "2.0.0", "--to", UPPER)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    upper = pools(stacks, UPPER)
    assert upper["green"]["version"] == "2.0.0" and upper["green"]["image_id"] == proven
    container = docker.from_env().containers.get(f"cutover-{UPPER}-green-1")
    assert container.attrs["Image"] == proven

    first = cli(stacks, "promote", "2.0.0", "--to", LOWER)
    assert first.returncode == 1 and "first in the promotion order" in first.stderr
    audit = json.loads(cli(stacks, "audit", "--stack", UPPER, "--json").stdout)
    (row,) = [r for r in audit if r.get("command") == "promote" and r.get("outcome") == "ok"]
    assert row["artefact"] == proven and row["args"]["from_stack"] == LOWER


def test_the_pulumi_switch_record_is_accepted_by_the_real_ledger(stacks):
    """The command the Pulumi program runs after a switch, run for real (outside the engine) against
    a real ledger: the chain stays intact and audit and metrics read the record as a switch."""
    import os
    import subprocess

    from components.switch import ledger_record_args, switch_record
    from stacks.spec import load_stack

    assert cli(stacks, "up", "--stack", LOWER).returncode == 0
    spec = load_stack(LOWER, stacks)
    args = ledger_record_args(spec, f"cutover-{LOWER}-ledger", "cutover-state:1", "sha256:" + "0" * 64)
    record = json.dumps(switch_record(spec, "sha256:" + "0" * 64), sort_keys=True, separators=(",", ":"))
    env = {**os.environ, "RECORD": record, "DOCKER_HOST": args["environment"]["DOCKER_HOST"]}
    ran = subprocess.run(["sh", "-c", args["create"]], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert cli(stacks, "audit", "verify", "--stack", LOWER).returncode == 0
    rows = json.loads(cli(stacks, "audit", "--stack", LOWER, "--json").stdout)
    assert [r["actor"] for r in rows if r.get("command") == "switch"] == ["pulumi up"]
