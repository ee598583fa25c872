"""What the program asks the stack's Docker engine at program time (pulumi-command's ``local.run``
invoke, run on the machine that runs `pulumi`, with the stack's DOCKER_HOST).

- the engine's platform (``docker version``): images are built for the machine that runs them,
  so an arm64 laptop driving an amd64 host builds amd64;
- who manages the stack's containers (``docker ps`` and their ``cutover.managed-by`` label): a
  stack the simulator created is refused, never silently adopted (stacks/ownership.py).

An invoke runs in `pulumi preview` as well, so both are known before anything is changed. Under
Pulumi's mocks the test harness answers these invokes (tests/unit/pulumi_harness.py).
"""

from __future__ import annotations

import re

import pulumi
from pulumi_command import local

from stacks.ownership import PULUMI, listing_command, parse_listing, refusal
from stacks.spec import PROJECT, StackSpec

PLATFORM_COMMAND = "docker version --format '{{.Server.Os}}/{{.Server.Arch}}'"
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")


def run_on_engine(spec: StackSpec, command: str, what: str) -> str:
    """``command``'s stdout; a failure (no docker CLI, no engine) is one sentence, not a traceback."""
    try:
        result = local.run(command=command, environment={"DOCKER_HOST": spec.docker_host})
    except Exception as exc:  # an invoke error arrives as a plain Exception (grpc) with a long text
        first = str(exc).strip().splitlines()[-1:] or [exc.__class__.__name__]
        raise pulumi.RunError(
            f"could not read {what} from the Docker engine at {spec.docker_host} ({first[0].rstrip('.')}); "
            f"check that the docker CLI is installed here and the engine answers (`docker version`)."
        ) from None
    return result.stdout or ""


def engine_platform(spec: StackSpec) -> str:
    """``os/arch`` of the engine that builds and runs the stack's images, e.g. ``linux/amd64``."""
    text = run_on_engine(spec, PLATFORM_COMMAND, "its platform").strip()
    if not _PLATFORM.fullmatch(text):
        raise pulumi.RunError(f"the Docker engine at {spec.docker_host} reported the platform {text!r}, which is not os/arch.")
    return text


def refuse_foreign_stack(spec: StackSpec) -> None:
    """Stop (``pulumi.RunError``, one sentence) if the simulator manages this stack's containers."""
    owners = parse_listing(run_on_engine(spec, listing_command(spec.stack, PROJECT), "the stack's containers"))
    message = refusal(spec.stack, owners, PULUMI)
    if message:
        raise pulumi.RunError(message)
