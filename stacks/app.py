"""The app a stack deploys, declared in one YAML file that every stack of it shares.

cutover knows nothing about an app except what this file says: how its image is made, the port it
listens on, how to tell it is healthy, how to stop it, its environment, the requests that prove a
deployment works (smoke checks, and a write probe for read-write apps), its database and its
migration commands. The file is validated into a frozen :class:`AppSpec`; a bad one is rejected
with one sentence naming the field and the file. Pure: neither Docker nor Pulumi is needed here.

The format is documented in docs/app.md (``format: cutover-app/1``).
"""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

APP_FORMAT = "cutover-app/1"
# The contract a self-describing migration tool implements (docs/migrations.md).
MIGRATION_CONTRACT = 1
# Placeholders a database env value may use; {password} is filled from the stack's secret store.
DATABASE_PLACEHOLDERS = ("host", "port", "name", "user", "password")
# Every build arg and env value may use these; cutover fills them per version / per container.
VERSION_PLACEHOLDER = "{version}"
# What cutover itself gives every app container (documented; an app may ignore them).
CUTOVER_ENV = ("CUTOVER_COLOUR", "CUTOVER_VERSION", "CUTOVER_INSTANCE")

_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*$")
_IMAGE_REPO = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH = re.compile(r"^/[A-Za-z0-9/_.~%?=&+,;:@{}-]*$")


class AppError(ValueError):
    """An app definition is missing a field or holds a value cutover cannot use."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _command(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(p, str) and p for p in value):
        raise ValueError("must be a command as a non-empty list of strings, e.g. [migrate, up]")
    return tuple(value)


def _url_path(value: str) -> str:
    if not _PATH.fullmatch(value):
        raise ValueError(f"must be a URL path starting with '/', got {value!r}")
    return value


Command = Annotated[tuple[str, ...], BeforeValidator(_command)]
UrlPath = Annotated[str, AfterValidator(_url_path)]


class Build(_Strict):
    context: str = "."
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = {}
    # A step run on the machine that runs cutover, in the context, before the image build (e.g. to
    # build a single-file artefact the Dockerfile copies in); "{version}" becomes the version.
    prepare: Command | None = None
    # The file (relative to the context) that ``prepare`` makes: its sha256 is recorded with the version.
    artefact: str | None = None

    @model_validator(mode="after")
    def _artefact_needs_prepare(self) -> "Build":
        if self.artefact is not None and self.prepare is None:
            raise ValueError("image.build.artefact names the file image.build.prepare makes; declare prepare too")
        return self

    @field_validator("args", mode="before")
    @classmethod
    def _args_are_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            bad = [k for k, v in value.items() if not isinstance(v, (str, int, float)) or isinstance(v, bool)]
            if bad:
                raise ValueError(f"{bad[0]} must be a string")
            return {str(k): str(v) for k, v in value.items()}
        return value


class Image(_Strict):
    """Either ``build`` (cutover builds ``<name>:<version>`` from the context) or ``repository``
    (the team builds ``<repository>:<version>`` itself and loads it into the engine)."""

    build: Build | None = None
    repository: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "Image":
        if (self.build is None) == (self.repository is None):
            raise ValueError("give exactly one of image.build (a build context) or image.repository (prebuilt local images tagged with the version)")
        if self.repository is not None and not _IMAGE_REPO.fullmatch(self.repository):
            raise ValueError(f"image.repository must be an image repository like 'myteam/web', got {self.repository!r}")
        return self


class Health(_Strict):
    path: UrlPath
    # Optional Docker HEALTHCHECK run inside the container; the proxy's HTTP check always runs.
    command: Command | None = None


class Stop(_Strict):
    signal: str = "SIGTERM"
    grace_seconds: int = Field(default=30, ge=1, le=3600)

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        if value not in signal.Signals.__members__:
            raise ValueError(f"must be a signal name like SIGTERM or SIGQUIT, got {value!r}")
        return value


class Drain(_Strict):
    """How the app ends long-lived requests (streams, long polls) that outlast the drain budget.

    When a colour taken out of service still has requests open after ``cutover:drainSeconds``,
    cutover runs ``command`` in each of its containers (like ``docker exec``); the app should then
    end those requests at a message boundary, telling clients to reconnect (they reach the live
    colour). cutover waits up to ``close_seconds`` more for them to close.
    """

    command: Command
    close_seconds: int = Field(default=5, ge=1, le=300)


class Request(_Strict):
    """One HTTP request cutover makes to the app, and what the answer must be."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    path: UrlPath
    json_body: Any = Field(default=None, alias="json")
    expect_status: int = Field(default=200, ge=100, le=599)
    expect_body: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def describe(self) -> str:
        return f"{self.method} {self.path}"


