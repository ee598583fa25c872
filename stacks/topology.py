"""What a stack *is* in containers: one pure function from a StackSpec to container definitions.

Both executors render exactly these definitions — ``components/`` into pulumi-docker resources,
``simulator/`` into Docker SDK calls — so the parity test can hold them equal without a second copy
of the topology anywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from stacks.proxy_config import (
    COLOUR_MAP_DIR,
    HAPROXY_CONFIG_PATH,
    LIVE_CONTAINER_PORT,
    PREVIEW_CONTAINER_PORT,
    render_haproxy_config,
)
from stacks.spec import COLOURS, PROJECT, StackSpec

APP_PORT = 8000
PROXY_IMAGE = "cutover-proxy:1"
DATABASE_IMAGE = "cutover-postgres:15"
DATABASE_HOSTNAME = "db"
DATABASE_NAME = "cutover"
DATABASE_USER = "cutover"
DATABASE_DATA_DIR = "/var/lib/postgresql/data"
# Secrets are named here and filled in by each executor from its own store (a 0600 file for the
# simulator, pulumi-random as a Pulumi secret), so no secret value is ever part of the topology.
DB_PASSWORD_SECRET = "db-password"
RESTART_POLICY = "unless-stopped"
# Longer than gunicorn's graceful timeout, so Docker never kills a request that is still finishing.
APP_STOP_TIMEOUT_S = 40


@dataclass(frozen=True)
class PortSpec:
    internal: int
    external: int
    ip: str


@dataclass(frozen=True)
class HealthcheckSpec:
    test: tuple[str, ...]
    interval_s: int
    timeout_s: int
    retries: int
    start_period_s: int


@dataclass(frozen=True)
class UploadSpec:
    path: str
    content: str


@dataclass(frozen=True)
class VolumeMountSpec:
    volume: str
    container_path: str


@dataclass(frozen=True)
class ContainerSpec:
    """One container, described the same way for Pulumi and for the simulator."""

    name: str
    role: str  # "proxy", "app" or "database"
    image: str
    network: str
    hostname: str
    colour: str | None = None
    version: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    # (environment variable, secret name): the value comes from the executor's secret store.
    secret_env: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    healthcheck: HealthcheckSpec | None = None
    uploads: tuple[UploadSpec, ...] = ()
    volumes: tuple[VolumeMountSpec, ...] = ()
    restart: str = RESTART_POLICY
    stop_timeout_s: int = 10
    labels: tuple[tuple[str, str], ...] = field(default=())

    def fingerprint(self) -> str:
        """A short digest of every input: equal fingerprints mean nothing to change."""
        payload = json.dumps(asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def labels_with_fingerprint(self) -> dict[str, str]:
        return {**dict(self.labels), "cutover.fingerprint": self.fingerprint()}


def network_name(spec: StackSpec) -> str:
    return f"{PROJECT}-{spec.stack}"


def proxy_state_volume(spec: StackSpec) -> str:
    return f"{PROJECT}-{spec.stack}-proxy-state"


def database_volume(spec: StackSpec) -> str:
    return f"{PROJECT}-{spec.stack}-db-data"


def database_container_name(spec: StackSpec) -> str:
    return f"{PROJECT}-{spec.stack}-db"


def migration_container_name(spec: StackSpec) -> str:
    return f"{PROJECT}-{spec.stack}-migrate"


def proxy_container_name(spec: StackSpec) -> str:
    return f"{PROJECT}-{spec.stack}-proxy"


def app_container_name(spec: StackSpec, colour: str, index: int) -> str:
    return f"{PROJECT}-{spec.stack}-{colour}-{index}"


def app_image_ref(spec: StackSpec, version: str) -> str:
    return f"{spec.app_image}:{version}"


def _labels(spec: StackSpec, role: str, colour: str | None = None, version: str | None = None) -> tuple[tuple[str, str], ...]:
    labels = {"cutover.project": PROJECT, "cutover.stack": spec.stack, "cutover.role": role}
    if colour:
        labels["cutover.colour"] = colour
    if version:
        labels["cutover.version"] = version
    return tuple(sorted(labels.items()))


def proxy_container(spec: StackSpec) -> ContainerSpec:
    # The live colour is deliberately absent: it lives in the proxy's map file and is changed at
    # run time, so switching never replaces (or even restarts) this container.
    return ContainerSpec(
        name=proxy_container_name(spec),
        role="proxy",
        image=PROXY_IMAGE,
        network=network_name(spec),
        hostname="proxy",
        ports=(
            PortSpec(LIVE_CONTAINER_PORT, spec.live_port, spec.bind_address),
            # The preview serves a version nobody has released yet: by default only to this machine.
            PortSpec(PREVIEW_CONTAINER_PORT, spec.preview_port, spec.preview_bind_address),
        ),
        healthcheck=HealthcheckSpec(
            test=("CMD", "/usr/local/bin/proxy-healthcheck"),
            interval_s=2,
            timeout_s=2,
            retries=3,
            start_period_s=5,
        ),
        uploads=(UploadSpec(HAPROXY_CONFIG_PATH, render_haproxy_config(spec, app_container_names(spec))),),
        volumes=(VolumeMountSpec(proxy_state_volume(spec), COLOUR_MAP_DIR),),
        labels=_labels(spec, "proxy"),
    )


def database_container(spec: StackSpec) -> ContainerSpec:
    """PostgreSQL, shared by both colours; reachable only on the stack's network, never published."""
    return ContainerSpec(
        name=database_container_name(spec),
        role="database",
        image=DATABASE_IMAGE,
        network=network_name(spec),
        hostname=DATABASE_HOSTNAME,
        env=(("POSTGRES_DB", DATABASE_NAME), ("POSTGRES_USER", DATABASE_USER)),
        secret_env=(("POSTGRES_PASSWORD", DB_PASSWORD_SECRET),),
        healthcheck=HealthcheckSpec(
            test=("CMD", "pg_isready", "--host", "127.0.0.1", "--username", DATABASE_USER, "--dbname", DATABASE_NAME),
            interval_s=2,
            timeout_s=3,
            retries=5,
            start_period_s=10,
        ),
        volumes=(VolumeMountSpec(database_volume(spec), DATABASE_DATA_DIR),),
        # A clean shutdown (checkpoint) rather than crash recovery on the next start.
        stop_timeout_s=60,
        labels=_labels(spec, "database"),
    )


