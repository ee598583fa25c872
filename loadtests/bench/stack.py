"""The stack make bench and make soak run on: the demo under an app name of the stack's own (its
artefacts are that stack's alone: the tests that forget the demo's images never take them), one
container per colour, 1.0.0 on blue (live) and 2.0.0 on green, written under the state directory."""

from __future__ import annotations

from pathlib import Path

import docker.errors
import yaml

from simulator.ledger import state_dir

REPO = Path(__file__).resolve().parents[2]
DEMO_APP = REPO / "examples/demo/cutover-app.yaml"
VERSIONS = ("1.0.0", "2.0.0")


def app_name(stack: str) -> str:
    return f"cutover-{stack}-demo"


def write_stack(stack: str, port: int) -> Path:
    """Writes the app definition and Pulumi.<stack>.yaml; returns their directory (for CUTOVER_STACKS_DIR)."""
    directory = state_dir(stack) / "bench-stacks"
    directory.mkdir(parents=True, exist_ok=True)
    app = yaml.safe_load(DEMO_APP.read_text())
    app["name"] = app_name(stack)
    app["image"]["build"]["context"] = str(DEMO_APP.parent.resolve())
    app["locustfile"] = str((DEMO_APP.parent / app["locustfile"]).resolve())
    (directory / "cutover-app.yaml").write_text(yaml.safe_dump(app, sort_keys=False))
    base = yaml.safe_load((REPO / "stacks/Pulumi.ci.yaml").read_text())["config"]
    config = {**base, "cutover:app": str(directory / "cutover-app.yaml"), "cutover:poolSize": 1, "cutover:livePort": port,
              "cutover:previewPort": port + 1, "cutover:blueVersion": VERSIONS[0], "cutover:greenVersion": VERSIONS[1],
              "cutover:liveColor": "blue", "cutover:drainSeconds": 10}
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    return directory


def forget_images(client, stack: str) -> None:
    """Remove the stack's app artefacts (call with the stack down): a version stays bound to the
    source it was first built from, so after the demo changed its old images would be refused."""
    for image in client.images.list(filters={"label": [f"cutover.app={app_name(stack)}"]}):
        for tag in image.tags or [image.id]:
            try:
                client.images.remove(tag, force=True)
            except docker.errors.APIError:
                pass  # already gone with another tag of the same image
