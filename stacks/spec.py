"""The one typed description of a stack, shared by the Pulumi program and the local simulator.

A stack lives in ``stacks/Pulumi.<stack>.yaml`` as Pulumi config. This module turns those values
into a frozen :class:`StackSpec` and rejects bad input with one sentence that names the key and
the file. It needs neither Pulumi nor Docker, so both executors (and the unit tests) can use it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

import yaml

from stacks.app import AppError, AppSpec, load_app

STACKS_DIR = Path(__file__).resolve().parent
# A team keeps its own stack files (and app definition) in its own repository and points here.
STACKS_DIR_ENV = "CUTOVER_STACKS_DIR"
PROJECT = "cutover"
COLOURS = ("blue", "green")

# The keys every stack file must carry, in the order the README documents them.
REQUIRED_KEYS = (
    "docker:host",
    "cutover:poolSize",
    "cutover:bindAddress",
    "cutover:previewBindAddress",
    "cutover:livePort",
    "cutover:previewPort",
    "cutover:app",
    "cutover:blueVersion",
    "cutover:greenVersion",
    "cutover:liveColor",
    "cutover:healthIntervalMs",
    "cutover:drainSeconds",
    "cutover:baseImage",
)

# Optional keys (the simulator's watch after a switch, simulator/watch.py) and their defaults:
# on for every stack that does not say otherwise; cutover:watchSeconds 0 turns the watch off.
WATCH_DEFAULTS = {
    "cutover:watchSeconds": 10,
    "cutover:watchMax5xxPercent": 5,
    "cutover:watchMinRequests": 20,
    "cutover:watchMaxResponseMs": 5000,
}
# Optional keys for data and robustness, with their defaults (a stack file written before they
# existed still loads). This project's own stack files set them explicitly all the same.
DATA_DEFAULTS = {
    # `pulumi destroy` keeps the database's container and volume (retain_on_delete) unless false.
    "cutover:keepDataOnDestroy": True,
    # How long one expand migration run may take, for both executors.
    "cutover:migrationTimeoutSeconds": 600,
}
# Which engine kind a stack targets (docs/cluster.md): one Docker engine ("single", every stack
# written before swarms existed) or a Docker Swarm whose manager is docker:host ("swarm").
ENGINES = ("single", "swarm")
# The swarm kind's keys. Kept apart from KNOWN_KEYS so the single-engine kind's key lists, rows and
# tests stay exactly what they were; a single-engine stack that sets one of the node keys is refused.
SWARM_DEFAULTS = {
    "cutover:engine": "single",
    # The node label that marks the one node holding the database and its (node-local) volume:
    # the database service's constraint is <label>==true (exactly one node may carry it).
    "cutover:databaseLabel": "cutover.database",
    # The node label that marks the nodes taking traffic: one proxy task on each node labelled
    # <label>=true (the proxy service's constraint).
    "cutover:trafficLabel": "cutover.traffic",
    # The control network (the proxies' runtime API, for the switch) is an encrypted overlay:
    # IPsec between nodes. False where the nodes' kernel cannot carry it (the local swarm's
    # Docker-in-Docker nodes: encrypted traffic never crosses nodes there, measured).
    "cutover:controlEncrypted": True,
}
SWARM_KEYS = tuple(SWARM_DEFAULTS)
OPTIONAL_DEFAULTS = {**WATCH_DEFAULTS, **DATA_DEFAULTS, **SWARM_DEFAULTS}
KNOWN_KEYS = REQUIRED_KEYS + tuple(WATCH_DEFAULTS) + tuple(DATA_DEFAULTS)
# Every key a stack file may hold, of either kind.
ALL_KEYS = KNOWN_KEYS + SWARM_KEYS
# The keys every stack file in stacks/ sets (the watch keys are the simulator's alone: unset, they
# take their defaults).
STACK_FILE_KEYS = REQUIRED_KEYS + tuple(DATA_DEFAULTS)

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a valid Docker tag
# A node label key (the database's node, the traffic nodes).
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$")
_IMAGE_REF = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_.-]+)?$")


class SpecError(ValueError):
    """A stack file is missing a key or holds a value the stack cannot use."""


def is_valid_version(version: str) -> bool:
    return bool(_VERSION.fullmatch(version or ""))


def other_colour(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


@dataclass(frozen=True)
class StackSpec:
    """Everything that makes one stack: sizes, ports, images, health check and drain budget."""

    stack: str
    docker_host: str
    pool_size: int
    bind_address: str
    preview_bind_address: str
    live_port: int
    preview_port: int
    app: AppSpec
    blue_version: str
    green_version: str
    live_colour: str
    health_interval_ms: int
    drain_seconds: int
    base_image: str
    # After a switch: watch the new colour this long and flip back if it degrades (0: off).
    watch_seconds: int = WATCH_DEFAULTS["cutover:watchSeconds"]
    watch_max_5xx_percent: float = WATCH_DEFAULTS["cutover:watchMax5xxPercent"]
    watch_min_requests: int = WATCH_DEFAULTS["cutover:watchMinRequests"]
    watch_max_response_ms: int = WATCH_DEFAULTS["cutover:watchMaxResponseMs"]
    keep_data_on_destroy: bool = DATA_DEFAULTS["cutover:keepDataOnDestroy"]
    migration_timeout_s: int = DATA_DEFAULTS["cutover:migrationTimeoutSeconds"]
    # The swarm kind (docs/cluster.md): None/defaults on a single-engine stack.
    engine: str = "single"
    database_label: str = SWARM_DEFAULTS["cutover:databaseLabel"]
    traffic_label: str = SWARM_DEFAULTS["cutover:trafficLabel"]
    control_encrypted: bool = SWARM_DEFAULTS["cutover:controlEncrypted"]

    @property
    def is_swarm(self) -> bool:
        return self.engine == "swarm"

    @property
    def health_path(self) -> str:
        return self.app.health.path

    @property
    def idle_colour(self) -> str:
        return other_colour(self.live_colour)

    def version_of(self, colour: str) -> str:
        return self.blue_version if colour == "blue" else self.green_version

    @property
    def engine_host(self) -> str | None:
        """The machine a tcp:// or ssh:// engine runs on (its published ports are there); None for a local socket."""
        parsed = urlparse(self.docker_host)
        return parsed.hostname if parsed.scheme in ("tcp", "ssh") else None

    def live_url(self) -> str:
        return f"http://{self._reach(self.bind_address)}:{self.live_port}"

    def preview_url(self) -> str:
        return f"http://{self._reach(self.preview_bind_address)}:{self.preview_port}"

    def _reach(self, bind_address: str) -> str:
        engine = self.engine_host
        if engine and engine not in ("127.0.0.1", "localhost", "::1"):
            # A remote engine publishes on its own machine. (A port it binds to its loopback is
            # not reachable from here at all; the smoke tests then say so.)
            return f"[{engine}]" if ":" in engine else engine
        return _url_host(bind_address)


