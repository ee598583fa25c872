"""Run the real Pulumi program (``__main__.py``) under Pulumi's unit-test mocks and record it.

No Pulumi engine or provider plugin is involved: ``pulumi.runtime.set_mocks`` swaps the engine for
an in-process monitor. This harness subclasses that monitor so it also sees what mocks normally
hide — parent, provider, dependencies and ``deleteBeforeReplace`` of every registration — and it
fails a run that registers two resources under one URN (the mock engine would silently accept it).

Pitfalls handled here, each of which makes mock tests pass while asserting nothing:
- mocks are installed *before* the program builds anything, with ``preview=False`` (in preview,
  applies never run and outputs stay unknown);
- the stack YAML does not reach the program by itself: it is loaded and handed over with
  ``set_all_config``, every value a string, exactly as the Pulumi CLI hands it over;
- the runtime keeps global state (root stack resource, settings, config), so every run starts
  from fresh settings, a fresh root stack, new mocks and a new monitor.
"""

from __future__ import annotations

import json
import runpy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "__main__.py"
PROJECT = "cutover"

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/image:Image"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
DOCKER_PROVIDER = "pulumi:providers:docker"
COMMAND = "command:local:Command"
APP_POOL = "cutover:index:AppPool"
PROXY = "cutover:index:Proxy"
SERVICE = "cutover:index:BlueGreenService"


@dataclass(frozen=True)
class Registration:
    """One resource as the engine saw it. ``inputs`` arrive camelCase (``networksAdvanced``)."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    dependencies: tuple[str, ...]
    delete_before_replace: bool
    inputs: dict[str, Any]


@dataclass(frozen=True)
class ProgramRun:
    stack: str
    config: dict[str, str]
    resources: tuple[Registration, ...]
    # The service's outputs after every apply has run (snake_case, as the program sees them).
    outputs: dict[str, Any]

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Registration:
        (match,) = [r for r in self.resources if r.type == type_ and r.name == name]
        return match

    def children_of(self, parent: Registration) -> list[Registration]:
        return [r for r in self.resources if r.parent == parent.urn]


class _Mocks(pulumi.runtime.Mocks):
    """Answers like a provider would: an id, the inputs echoed back, plus the outputs we read."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ == IMAGE:
            state["repoDigest"] = f"sha256:mock-{args.inputs['imageName']}"
        if args.typ == COMMAND:
            state["stdout"] = f"live={args.inputs['environment']['LIVE_COLOR']}"
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        raise AssertionError(f"the program made an unexpected provider call: {args.token}")


class _RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=request.custom,
                    provider=request.provider,
                    dependencies=tuple(request.dependencies),
                    delete_before_replace=request.deleteBeforeReplace,
                    # The base class deserialised these already, but does not keep them.
                    inputs=rpc.deserialize_properties(request.object),
                )
            )
        return response


def stack_config(stack: str) -> dict[str, str]:
    """The stack file's values as the strings the Pulumi CLI would pass to the program."""
    document = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in document["config"].items()}


def run_program(stack: str, overrides: Mapping[str, str] | None = None, drop: tuple[str, ...] = ()) -> ProgramRun:
    """Run ``__main__.py`` for ``stack`` (its YAML, with ``overrides`` applied and ``drop`` removed)."""
    config = {**stack_config(stack), **(overrides or {})}
    for key in drop:
        config.pop(key, None)
    if not all(isinstance(v, str) for v in config.values()):
        raise TypeError("Pulumi config values reach a program as strings; pass strings")

    mocks = _Mocks()
    monitor = _RecordingMonitor(mocks)
    # Fresh settings and no root resource, so set_mocks creates a new root stack for this stack.
    pulumi.runtime.settings.reset_options(project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config)

    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program():
        service = runpy.run_path(str(PROGRAM), run_name="__main__")["service"]
        watched = {
            "live_colour": service.live_colour,
            "live_url": service.live_url,
            "preview_url": service.preview_url,
            "switch_output": service.switch.stdout,
            "proxy_container_name": service.proxy.container_name,
            "proxy_image": service.proxy.image,
            "proxy_image_digest": service.proxy.image_digest,
        }
        for colour, pool in service.pools.items():
            watched[f"{colour}_version"] = pool.version
            watched[f"{colour}_image"] = pool.image
            watched[f"{colour}_image_digest"] = pool.image_digest
            watched[f"{colour}_container_names"] = pool.container_names
        # Returning the output makes the test decorator await it, and every RPC, before returning.
        return pulumi.Output.all(**watched).apply(outputs.update)

    program()

    resources = tuple(monitor.registrations)
    duplicates = sorted(urn for urn, count in Counter(r.urn for r in resources).items() if count > 1)
    if duplicates:
        raise AssertionError(f"the program registered these URNs more than once: {duplicates}")
    return ProgramRun(stack=stack, config=config, resources=resources, outputs=outputs)


def labels(inputs: Mapping[str, Any]) -> dict[str, str]:
    """pulumi-docker takes labels as a list of {label, value}; compare them as a mapping."""
    return {item["label"]: item["value"] for item in inputs.get("labels") or []}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of an input tree under a dotted path (``ports.0.external``), labels by name."""
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = []
        for key, child in value.items():
            if key == "labels" and isinstance(child, list):
                child = {item["label"]: item["value"] for item in child}
            items.append((key, child))
    elif isinstance(value, (list, tuple)):
        items = [(str(index), child) for index, child in enumerate(value)]
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, child in items:
        flat.update(flatten(child, f"{prefix}.{key}" if prefix else key))
    if not items:
        flat[prefix] = value  # keep empty lists and maps visible, so [] vs [x] is a difference
    return flat