class WriteProbe(_Strict):
    """A request that creates something, and how to read it back: the lost-write check."""

    create: Request
    id_field: str = "id"  # the JSON field of the create response that identifies what was written
    read: Request  # its path holds "{id}"

    @model_validator(mode="after")
    def _read_names_id(self) -> "WriteProbe":
        if "{id}" not in self.read.path:
            raise ValueError("write_probe.read.path must contain {id}, where the created id goes")
        if self.create.method in ("GET", "HEAD"):
            raise ValueError("write_probe.create must be a request that writes (POST, PUT or PATCH), not GET")
        return self

    def read_path(self, item_id: Any) -> str:
        return self.read.path.replace("{id}", str(item_id))


class Database(_Strict):
    engine: Literal["postgresql"] = "postgresql"
    # Env var -> template over {host}, {port}, {name}, {user}, {password}.
    env: dict[str, str]

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("must name at least one variable, e.g. DATABASE_URL: postgresql://{user}:{password}@{host}:{port}/{name}")
        for name, template in value.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            for placeholder in re.findall(r"{([^{}]*)}", template):
                if placeholder not in DATABASE_PLACEHOLDERS:
                    raise ValueError(f"{name} uses {{{placeholder}}}; the placeholders are {', '.join('{' + p + '}' for p in DATABASE_PLACEHOLDERS)}")
        return value


class SelfDescribingMigrations(_Strict):
    """The versioned contract (docs/migrations.md): each a command run in a one-shot container of the
    version's image, with the database env."""

    describe: Command
    current: Command
    sql: Command | None = None  # + FROM TO: prints the SQL of that step (the lint gate)
    expand: Command
    contract: Command

    @property
    def self_describing(self) -> bool:
        return True


class ExpandOnlyMigrations(_Strict):
    """One migrate command that cannot describe itself: every run is treated as an expand step.

    ``sql_dir`` is where the image keeps its ``*.sql`` files: those the new image has and the live
    one has not are the pending ones, and they go through the lint gate.
    """

    command: Command
    expand_only: Literal[True]
    sql_dir: str | None = None

    @field_validator("sql_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must be an absolute path inside the image, got {value!r}")
        return value

    @property
    def self_describing(self) -> bool:
        return False


# Linux capability names as Docker takes them (without the CAP_ prefix), e.g. NET_BIND_SERVICE.
_CAPABILITY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")


class Security(_Strict):
    """How locked down the app's containers (and its migration runs) are; docs/app.md.

    Always: every Linux capability dropped and no privilege gain (no-new-privileges, so a setuid
    binary cannot make a process root again). These fields only loosen that, on purpose and visibly.
    """

    # Added back after ALL are dropped: only what the app needs, e.g. NET_BIND_SERVICE for port 80.
    capabilities: tuple[str, ...] = ()
    # On by default: an app that writes outside ``writable`` (and its volumes) fails loudly at once,
    # rather than a compromised one rewriting its own code.
    read_only_root: bool = True
    # Fresh, empty-at-start tmpfs mounts (with the image directory's owner and mode), the only
    # writable places of a read-only root.
    writable: tuple[str, ...] = ("/tmp",)
    # Run as this user (name or uid[:gid]) instead of the image's USER; never root.
    user: str | None = None

    @field_validator("capabilities")
    @classmethod
    def _capabilities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name == "ALL" or not _CAPABILITY.fullmatch(name) or name.startswith("CAP_"):
                raise ValueError(f"must list single capability names without CAP_, like NET_BIND_SERVICE, got {name!r}")
        return tuple(sorted(set(value)))

    @field_validator("writable")
    @classmethod
    def _writable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            if not path.startswith("/") or path.rstrip("/") == "" or ":" in path or "," in path:
                raise ValueError(f"must be absolute directories other than '/', got {path!r}")
        return tuple(dict.fromkeys(value))

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _USER.fullmatch(value):
            raise ValueError(f"must be a user name or uid, optionally ':group', got {value!r}")
        if value.split(":")[0] in ("root", "0"):
            raise ValueError("must not be root: leave it out to run as the image's USER")
        return value


# Which contract a migrations block follows is decided by its shape, so an error names the fields
# of the one the user meant rather than of both.
Migrations = Annotated[
    Annotated[SelfDescribingMigrations, Tag("SelfDescribing")] | Annotated[ExpandOnlyMigrations, Tag("ExpandOnly")],
    Discriminator(lambda v: "ExpandOnly" if isinstance(v, dict) and ("command" in v or "expand_only" in v) else "SelfDescribing"),
]