def _database_client_env() -> tuple[tuple[str, str], ...]:
    return (("DATABASE_HOST", DATABASE_HOSTNAME), ("DATABASE_NAME", DATABASE_NAME), ("DATABASE_USER", DATABASE_USER))


def migration_container(spec: StackSpec, version: str, step: str) -> ContainerSpec:
    """A one-shot run of ``version``'s artefact that applies its ``step`` (expand or contract) migrations."""
    return ContainerSpec(
        name=migration_container_name(spec),
        role="migration",
        image=app_image_ref(spec, version),
        network=network_name(spec),
        hostname="migrate",
        version=version,
        env=_database_client_env(),
        secret_env=(("DATABASE_PASSWORD", DB_PASSWORD_SECRET),),
        command=("python3", "-m", "migrate", step),
        restart="no",
        labels=_labels(spec, "migration", version=version),
    )


def app_container_names(spec: StackSpec) -> dict[str, list[str]]:
    return {c: [app_container_name(spec, c, i) for i in range(1, spec.pool_size + 1)] for c in COLOURS}


def app_container(spec: StackSpec, colour: str, index: int, version: str) -> ContainerSpec:
    name = app_container_name(spec, colour, index)
    interval_s = max(1, spec.health_interval_ms // 1000)
    return ContainerSpec(
        name=name,
        role="app",
        image=app_image_ref(spec, version),
        network=network_name(spec),
        hostname=name,
        colour=colour,
        version=version,
        env=(("APP_COLOUR", colour), ("APP_INSTANCE", name), ("APP_PORT", str(APP_PORT)), *_database_client_env()),
        secret_env=(("DATABASE_PASSWORD", DB_PASSWORD_SECRET),),
        healthcheck=HealthcheckSpec(
            test=("CMD", "/usr/local/bin/app-healthcheck", spec.health_path),
            interval_s=interval_s,
            timeout_s=2,
            retries=3,
            start_period_s=2,
        ),
        stop_timeout_s=APP_STOP_TIMEOUT_S,
        labels=_labels(spec, "app", colour, version),
    )


def pool_containers(spec: StackSpec, colour: str, version: str) -> list[ContainerSpec]:
    return [app_container(spec, colour, i, version) for i in range(1, spec.pool_size + 1)]


def stack_containers(spec: StackSpec, versions: dict[str, str] | None = None) -> list[ContainerSpec]:
    """Every container of the stack; ``versions`` overrides each colour's version from the spec."""
    versions = versions or {c: spec.version_of(c) for c in COLOURS}
    containers = [database_container(spec), proxy_container(spec)]
    for colour in COLOURS:
        containers.extend(pool_containers(spec, colour, versions[colour]))
    return containers
