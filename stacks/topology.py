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
    HARD_STOP_AFTER_S,
    LIVE_CONTAINER_PORT,
    PREVIEW_CONTAINER_PORT,
    render_base_config,
)
from stacks.spec import COLOURS, PROJECT, StackSpec

# The tag's revision moves when an image changes incompatibly (2: non-root users with fixed ids, the
# proxy's config on its state volume; 3: master-worker, per-colour backend files, proxy-backend,
# proxy-state, a health-checked proxy-switch, STOPSIGNAL SIGUSR1), so an engine shared with older
# checkouts keeps both.
PROXY_IMAGE = "cutover-proxy:3"
# `docker stop` of the proxy sends SIGUSR1, HAProxy's soft stop: requests in flight finish, for at
# most HARD_STOP_AFTER_S; Docker's SIGKILL comes only after this longer timeout.
PROXY_STOP_SIGNAL = "SIGUSR1"
PROXY_STOP_TIMEOUT_S = HARD_STOP_AFTER_S + 10
DATABASE_IMAGE = "cutover-postgres:15-2"
DATABASE_HOSTNAME = "db"
DATABASE_NAME = "cutover"
DATABASE_USER = "cutover"
DATABASE_PORT = 5432
DATABASE_DATA_DIR = "/var/lib/postgresql/data"
# Secrets are named here and filled in by each executor from its own store (a 0600 file for the
# simulator, pulumi-random as a Pulumi secret), so no secret value is ever part of the topology.
DB_PASSWORD_SECRET = "db-password"
RESTART_POLICY = "unless-stopped"
# In a secret env template, where the secret's value goes.
SECRET_PLACEHOLDER = "{secret}"
# Hardening every container of a stack gets: no capability unless one is added back by name, and
# no privilege gain through setuid binaries or file capabilities.
DROP_ALL_CAPABILITIES = ("ALL",)
NO_NEW_PRIVILEGES = ("no-new-privileges",)
# Options of every tmpfs we mount. Docker gives a tmpfs the image directory's mode but makes it
# root's (unless uid/gid are given), so /tmp (1777 in every image) suits any user.
TMPFS_OPTIONS = "rw,nosuid,nodev,noexec,size=64m"
# The users our own images' processes run as, with the fixed ids their Dockerfiles create them with:
# a socket directory on a tmpfs must be owned by them, and a tmpfs takes only numeric ids.
PROXY_RUN_AS = "haproxy"
PROXY_UID = 990
DATABASE_RUN_AS = "postgres"
DATABASE_UID = 991


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
    # (environment variable, secret name, template): the variable's value is the template with
    # "{secret}" replaced by the secret, which comes from the executor's secret store.
    secret_env: tuple[tuple[str, str, str], ...] = ()
    command: tuple[str, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    healthcheck: HealthcheckSpec | None = None
    uploads: tuple[UploadSpec, ...] = ()
    volumes: tuple[VolumeMountSpec, ...] = ()
    restart: str = RESTART_POLICY
    stop_signal: str = "SIGTERM"
    stop_timeout_s: int = 10
    labels: tuple[tuple[str, str], ...] = field(default=())
    # Hardening (docs/app.md, "Security"). user None: the image's USER.
    user: str | None = None
    read_only: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = DROP_ALL_CAPABILITIES
    security_opt: tuple[str, ...] = NO_NEW_PRIVILEGES
    # (container path, mount options): fresh tmpfs mounts, the writable places of a read-only root.
    tmpfs: tuple[tuple[str, str], ...] = ()

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
    return spec.app.image_tag(version)


def secret_value(template: str, secret: str) -> str:
    return template.replace(SECRET_PLACEHOLDER, secret)


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
        # Only the constant base config, onto the state volume (HAPROXY_CONFIG_PATH is in
        # COLOUR_MAP_DIR: Docker refuses uploads into a read-only root, but not into a volume). The
        # backends (pool size, health path and interval) are files beside it that proxy-backend
        # changes in the running proxy, so no setting of the stack is an input of this container.
        uploads=(UploadSpec(HAPROXY_CONFIG_PATH, render_base_config()),),
        volumes=(VolumeMountSpec(proxy_state_volume(spec), COLOUR_MAP_DIR),),
        labels=_labels(spec, "proxy"),
        stop_signal=PROXY_STOP_SIGNAL,
        stop_timeout_s=PROXY_STOP_TIMEOUT_S,
        # Frontends on ports above 1024 and an admin socket of its own: HAProxy needs no capability.
        user=PROXY_RUN_AS,
        read_only=True,
        tmpfs=(*_tmpfs("/tmp"), ("/run/haproxy", _owned_by(PROXY_UID))),
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
        secret_env=(("POSTGRES_PASSWORD", DB_PASSWORD_SECRET, SECRET_PLACEHOLDER),),
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
        # Its data directory is the volume (owned by postgres), its socket directory a tmpfs.
        user=DATABASE_RUN_AS,
        read_only=True,
        tmpfs=(*_tmpfs("/tmp"), ("/run/postgresql", _owned_by(DATABASE_UID))),
    )