class AppSpec(_Strict):
    """Everything cutover knows about the app it deploys."""

    format: Literal["cutover-app/1"]
    name: str
    image: Image
    port: int = Field(ge=1, le=65535)
    health: Health
    stop: Stop = Stop()
    drain: Drain | None = None
    env: dict[str, str] = {}
    smoke: tuple[Request, ...] = Field(min_length=1)
    write_probe: WriteProbe | None = None
    database: Database | None = None
    migrations: Migrations | None = None
    locustfile: str | None = None
    security: Security = Security()
    # Where the file was read from: relative paths (build context, locustfile) are relative to it.
    directory: str = Field(default=".", exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"must be lower-case letters, digits, '.', '_' and '-', like 'my-web', got {value!r}")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, val in value.items():
                if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                    raise ValueError(f"{key!r} is not an environment variable name")
                if key in CUTOVER_ENV:
                    raise ValueError(f"{key} is set by cutover itself")
                if not isinstance(val, (str, int, float)) or isinstance(val, bool):
                    raise ValueError(f"{key} must be a string")
            return {k: str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "AppSpec":
        if self.migrations is not None and self.database is None:
            raise ValueError("migrations need a database: declare database, or drop migrations")
        if self.database is not None:
            clash = sorted(set(self.database.env) & set(self.env))
            if clash:
                raise ValueError(f"{clash[0]} is set both in env and in database.env")
        return self

    @property
    def read_write(self) -> bool:
        """A read-write deployment: it has a database (and so the schema gates)."""
        return self.database is not None

    @property
    def expand_command(self) -> tuple[str, ...] | None:
        """The command that is this app's expand step (both executors run it), or None."""
        if self.migrations is None:
            return None
        return self.migrations.expand if self.migrations.self_describing else self.migrations.command

    def image_tag(self, version: str) -> str:
        repository = self.image.repository or self.name
        return f"{repository}:{version}"

    def build_args(self, version: str) -> dict[str, str]:
        assert self.image.build is not None
        return {k: v.replace(VERSION_PLACEHOLDER, version) for k, v in self.image.build.args.items()}

    def resolve(self, relative: str) -> Path:
        return (Path(self.directory) / relative).resolve()


def load_app(path: Path) -> AppSpec:
    """Read and validate one app definition file."""
    if not path.is_file():
        raise AppError(f"app definition {path} does not exist.")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AppError(f"{path}: is not valid YAML ({exc.__class__.__name__}).") from None
    if not isinstance(document, dict):
        raise AppError(f"{path}: must be a mapping of fields (format, name, image, port, health, smoke, ...).")
    return app_from_document(document, source=str(path), directory=path.parent)


def app_from_document(document: dict, source: str = "app definition", directory: Path | str = ".") -> AppSpec:
    try:
        app = AppSpec.model_validate({**document, "directory": str(directory)})
    except ValidationError as exc:
        raise AppError(f"{source}: {_first_problem(exc)}") from None
    _check_files(app, source)
    return app


def _check_files(app: AppSpec, source: str) -> None:
    if app.image.build is not None:
        context = app.resolve(app.image.build.context)
        if not context.is_dir():
            raise AppError(f"{source}: image.build.context {app.image.build.context!r} is not a directory (looked in {context}).")
        if not (context / app.image.build.dockerfile).is_file():
            raise AppError(f"{source}: image.build.dockerfile {app.image.build.dockerfile!r} is not a file in the build context {context}.")
    if app.locustfile is not None and not app.resolve(app.locustfile).is_file():
        raise AppError(f"{source}: locustfile {app.locustfile!r} is not a file (looked in {app.resolve(app.locustfile)}).")


def _first_problem(exc: ValidationError) -> str:
    """Pydantic's first error as one sentence naming the field."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"] if not _is_union_tag(part))
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if error["type"] == "missing":
        return f"missing required field {location!r}."
    if error["type"] == "extra_forbidden":
        return f"unknown field {location!r}."
    if error["type"] == "literal_error" and location == "format":
        return f"format must be {APP_FORMAT!r}, got {error.get('input')!r}."
    message = message.rstrip(".")
    if message.startswith("Input should"):
        # Pydantic's own wording; the value the user wrote makes it actionable.
        message = "must" + message[len("Input should") :] + f", got {error.get('input')!r}"
    return f"{location}: {message}." if location else f"{message}."


def _is_union_tag(part: Any) -> bool:
    # Pydantic names the union member it tried (e.g. "SelfDescribingMigrations"); users never wrote it.
    return isinstance(part, str) and part[:1].isupper()


# Frozen pydantic models hash their fields, and dicts do not hash; the definition's canonical JSON
# does, so a StackSpec holding an AppSpec stays hashable.
AppSpec.__hash__ = lambda self: hash(self.model_dump_json())  # type: ignore[method-assign]
