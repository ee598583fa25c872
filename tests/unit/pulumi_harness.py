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

The one invoke the program makes, ``command:local:run`` of ``proxy-state`` (which colour is live
now), is answered with what ``run_program(proxy=...)`` says: no proxy yet (the default), a
``ProxyState`` (``deployed(stack, live=...)`` builds the one an earlier ``up`` left), or a failure.

Secrets: the mock RandomPassword answers with a password derived from the stack and the resource
(stable across runs of one stack, different between stacks, unlike any other value), recorded in
``ProgramRun.secret_values`` so tests can look for it everywhere it must not be. Secret inputs and
outputs arrive wrapped (``is_secret``); everything else is plain.
"""

from __future__ import annotations

import hashlib
import json
import os
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
# Pulumi.yaml's stackConfigDir: where the CLI finds stack files, and what `cutover:app` is relative to.
STACKS_DIR = ROOT / "stacks"
PROJECT = "cutover"

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/image:Image"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
SWARM_SERVICE = "docker:index/service:Service"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
SWARM_STACK = "cutover:index:SwarmBlueGreenService"
DOCKER_PROVIDER = "pulumi:providers:docker"
COMMAND = "command:local:Command"
RUN = "command:local:run"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
APP_POOL = "cutover:index:AppPool"
DATABASE = "cutover:index:Database"
PROXY = "cutover:index:Proxy"
SERVICE = "cutover:index:BlueGreenService"
# Python dynamic providers (components/live_colour.py, components/release_gates.py).
LIVE_COLOUR = "pulumi-python:dynamic/cutover:LiveColour"
LINT_GATE = "pulumi-python:dynamic/cutover:ExpandLintGate"
LIVE_CHECK = "pulumi-python:dynamic/cutover:LiveVersionCheck"
SMOKE_TEST = "pulumi-python:dynamic/cutover:PreviewSmokeTest"
# pulumi-command's invoke that runs a command where `pulumi` runs (components/engine.py).
LOCAL_RUN = RUN  # (both names are used by the tests)
DEFAULT_PLATFORM = "linux/amd64"


def mock_id(logical_name: str) -> str:
    """The ID the mock engine gives a resource (a Network's, which containers name it by)."""
    return f"{logical_name}-id"


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
    # Resource options as the SDK sends them to the engine (camelCase property names): what the
    # engine, not the provider, acts on. The mock provider never sees them; this monitor does.
    ignore_changes: tuple[str, ...]
    replace_on_changes: tuple[str, ...]
    retain_on_delete: bool
    # Input property -> the URNs its value came from (what the engine uses to replace dependents).
    property_dependencies: dict[str, tuple[str, ...]]
    # Output names the program asked the engine to keep secret, camelCase (``result``).
    additional_secret_outputs: tuple[str, ...]
    inputs: dict[str, Any]
    # What the (mock) provider answered: the resource's outputs, camelCase.
    state: dict[str, Any]
    # The create/update/delete timeouts the engine sees ("" if unset).
    custom_timeouts: dict[str, str] | None = None


@dataclass(frozen=True)
class ProgramRun:
    stack: str
    config: dict[str, str]
    resources: tuple[Registration, ...]
    # The service's outputs after every apply has run (snake_case, as the program sees them).
    outputs: dict[str, Any]
    # Stack exports (`pulumi stack output`): name -> (value, whether Pulumi keeps it secret).
    exports: dict[str, tuple[Any, bool]]
    # What each component passed to register_outputs, by URN (secret values arrive wrapped).
    component_outputs: dict[str, dict[str, Any]]
    # Every secret value the mocks generated (the database password).
    secret_values: tuple[str, ...]
    # The commands the program ran through pulumi-command's local.run invoke, with their environment.
    local_runs: tuple[tuple[str, dict[str, str]], ...] = ()
    # The invokes the program made: (token, arguments), in order.
    invokes: tuple[tuple[str, dict], ...] = ()

    def spec(self):
        """The spec the program built from this run's config (as ``components.program.load_spec``)."""
        from stacks.spec import spec_from_config

        return spec_from_config(self.stack, self.config, source=f"stacks/Pulumi.{self.stack}.yaml", stacks_dir=STACKS_DIR)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> Registration:
        (match,) = [r for r in self.resources if r.type == type_ and r.name == name]
        return match

    def children_of(self, parent: Registration) -> list[Registration]:
        return [r for r in self.resources if r.parent == parent.urn]


class _Mocks(pulumi.runtime.Mocks):
    """Answers like a provider would: an id, the inputs echoed back, plus the outputs we read."""

    def __init__(
        self,
        stack: str,
        one_shot_exit_codes: Mapping[str, int | None],
        proxy_state: str | Exception,
        engine_platform: str = DEFAULT_PLATFORM,
        existing_containers: Mapping[str, str | None] | None = None,
    ) -> None:
        super().__init__()
        self.stack = stack
        self.one_shot_exit_codes = one_shot_exit_codes
        self.proxy_state = proxy_state
        self.secret_values: list[str] = []
        self.engine_platform = engine_platform
        self.existing_containers = dict(existing_containers or {})
        self.local_runs: list[tuple[str, dict[str, str]]] = []
        self.invokes: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        if args.typ == IMAGE:
            state["repoDigest"] = f"sha256:mock-{args.inputs['imageName']}"
        if args.typ == REMOTE_IMAGE:
            # A local image no registry has seen: an image ID, and no repo digest.
            state["imageId"] = f"sha256:mock-local-{args.inputs['name']}"
            state["repoDigest"] = ""
        if args.typ == COMMAND:
            # What proxy-switch / proxy-backend / proxy-version print.
            environment = args.inputs["environment"]
            if "CUTOVER_VERSION" in environment:
                state["stdout"] = ""  # a prepare step
            elif "RECORD" in environment:
                state["stdout"] = environment["RECORD"]  # the ledger writer prints the line it appended
            elif "LIVE_COLOR" in environment:
                state["stdout"] = f"live={environment['LIVE_COLOR']}"
            elif "CUTOVER_BACKEND" in environment:
                state["stdout"] = f"{args.name.rsplit('-', 1)[1]} backend reloaded"
            else:
                state["stdout"] = f"{args.name.rsplit('-', 1)[1]}={environment['VERSION']}"
        if args.typ == LIVE_COLOUR:
            # What proxy-switch prints, and the colour the proxy had before (the other one). A dynamic
            # resource's properties keep the names the program gave them (snake_case).
            colour = args.inputs["colour"]
            state.update(stdout=f"live={colour}", previous="green" if colour == "blue" else "blue", flipped_at="2026-01-01T00:00:00Z")
        if args.typ == LINT_GATE:
            # The pending expand steps that passed the gate (here: one per version).
            state.update(steps=[f"step-of-{args.inputs['version']}"], live_version=None)
        if args.typ == RANDOM_PASSWORD:
            # Only letters and digits, like the real one with special=False.
            digest = hashlib.sha256(f"{self.stack}/{args.name}".encode()).hexdigest()
            state["result"] = ("Pw" + digest)[: int(args.inputs["length"])]
            self.secret_values.append(state["result"])
        if args.typ == CONTAINER and args.inputs.get("attach"):
            # A one-shot container: the provider reads its exit status back once it has exited.
            state["exitCode"] = self.one_shot_exit_codes.get(args.inputs["name"], 0)
        return mock_id(args.name), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        self.invokes.append((args.token, dict(args.args)))
        if args.token == LOCAL_RUN:
            command = args.args.get("command") or ""
            self.local_runs.append((command, dict(args.args.get("environment") or {})))
            if "proxy-state" in command:
                # What `docker exec <proxy> proxy-state` prints (or `{}`: no proxy container yet).
                if isinstance(self.proxy_state, Exception):
                    # How a failed invoke reaches a program: a failure in the response (an exception
                    # raised here would instead be taken for a bug in the program itself).
                    return {}, [("command", str(self.proxy_state))]
                return {"stdout": self.proxy_state, "stderr": "", "command": command}
            # Dispatch on the command text: each invoke the program makes is answered by its own
            # handler (add one here for a new command; an unknown command fails the run).
            for marker, answer in self._local_run_answers():
                if marker in command:
                    return {"stdout": answer(), "stderr": "", "command": command}
            raise AssertionError(f"the program ran an unexpected local command: {command}")
        raise AssertionError(f"the program made an unexpected provider call: {args.token}")

    def _local_run_answers(self):
        return (
            # components/engine.py: the engine's platform.
            ("docker version", lambda: f"{self.engine_platform}\n"),
            # components/engine.py: the stack's existing containers and their owner label.
            ("docker ps", lambda: "".join(f"{name}\t{owner or ''}\n" for name, owner in self.existing_containers.items())),
        )


class _RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.component_outputs: dict[str, dict[str, Any]] = {}

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
                    ignore_changes=tuple(request.ignoreChanges),
                    replace_on_changes=tuple(request.replaceOnChanges),
                    retain_on_delete=bool(request.retainOnDelete),
                    property_dependencies={key: tuple(deps.urns) for key, deps in request.propertyDependencies.items()},
                    additional_secret_outputs=tuple(request.additionalSecretOutputs),
                    # The base class deserialised these already, but does not keep them.
                    inputs=rpc.deserialize_properties(request.object),
                    state=dict(self.resources[response.urn].state) if request.custom else {},
                    custom_timeouts=_timeouts(request),
                )
            )
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802 (the gRPC method name)
        self.component_outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)


