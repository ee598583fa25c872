"""The app definition: both examples load, and a bad definition is one sentence naming field and file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stacks.app import AppError, ExpandOnlyMigrations, SelfDescribingMigrations, load_app

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples/demo/cutover-app.yaml"
SITE = ROOT / "examples/static-site/cutover-app.yaml"


def write_app(directory: Path, document: dict) -> Path:
    (directory / "Dockerfile").write_text("FROM scratch\n")
    path = directory / "cutover-app.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def minimal() -> dict:
    return {
        "format": "cutover-app/1",
        "name": "web",
        "image": {"build": {"context": ".", "dockerfile": "Dockerfile"}},
        "port": 3000,
        "health": {"path": "/up"},
        "smoke": [{"path": "/"}],
    }


def test_the_demo_is_a_read_write_app_with_self_describing_migrations():
    app = load_app(DEMO)
    assert app.read_write and isinstance(app.migrations, SelfDescribingMigrations)
    assert app.write_probe is not None and app.write_probe.read_path(7) == "/items/7"
    assert app.build_args("2.0.0")["APP_VERSION"] == "2.0.0"
    assert app.image_tag("2.0.0") == "cutover-demo:2.0.0"
    assert app.resolve(app.locustfile).is_file()


def test_the_static_site_is_read_only_and_needs_nothing_of_the_demo():
    app = load_app(SITE)
    assert not app.read_write and app.migrations is None and app.write_probe is None
    assert (app.port, app.stop.signal, app.health.command, app.locustfile) == (9090, "SIGQUIT", None, None)


def test_a_minimal_definition_gets_the_documented_defaults(tmp_path):
    app = load_app(write_app(tmp_path, minimal()))
    assert (app.stop.signal, app.stop.grace_seconds, app.env, app.smoke[0].method, app.smoke[0].expect_status) == ("SIGTERM", 30, {}, "GET", 200)
    assert app.drain is None


def test_the_demo_declares_a_drain_hook_that_ends_its_streams():
    app = load_app(DEMO)
    assert app.drain is not None and app.drain.command[-1] == "end-streams" and app.drain.close_seconds == 5


def test_prebuilt_images_are_tagged_with_the_version(tmp_path):
    document = {**minimal(), "image": {"repository": "myteam/web"}}
    app = load_app(write_app(tmp_path, document))
    assert app.image.build is None and app.image_tag("3.1.0") == "myteam/web:3.1.0"


def test_expand_only_migrations_are_told_apart_by_their_shape(tmp_path):
    document = {**minimal(), "database": {"env": {"DATABASE_URL": "postgresql://{user}:{password}@{host}:{port}/{name}"}},
                "migrations": {"command": ["./migrate", "up"], "expand_only": True, "sql_dir": "/app/sql"}}
    app = load_app(write_app(tmp_path, document))
    assert isinstance(app.migrations, ExpandOnlyMigrations) and app.migrations.command == ("./migrate", "up")


def _set(document: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {}) if not part.isdigit() else node[int(part)]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return document


_DELETE = object()
DB = {"env": {"DATABASE_URL": "postgresql://{user}:{password}@{host}/{name}"}}


@pytest.mark.parametrize(
    "change, named",
    [
        ({"port": _DELETE}, "port"),
        ({"port": 0}, "port"),
        ({"port": "eighty"}, "port"),
        ({"health.path": "healthz"}, "health.path"),
        ({"health": _DELETE}, "health"),
        ({"format": "cutover-app/9"}, "format"),
        ({"name": "My App"}, "name"),
        ({"colour": "blue"}, "colour"),
        ({"image": {}}, "image"),
        ({"image": {"build": {}, "repository": "x/y"}}, "image"),
        ({"image.build.context": "nowhere"}, "image.build.context"),
        ({"image.build.dockerfile": "Dockerfile.missing"}, "image.build.dockerfile"),
        ({"stop": {"signal": "SIGWHAT"}}, "stop.signal"),
        ({"stop": {"grace_seconds": 0}}, "stop.grace_seconds"),
        ({"smoke": []}, "smoke"),
        ({"smoke": [{"path": "/", "method": "FETCH"}]}, "smoke.0.method"),
        ({"env": {"CUTOVER_COLOUR": "red"}}, "env"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"database": {"env": {"DATABASE_URL": "postgresql://{login}@{host}"}}}, "database.env"),
        ({"database": {"env": {}}}, "database.env"),
        ({"migrations": {"command": ["up"], "expand_only": True}}, "migrations"),
        ({"database": DB, "migrations": {"describe": ["d"], "current": ["c"], "expand": ["e"]}}, "migrations.contract"),
        ({"database": DB, "migrations": {"command": [], "expand_only": True}}, "migrations.command"),
        ({"database": DB, "migrations": {"command": ["up"], "expand_only": True, "sql_dir": "sql"}}, "migrations.sql_dir"),
        ({"write_probe": {"create": {"method": "POST", "path": "/things"}, "read": {"path": "/things"}}}, "write_probe"),
        ({"write_probe": {"create": {"path": "/things"}, "read": {"path": "/things/{id}"}}}, "write_probe"),
        ({"locustfile": "missing.py"}, "locustfile"),
        ({"drain": {}}, "drain.command"),
        ({"drain": {"command": "end-streams"}}, "drain.command"),
        ({"drain": {"command": ["end"], "close_seconds": 0}}, "drain.close_seconds"),
    ],
)
def test_a_bad_definition_is_one_sentence_naming_the_field_and_the_file(tmp_path, change, named):
    document = minimal()
    for dotted, value in change.items():
        _set(document, dotted, value)
    path = write_app(tmp_path, document)
    if "image.build.context" in change or "image.build.dockerfile" in change:
        (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(AppError) as raised:
        load_app(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    assert named in message, f"{named!r} not named in {message!r}"
    assert "\n" not in message and message.endswith("."), message
    # No pydantic boilerplate (error URLs, "For further information", type names) reaches a user.
    assert not re.search(r"errors\.pydantic\.dev|For further information|SelfDescribing|ExpandOnly", message), message


def test_a_missing_file_and_bad_yaml_are_one_sentence(tmp_path):
    with pytest.raises(AppError, match="does not exist"):
        load_app(tmp_path / "nope.yaml")
    broken = tmp_path / "cutover-app.yaml"
    broken.write_text("port: [9090\n")
    with pytest.raises(AppError, match="not valid YAML"):
        load_app(broken)
