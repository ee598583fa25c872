"""The deploy gates of `cutover deploy`, as resources of `pulumi up` (Pulumi dynamic providers).

Each gate calls the very code `cutover deploy` runs (simulator/gates.py, simulator/schema.py), on
the stack's own engine (``docker:host``); its ``create`` fails with that code's one sentence when the
gate fails, so what depends on it is never created:

- :class:`ExpandLintGate` (one per version with a migration run): the lint gate of the version's
  pending expand steps, against the live version, before the migration container. With nothing
  live yet (a stack's first `up`) there is no running version to protect and, as `cutover up`,
  nothing is linted.
- :class:`LiveVersionCheck` (one per migration run): after the expand steps, the live version's
  smoke checks and write/read probe through the live port; only when steps were pending.
- :class:`PreviewSmokeTest` (one per colour): once the colour runs its version and the proxy
  stamps it, the app's smoke checks and write probe, through the port that serves the colour now
  (the preview port for the idle colour), before the switch.

A gate runs again when what it judges changes (its version, image or colour); other config changes
do not re-run it. The stack is rebuilt from its raw config values in the provider (the same
``spec_from_config`` as the program), since a provider's inputs must be plain data.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

# Never part of the outputs: the database password the lint gate's migration runs need.
SECRETS = "secrets"


class GateFailed(Exception):
    """One sentence: which gate failed and why (what depends on the gate is not created)."""


def stack_spec(props: Mapping[str, Any]):
    """The stack as the program built it: the same validation of the same config values."""
    from stacks.spec import STACKS_DIR, spec_from_config

    return spec_from_config(props["stack"], props["config"], source=f"stacks/Pulumi.{props['stack']}.yaml", stacks_dir=STACKS_DIR)


def _driver(spec, secrets: Mapping[str, str]):
    from simulator.docker_driver import DockerDriver, connect
    from simulator.errors import CutoverError

    def secret(name: str) -> str:
        if name not in secrets:
            raise CutoverError(f"the gate was not given the secret {name}.")
        return secrets[name]

    return DockerDriver(connect(spec.docker_host), spec, secret)


def lint_gate(props: Mapping[str, Any]) -> dict[str, Any]:
    """`cutover deploy`'s lint gate of ``version``'s pending expand steps (nothing applied)."""
    from simulator.gates import live_release
    from simulator.schema import schema_for

    spec = stack_spec(props)
    driver = _driver(spec, props.get(SECRETS) or {})
    live, live_version, live_image = live_release(driver)
    if not live_version:
        return {"steps": [], "live_version": None}
    schema = schema_for(driver)
    images = {live_version: live_image, props["version"]: props.get("image") or None}
    # Migration runs use each version's artefact by image ID, as the simulator's do.
    schema.image_of = lambda version: images.get(version)
    return {"steps": schema.lint_gate(props["version"], live_version), "live_version": live_version}


def live_check(props: Mapping[str, Any]) -> dict[str, Any]:
    """`cutover deploy`'s check after expand: the live version still writes and reads."""
    from simulator.gates import live_after_expand, live_release

    spec = stack_spec(props)
    live, live_version, _ = live_release(_driver(spec, {}))
    notes: list[str] = []
    checked = live_after_expand(spec, live, live_version, list(props.get("steps") or []), notes.append)
    return {"checked": f"{live} {live_version}" if checked else None, "notes": notes}


def preview_smoke(props: Mapping[str, Any]) -> dict[str, Any]:
    """`cutover deploy`'s smoke test of the colour, before the switch can send it live traffic."""
    from simulator.gates import release_checks
    from simulator.proxy_api import ProxyAPI
    from stacks.topology import proxy_container_name

    spec = stack_spec(props)
    colour, version = props["colour"], props["version"]
    proxy = ProxyAPI(_driver(spec, {}).container(proxy_container_name(spec)))
    # The idle colour is on the preview port; the live one (a stack's first `up`) on the live port.
    port, url = ("live", spec.live_url()) if proxy.colours()["live"] == colour else ("preview", spec.preview_url())
    servers = release_checks(spec, url, colour, version, f"{colour} {version}")
    return {"port": port, "servers": servers}