def _url_host(bind_address: str) -> str:
    # A proxy bound to every interface is still reached locally through loopback.
    if bind_address in ("0.0.0.0", "::"):
        return "127.0.0.1" if bind_address == "0.0.0.0" else "[::1]"
    return f"[{bind_address}]" if ":" in bind_address else bind_address


def stacks_dir_in_use() -> Path:
    """Where the stack files are: $CUTOVER_STACKS_DIR, or this project's own ``stacks/``."""
    configured = os.environ.get(STACKS_DIR_ENV)
    return Path(configured).resolve() if configured else STACKS_DIR


def stack_file(stack: str, stacks_dir: Path | None = None) -> Path:
    return (stacks_dir or stacks_dir_in_use()) / f"Pulumi.{stack}.yaml"


def known_stacks(stacks_dir: Path | None = None) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (stacks_dir or stacks_dir_in_use()).glob("Pulumi.*.yaml"))


def load_stack(stack: str, stacks_dir: Path | None = None) -> StackSpec:
    """Read ``Pulumi.<stack>.yaml`` and return its validated spec."""
    stacks_dir = stacks_dir or stacks_dir_in_use()
    path = stack_file(stack, stacks_dir)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", stack or ""):
        raise SpecError(f"stack name {stack!r} is not valid: use letters, digits, '-' and '_'.")
    if not path.is_file():
        names = ", ".join(known_stacks(stacks_dir)) or "none"
        raise SpecError(f"stack {stack!r} has no file {path} (known stacks: {names}).")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: is not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise SpecError(f"{path}: has no 'config:' mapping.")
    return spec_from_config(stack, document["config"], source=str(path), stacks_dir=stacks_dir)


