"""A deploy SIGKILLed during its migration step, for real: the demo app (read-write, PostgreSQL) as
stack `repair` (ports 19720/19721), its expand command made slow for 2.0.0 only. The migration's
one-shot container outlives the killed command; `status` names it, the next changing command
removes it and says so, no raw Docker error anywhere, and the deploy then completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from tests.conftest import demo_copy, REPO_ROOT, remove_app_images
from tests.integration.repair_stack import LIVE_PORT, STACK, cli, command

pytestmark = pytest.mark.docker

APP = "cutover-repair-demo"
MIGRATE = f"cutover-{STACK}-migrate"
# Only 2.0.0's expand waits, so 'up' (1.0.0) is not slowed; the wait gives the test a window to
# kill the deploy in while the migration's container runs, found by a condition, not a sleep.
SLOW_EXPAND = 'if [ "$CUTOVER_VERSION" = 2.0.0 ]; then sleep 12; fi; exec python3 /srv/cutover-demo.pyz migrate expand "$@"'


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repair-demo")
    migrations = yaml.safe_load((REPO_ROOT / "examples/demo/cutover-app.yaml").read_text())["migrations"]
    app_file = demo_copy(root / "demo", APP, migrations={**migrations, "expand": ["sh", "-c", SLOW_EXPAND, "slow-expand"]})
    stack = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.ci.yaml").read_text())
    stack["config"].update({"cutover:app": str(app_file), "cutover:livePort": LIVE_PORT, "cutover:previewPort": LIVE_PORT + 1, "cutover:poolSize": 1,
                            "cutover:drainSeconds": 2})
    (root / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(stack))
    # A state directory of its own for this module, given back afterwards: later tests keep theirs.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CUTOVER_STATE_DIR", str(tmp_path_factory.mktemp("repair-demo-state")))
        cli(root, "down", "--volumes", "--ledger")
        remove_app_images(APP)
        up = cli(root, "up", timeout=1200)
        assert up.returncode == 0, up.stdout + up.stderr
        yield root
        cli(root, "down", "--volumes", "--ledger", timeout=300)
        remove_app_images(APP)


def expanding(client) -> bool:
    """The migration's container is running 2.0.0's (slow) expand step."""
    try:
        container = client.containers.get(MIGRATE)
    except docker.errors.NotFound:
        return False
    return container.status == "running" and "slow-expand" in (container.attrs["Config"].get("Cmd") or [])


def test_a_deploy_killed_during_its_migration_leaves_a_container_the_next_command_removes(stacks):
    client = docker.from_env()
    deploy = subprocess.Popen(command(stacks, "deploy", "2.0.0"), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=os.environ.copy())
    try:
        deadline = time.monotonic() + 900  # includes building 2.0.0
        while not expanding(client):
            assert deploy.poll() is None, "the deploy ended before its expand step ran"
            assert time.monotonic() < deadline, "the deploy never reached its expand step"
            time.sleep(0.1)
        deploy.send_signal(signal.SIGKILL)
    finally:
        deploy.wait(timeout=60)
    assert client.containers.get(MIGRATE).status == "running"  # outlived the command that started it

    status = cli(stacks, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    found = {(f["kind"], f["subject"]): f for f in json.loads(status.stdout)["leftovers"]}
    print(json.dumps(list(found.values()), indent=1))
    assert found[("one-shot", MIGRATE)]["problem"] == f"the migration run of 2.0.0 {MIGRATE} outlived its command (running)"

    began = time.monotonic()
    again = cli(stacks, "deploy", "2.0.0")
    print(again.stdout, again.stderr, f"re-deploy took {time.monotonic() - began:.1f}s")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"repaired: the migration run of 2.0.0 {MIGRATE} outlived its command (running) -> removed" in again.stdout
    assert "Docker engine refused" not in again.stderr and "Traceback" not in again.stderr
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(MIGRATE)
    audit = json.loads(cli(stacks, "audit", "--json").stdout)
    last_deploy = [r for r in audit if r.get("command") == "deploy" and r.get("phase") == "end"][-1]
    assert last_deploy["outcome"] == "ok" and any(MIGRATE in line for line in last_deploy["repaired"]), last_deploy
    after = json.loads(cli(stacks, "status", "--json").stdout)
    assert after["leftovers"] == [] and after["pools"]["green"]["version"] == "2.0.0", after