class _GateProvider(ResourceProvider):
    serialize_as_secret_always = False
    # The inputs whose change means "judge again".
    judges: tuple[str, ...] = ()
    kind = "gate"

    def run(self, props: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def create(self, props: dict[str, Any]) -> CreateResult:
        key = "-".join(str(props.get(k)) for k in self.judges)
        return CreateResult(f"{props['stack']}-{self.kind}-{key}", self._judge(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._judge(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in self.judges if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # a gate leaves nothing behind

    def _judge(self, props: dict[str, Any]) -> dict[str, Any]:
        from simulator.errors import CutoverError
        from stacks.app import AppError
        from stacks.spec import SpecError

        try:
            found = self.run(props)
        except (CutoverError, SpecError, AppError) as exc:
            raise GateFailed(str(exc)) from None
        except Exception as exc:  # the engine or the network: still one sentence, not our trace
            raise GateFailed(f"the {self.kind} gate could not run: {exc.__class__.__name__}: {exc}") from None
        return {**{k: v for k, v in props.items() if k != SECRETS}, **found}


class LintGateProvider(_GateProvider):
    judges = ("version", "image")
    kind = "lint"

    def run(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return lint_gate(props)


class LiveCheckProvider(_GateProvider):
    judges = ("version", "steps")
    kind = "live-check"

    def run(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return live_check(props)


class SmokeTestProvider(_GateProvider):
    judges = ("colour", "version", "image")
    kind = "smoke"

    def run(self, props: Mapping[str, Any]) -> dict[str, Any]:
        return preview_smoke(props)


def _props(stack: str, config: Mapping[str, str], **rest: Any) -> dict[str, Any]:
    return {"stack": stack, "config": dict(config), **rest}


class ExpandLintGate(Resource, module="cutover", name="ExpandLintGate"):
    steps: pulumi.Output[list]
    live_version: pulumi.Output[Optional[str]]

    def __init__(self, name: str, stack: str, config: Mapping[str, str], version: str, image: pulumi.Input[str],
                 secrets: Mapping[str, pulumi.Input[str]], opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = _props(stack, config, version=version, image=image, secrets=dict(secrets), steps=None, live_version=None)
        super().__init__(LintGateProvider(), name, props, opts)


class LiveVersionCheck(Resource, module="cutover", name="LiveVersionCheck"):
    checked: pulumi.Output[Optional[str]]

    def __init__(self, name: str, stack: str, config: Mapping[str, str], version: str, steps: pulumi.Input[list],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = _props(stack, config, version=version, steps=steps, checked=None, notes=None)
        super().__init__(LiveCheckProvider(), name, props, opts)


class PreviewSmokeTest(Resource, module="cutover", name="PreviewSmokeTest"):
    port: pulumi.Output[str]
    servers: pulumi.Output[list]

    def __init__(self, name: str, stack: str, config: Mapping[str, str], colour: str, version: str, image: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = _props(stack, config, colour=colour, version=version, image=image, port=None, servers=None)
        super().__init__(SmokeTestProvider(), name, props, opts)




# -- declaring them (components/blue_green_service.py wires these in) -----------------------------


def stack_config() -> dict[str, str]:
    """The stack's raw config values, as the program read them (components/program.py)."""
    from components.program import config_values  # imported here: program imports the service, which imports this

    return config_values()


def declare_lint_gates(spec, versions, images, secrets: Mapping[str, pulumi.Input[str]], depends_on, parent: pulumi.Resource) -> dict:
    """One ExpandLintGate per distinct version, when the app has a database and migrations (else none);
    after the database is up (its describe/current/sql runs need it)."""
    from components.migration import expand_command

    if not spec.app.read_write or expand_command(spec) is None:
        return {}
    config = stack_config()
    return {
        version: ExpandLintGate(
            f"cutover-lint-{version}", spec.stack, config, version, images[version].digest, secrets,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[*depends_on, images[version].resource]),
        )
        for version in sorted(set(versions))
    }


def declare_live_checks(spec, lint_gates: Mapping[str, ExpandLintGate], migrations, parent: pulumi.Resource) -> dict:
    """One LiveVersionCheck per migration run, once it exited 0; its version's pool waits for it."""
    config = stack_config()
    return {
        version: LiveVersionCheck(
            f"cutover-live-check-{version}", spec.stack, config, version, lint_gates[version].steps,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[migration.done, lint_gates[version]]),
        )
        for version, migration in sorted(migrations.items())
        if version in lint_gates
    }


def declare_smoke_test(spec, colour: str, image: pulumi.Input[str], depends_on, parent: pulumi.Resource) -> PreviewSmokeTest:
    """The colour's smoke test, once its pool runs and the proxy stamps its version."""
    return PreviewSmokeTest(
        f"cutover-smoke-{colour}", spec.stack, stack_config(), colour, spec.version_of(colour), image,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
    )