def spec_from_config(stack: str, config: Mapping[str, Any], source: str = "config", stacks_dir: Path = STACKS_DIR) -> StackSpec:
    """Validate raw Pulumi config values (strings or YAML scalars) into a :class:`StackSpec`.

    ``source`` names where the values came from, so every error can point at it; ``cutover:app``
    is a path relative to ``stacks_dir``, the directory of the stack files.
    """
    reader = _Reader(config, source)
    spec = StackSpec(
        stack=stack,
        docker_host=reader.get("docker:host", _docker_host),
        pool_size=reader.get("cutover:poolSize", _int_between(1, 20)),
        bind_address=reader.get("cutover:bindAddress", _ip_address),
        preview_bind_address=reader.get("cutover:previewBindAddress", _ip_address),
        live_port=reader.get("cutover:livePort", _int_between(1, 65535)),
        preview_port=reader.get("cutover:previewPort", _int_between(1, 65535)),
        app=reader.get("cutover:app", _app_definition(stacks_dir)),
        blue_version=reader.get("cutover:blueVersion", _pattern(_VERSION, "a version usable as an image tag")),
        green_version=reader.get("cutover:greenVersion", _pattern(_VERSION, "a version usable as an image tag")),
        live_colour=reader.get("cutover:liveColor", _one_of(COLOURS)),
        health_interval_ms=reader.get("cutover:healthIntervalMs", _int_between(100, 60_000)),
        drain_seconds=reader.get("cutover:drainSeconds", _int_between(0, 3600)),
        base_image=reader.get("cutover:baseImage", _pattern(_IMAGE_REF, "an image reference like 'debian:bookworm-slim'")),
        watch_seconds=reader.optional("cutover:watchSeconds", _int_between(0, 3600)),
        watch_max_5xx_percent=reader.optional("cutover:watchMax5xxPercent", _number_between(0, 100)),
        watch_min_requests=reader.optional("cutover:watchMinRequests", _int_between(1, 1_000_000)),
        watch_max_response_ms=reader.optional("cutover:watchMaxResponseMs", _int_between(1, 3_600_000)),
        keep_data_on_destroy=reader.optional("cutover:keepDataOnDestroy", _boolean),
        # At least a minute (a migration container needs a few seconds just to start); at most a day.
        migration_timeout_s=reader.optional("cutover:migrationTimeoutSeconds", _int_between(60, 86_400)),
        engine=reader.optional("cutover:engine", _one_of(ENGINES)),
        database_label=reader.optional("cutover:databaseLabel", _pattern(_LABEL_KEY, "a node label key like 'cutover.database'")),
        traffic_label=reader.optional("cutover:trafficLabel", _pattern(_LABEL_KEY, "a node label key like 'cutover.traffic'")),
        control_encrypted=reader.optional("cutover:controlEncrypted", _boolean),
    )
    unknown = sorted(k for k in config if k not in ALL_KEYS)
    if unknown:
        raise SpecError(f"{source}: unknown key {unknown[0]!r} (known keys: {', '.join(ALL_KEYS)}).")
    _check_engine_keys(spec, config, source)
    if spec.live_port == spec.preview_port:
        raise SpecError(f"{source}: cutover:previewPort must differ from cutover:livePort ({spec.live_port}).")
    return spec


def _check_engine_keys(spec: StackSpec, config: Mapping[str, Any], source: str) -> None:
    """The node keys belong to the swarm kind: required there, refused on one engine (where they
    would silently mean nothing)."""
    if not spec.is_swarm:
        stray = [key for key in ("cutover:databaseLabel", "cutover:trafficLabel", "cutover:controlEncrypted") if config.get(key) not in (None, "")]
        if stray:
            raise SpecError(f"{source}: {stray[0]} is a swarm setting; set cutover:engine: swarm or remove it.")
        return
    if spec.database_label == spec.traffic_label:
        raise SpecError(f"{source}: cutover:databaseLabel must differ from cutover:trafficLabel ({spec.traffic_label!r}): the database's node is chosen by a label of its own.")
    if spec.docker_host.startswith("npipe://"):
        raise SpecError(f"{source}: docker:host must reach the swarm's manager over unix://, tcp:// or ssh://, got {spec.docker_host!r}.")


class _Reader:
    def __init__(self, config: Mapping[str, Any], source: str) -> None:
        self._config = config
        self._source = source

    def get(self, key: str, convert: Callable[[Any], Any]) -> Any:
        if key not in self._config or self._config[key] is None or self._config[key] == "":
            raise SpecError(f"{self._source}: missing required key {key!r}.")
        try:
            return convert(self._config[key])
        except SpecError:
            raise
        except ValueError as exc:
            raise SpecError(f"{self._source}: {key} {exc}") from None

    def optional(self, key: str, convert: Callable[[Any], Any]) -> Any:
        """A key with a default (OPTIONAL_DEFAULTS): absent or empty means the default."""
        if key not in self._config or self._config[key] is None or self._config[key] == "":
            return OPTIONAL_DEFAULTS[key]
        return self.get(key, convert)


def _number_between(low: float, high: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number from {low:g} to {high:g}, got {value!r}.") from None
        if not low <= number <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}, got {number:g}.")
        return number

    return convert


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        # Pulumi stores config set from the CLI as strings, so "3" is as good as 3.
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()))):
            raise ValueError(f"must be a whole number from {low} to {high}, got {value!r}.")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, got {number}.")
        return number

    return convert


def _boolean(value: Any) -> bool:
    # YAML gives a bool; Pulumi hands a program every value as a string ("true"/"false").
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"must be true or false, got {value!r}.")


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}.")
        return value

    return convert


def _pattern(regex: re.Pattern[str], meaning: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise ValueError(f"must be {meaning}, got {value!r}.")
        return value

    return convert


def _ip_address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ValueError(f"must be an IP address to bind to, got {value!r}.") from None


def _app_definition(stacks_dir: Path) -> Callable[[Any], AppSpec]:
    def convert(value: Any) -> AppSpec:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"must be the path of an app definition file, got {value!r}.")
        path = (stacks_dir / value).resolve()
        if not path.is_file():
            raise ValueError(f"names {value!r}, which is not a file (looked in {path}).")
        try:
            return load_app(path)
        except AppError as exc:
            # Its own sentence already names the app file and the field; the stack key adds nothing.
            raise SpecError(str(exc)) from None

    return convert


def _docker_host(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^(unix|tcp|ssh|npipe)://", value):
        raise ValueError(f"must be a Docker host URL (unix://, tcp://, ssh:// or npipe://), got {value!r}.")
    return value