def _timeouts(request) -> dict[str, str] | None:
    if not request.HasField("customTimeouts"):
        return None
    timeouts = request.customTimeouts
    return {"create": timeouts.create, "update": timeouts.update, "delete": timeouts.delete}


def stack_config(stack: str, stacks_dir: Path = STACKS_DIR) -> dict[str, str]:
    """The stack file's values as the strings the Pulumi CLI would pass to the program.

    A stack file from another directory (``examples/static-site/Pulumi.static-ci.yaml``) is what
    a user would copy into ``stacks/`` to deploy it with Pulumi: the same values, with its
    ``cutover:app`` made relative to ``stacks/`` so it still names the same file.
    """
    document = yaml.safe_load((stacks_dir / f"Pulumi.{stack}.yaml").read_text())
    config = {key: value if isinstance(value, str) else json.dumps(value) for key, value in document["config"].items()}
    if stacks_dir.resolve() != STACKS_DIR and "cutover:app" in config:
        config["cutover:app"] = os.path.relpath((stacks_dir / config["cutover:app"]).resolve(), STACKS_DIR)
    return config


def run_program(
    stack: str,
    overrides: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = (),
    one_shot_exit_codes: Mapping[str, int | None] | None = None,
    stacks_dir: Path = STACKS_DIR,
    engine_platform: str = DEFAULT_PLATFORM,
    existing_containers: Mapping[str, str | None] | None = None,
    proxy: "ProxyState | Exception | None" = None,
) -> ProgramRun:
    """Run ``__main__.py`` for ``stack`` (its YAML, with ``overrides`` applied and ``drop`` removed).

    ``proxy``: what the stack's proxy says when the program reads it (``proxy-state``): None for
    no proxy container yet (a first ``up``: nothing is live), a ``ProxyState``, or an exception the
    invoke raises (an unreachable engine).

    ``stacks_dir``: where the stack file is (see ``stack_config``); the program itself always
    resolves ``cutover:app`` against ``stacks/``, as under the Pulumi CLI.

    ``one_shot_exit_codes``: the exit status the mock provider reports for a one-shot container
    (a migration), by Docker name; 0 for any other. If the program fails, the exception carries
    what was registered before it failed as ``registrations``.

    ``engine_platform``: what the stack's engine answers to ``docker version`` (os/arch).
    ``existing_containers``: the stack's containers already on the engine, by name, with their
    ``cutover.managed-by`` label (None: unlabelled); none by default (a first `up`).
    """
    config = {**stack_config(stack, stacks_dir), **(overrides or {})}
    for key in drop:
        config.pop(key, None)
    if not all(isinstance(v, str) for v in config.values()):
        raise TypeError("Pulumi config values reach a program as strings; pass strings")

    proxy_state = proxy if isinstance(proxy, Exception) else (proxy.json() if proxy is not None else "{}")
    mocks = _Mocks(stack, one_shot_exit_codes or {}, proxy_state, engine_platform, existing_containers)
    monitor = _RecordingMonitor(mocks)
    # Fresh settings and no root resource, so set_mocks creates a new root stack for this stack.
    pulumi.runtime.settings.reset_options(project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config)

    outputs: dict[str, Any] = {}
    exports: dict[str, tuple[Any, bool]] = {}

    @pulumi.runtime.test
    def program():
        service = runpy.run_path(str(PROGRAM), run_name="__main__")["service"]
        if getattr(service, "kind", None) == "swarm":
            watched = _swarm_watched(service)
        else:
            watched = _single_watched(service)
        # What `pulumi.export` collected on the root stack: each value, and whether it is secret.
        root = pulumi.runtime.settings.get_root_resource()
        exported = {}
        for name, value in root.outputs.items():
            out = pulumi.Output.from_input(value)
            exported[name] = pulumi.Output.all(pulumi.Output.unsecret(out), pulumi.Output.from_input(out.is_secret()))
        # Returning the output makes the test decorator await it, and every RPC, before returning.
        return pulumi.Output.all(
            pulumi.Output.all(**watched).apply(outputs.update),
            pulumi.Output.all(**exported).apply(exports.update),
        )

    def _swarm_watched(service):
        # The swarm kind (components/swarm_service.py): its services by role and colour.
        watched = {
            "live_colour": service.live_colour,
            "live_url": service.live_url,
            "preview_url": service.preview_url,
            "proxy_service_name": service.proxy.name,
            "database_service_name": service.database.name if service.database is not None else None,
            "migration_containers": {version: m.container.name for version, m in service.migrations.items()},
        }
        for colour, pool in service.pools.items():
            watched[f"{colour}_service_name"] = pool.name
        return watched

    def _single_watched(service):
        database = service.database  # None for a read-only app
        watched = {
            "database_host": service.database_host,
            "database_name": database.name if database is not None else None,
            "database_password_is_secret": pulumi.Output.from_input(database.password.is_secret()) if database is not None else None,
            "migration_containers": {version: m.container.name for version, m in service.migrations.items()},
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
        return watched

    try:
        program()
    except Exception as exc:
        exc.registrations = tuple(monitor.registrations)  # type: ignore[attr-defined]
        raise

    resources = tuple(monitor.registrations)
    duplicates = sorted(urn for urn, count in Counter(r.urn for r in resources).items() if count > 1)
    if duplicates:
        raise AssertionError(f"the program registered these URNs more than once: {duplicates}")
    return ProgramRun(
        stack=stack,
        config=config,
        resources=resources,
        outputs=outputs,
        exports={name: (value, bool(secret)) for name, (value, secret) in exports.items()},
        component_outputs=dict(monitor.component_outputs),
        secret_values=tuple(mocks.secret_values),
        local_runs=tuple(mocks.local_runs),
        invokes=tuple(mocks.invokes),
    )


@dataclass(frozen=True)
class ProxyState:
    """What ``proxy-state`` prints for a proxy that exists (docs: the contract's JSON line)."""

    live: str
    versions: Mapping[str, str]
    # Servers per colour in the proxy's backends (every one UP: the mocks need no health).
    servers: Mapping[str, int]

    def json(self) -> str:
        return json.dumps(
            {
                "live": self.live,
                "versions": dict(self.versions),
                "servers": {colour: {"total": n, "up": n} for colour, n in self.servers.items()},
            }
        )


def deployed(stack: str, live: str | None = None, overrides: Mapping[str, str] | None = None, **versions: str) -> ProxyState:
    """The proxy of ``stack`` as an earlier ``up`` of its stack file (with ``overrides``) left it:
    ``live`` (default: the file's liveColor) serving, each colour stamped with the file's version
    (or ``blue=``/``green=`` given here), each backend with poolSize servers."""
    config = {**stack_config(stack), **(overrides or {})}
    size = int(config["cutover:poolSize"])
    stamped = {colour: versions.get(colour, config[f"cutover:{colour}Version"]) for colour in ("blue", "green")}
    return ProxyState(live=live or config["cutover:liveColor"], versions=stamped, servers={"blue": size, "green": size})


def is_secret(value: Any) -> bool:
    """Whether an input or output arrived wrapped as a Pulumi secret."""
    return rpc.is_rpc_secret(value)


def unwrap_secret(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value)


def plain_strings(value: Any) -> list[str]:
    """Every string in ``value`` that is NOT inside a secret: what state and CLI show in clear text."""
    if is_secret(value):
        return []
    if isinstance(value, Mapping):
        return [s for key, child in value.items() for s in [str(key), *plain_strings(child)]]
    if isinstance(value, (list, tuple)):
        return [s for child in value for s in plain_strings(child)]
    return [value] if isinstance(value, str) else []


def redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every secret value replaced by ``<secret>`` (secret wrappers are kept)."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "<secret>")
        return value
    if isinstance(value, Mapping):
        return {key: redact(child, secrets) for key, child in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(child, secrets) for child in value]
    return value


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


# App definitions the example directories do not cover, written into a test's tmp directory. Each
# is a complete cutover-app/1 file; none shares a port, an env name or a command with the demo.
EXPAND_ONLY_APP = """\
format: cutover-app/1
name: ledger
image:
  build:
    context: .
    dockerfile: build/Containerfile
    args:
      LEDGER_RELEASE: "{version}"
port: 7000
health:
  path: /ready
  command: [/opt/ledger/bin/ready]
stop:
  signal: SIGINT
  grace_seconds: 15
env:
  LEDGER_MODE: serve
  LEDGER_BUILD: "ledger-{version}"
smoke:
  - path: /ready
database:
  env:
    LEDGER_DB_URL: "postgresql://{user}:{password}@{host}:{port}/{name}?sslmode=disable"
    LEDGER_DB_HOST: "{host}"
migrations:
  command: [/opt/ledger/bin/ledger-migrate, up, --no-prompt]
  expand_only: true
  sql_dir: /opt/ledger/sql
"""

# A database, but no migrations: the app manages its schema itself (or has none to manage).
DATABASE_NO_MIGRATIONS_APP = """\
format: cutover-app/1
name: notes
image:
  build: {}
port: 5050
health:
  path: /up
smoke:
  - path: /up
database:
  env:
    NOTES_PGPASSWORD: "{password}"
    NOTES_PGHOST: "{host}"
"""

# Prebuilt by the team and loaded into the engine: cutover never builds it.
PREBUILT_APP = """\
format: cutover-app/1
name: storefront
image:
  repository: acme/storefront
port: 3000
health:
  path: /health
smoke:
  - path: /
"""


def write_app(directory: Path, document: str, dockerfile: str = "Dockerfile") -> Path:
    """``document`` as ``directory/cutover-app.yaml``, with a (never built) Dockerfile beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / dockerfile).parent.mkdir(parents=True, exist_ok=True)
    (directory / dockerfile).write_text("FROM scratch\n")
    app_file = directory / "cutover-app.yaml"
    app_file.write_text(document)
    return app_file