def _database_client_env(spec: StackSpec) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, str], ...]]:
    """The app's database settings under the names it chose: (plain env, secret env).

    Every placeholder but {password} is filled here; a variable that holds the password (alone or
    in a URL) becomes a secret env entry, so its value never enters the topology.
    """
    if spec.app.database is None:
        return (), ()
    known = {"host": DATABASE_HOSTNAME, "port": str(DATABASE_PORT), "name": DATABASE_NAME, "user": DATABASE_USER}
    plain, secret = [], []
    for variable, template in sorted(spec.app.database.env.items()):
        filled = template
        for placeholder, value in known.items():
            filled = filled.replace("{" + placeholder + "}", value)
        if "{password}" in filled:
            secret.append((variable, DB_PASSWORD_SECRET, filled.replace("{password}", SECRET_PLACEHOLDER)))
        else:
            plain.append((variable, filled))
    return tuple(plain), tuple(secret)


def _tmpfs(*paths: str) -> tuple[tuple[str, str], ...]:
    return tuple((path, TMPFS_OPTIONS) for path in paths)


def _owned_by(uid: int) -> str:
    # The user's private group has the same id (the Dockerfiles create both).
    return f"{TMPFS_OPTIONS},uid={uid},gid={uid}"


def _app_hardening(spec: StackSpec) -> dict:
    """The app's security section as ContainerSpec fields: its containers and its migration runs
    run the same image, so they get the same locks."""
    security = spec.app.security
    return {
        "user": security.user,
        "read_only": security.read_only_root,
        "cap_add": security.capabilities,
        "tmpfs": _tmpfs(*security.writable),
    }


def _version_env(spec: StackSpec, version: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v.replace("{version}", version)) for k, v in spec.app.env.items()))


def migration_container(spec: StackSpec, version: str, command: tuple[str, ...], image: str | None = None) -> ContainerSpec:
    """A one-shot run of ``version``'s artefact (``image``, its image ID, when known): one of its
    declared migration commands."""
    plain, secret = _database_client_env(spec)
    return ContainerSpec(
        name=migration_container_name(spec),
        role="migration",
        image=image or app_image_ref(spec, version),
        network=network_name(spec),
        hostname="migrate",
        version=version,
        env=(*_version_env(spec, version), ("CUTOVER_VERSION", version), *plain),
        secret_env=secret,
        command=tuple(command),
        restart="no",
        labels=_labels(spec, "migration", version=version),
        **_app_hardening(spec),
    )


def app_container_names(spec: StackSpec) -> dict[str, list[str]]:
    return {c: [app_container_name(spec, c, i) for i in range(1, spec.pool_size + 1)] for c in COLOURS}


def app_container(spec: StackSpec, colour: str, index: int, version: str, image: str | None = None) -> ContainerSpec:
    """One app container; ``image`` is the version's image ID (the artefact, never a movable tag)
    when the executor knows it, else the version's tag."""
    name = app_container_name(spec, colour, index)
    interval_s = max(1, spec.health_interval_ms // 1000)
    app = spec.app
    plain, secret = _database_client_env(spec)
    return ContainerSpec(
        name=name,
        role="app",
        image=image or app_image_ref(spec, version),
        network=network_name(spec),
        hostname=name,
        colour=colour,
        version=version,
        env=(
            *_version_env(spec, version),
            ("CUTOVER_COLOUR", colour),
            ("CUTOVER_INSTANCE", name),
            ("CUTOVER_VERSION", version),
            *plain,
        ),
        secret_env=secret,
        # Only when the app declares a probe inside its image; the proxy's HTTP check always runs.
        healthcheck=HealthcheckSpec(
            test=("CMD", *app.health.command),
            interval_s=interval_s,
            timeout_s=2,
            retries=3,
            start_period_s=2,
        )
        if app.health.command
        else None,
        stop_signal=app.stop.signal,
        stop_timeout_s=app.stop.grace_seconds,
        labels=_labels(spec, "app", colour, version),
        **_app_hardening(spec),
    )


def pool_containers(spec: StackSpec, colour: str, version: str, image: str | None = None) -> list[ContainerSpec]:
    return [app_container(spec, colour, i, version, image) for i in range(1, spec.pool_size + 1)]


def stack_containers(spec: StackSpec, versions: dict[str, str] | None = None, images: dict[str, str] | None = None) -> list[ContainerSpec]:
    """Every container of the stack; ``versions`` overrides each colour's version from the spec,
    ``images`` maps a version to its image ID."""
    images = images or {}
    versions = versions or {c: spec.version_of(c) for c in COLOURS}
    # A read-only deployment has no database at all.
    containers = [database_container(spec)] if spec.app.read_write else []
    containers.append(proxy_container(spec))
    for colour in COLOURS:
        containers.extend(pool_containers(spec, colour, versions[colour], images.get(versions[colour])))
    return containers
