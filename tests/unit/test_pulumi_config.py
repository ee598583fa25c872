"""Config through the Pulumi path: the Pulumi.yaml schema, and bad values stopping the program.

A bad value stops the program with a ``pulumi.RunError`` and nothing else: the Pulumi CLI prints a
RunError as its one-sentence message, any other exception with a Python traceback.
"""

from __future__ import annotations

import re

import pulumi
import pytest
import yaml
from pulumi_harness import ROOT, STACKS_DIR, run_program, stack_config

from stacks.spec import STACK_FILE_KEYS, SpecError, spec_from_config

PROJECT_FILE = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
SCHEMA = PROJECT_FILE["config"]
PULUMI_TYPES = {"integer": int, "string": str, "boolean": bool}


@pytest.mark.parametrize(
    ("key", "overrides", "drop"),
    [
        ("cutover:poolSize", {}, ("cutover:poolSize",)),  # missing
        ("docker:host", {}, ("docker:host",)),  # missing provider key
        ("cutover:poolSize", {"cutover:poolSize": "three"}, ()),  # wrong type
        ("cutover:livePort", {"cutover:livePort": "80.5"}, ()),  # wrong type
        ("cutover:liveColor", {"cutover:liveColor": "purple"}, ()),  # unknown colour
        ("cutover:poolSize", {"cutover:poolSize": "0"}, ()),  # an empty pool serves nothing
        ("cutover:previewPort", {"cutover:previewPort": "8080"}, ()),  # clashes with the live port
        ("cutover:app", {}, ("cutover:app",)),  # which app is deployed has no default
        ("cutover:app", {"cutover:app": "../examples/no-such-app.yaml"}, ()),  # not a file
    ],
)
def test_bad_config_stops_the_program_with_one_sentence_naming_the_key(key, overrides, drop):
    with pytest.raises(pulumi.RunError) as caught:
        run_program("dev", overrides, drop)
    _assert_one_sentence(caught.value)
    message = str(caught.value)
    assert key in message
    assert message.startswith("stacks/Pulumi.dev.yaml: ")
    # The very sentence the simulator prints for the same file.
    config = {k: v for k, v in {**stack_config("dev"), **overrides}.items() if k not in drop}
    with pytest.raises(SpecError) as direct:
        spec_from_config("dev", config, source="stacks/Pulumi.dev.yaml", stacks_dir=STACKS_DIR)
    assert str(direct.value) == message


def _assert_one_sentence(error: BaseException) -> None:
    # Exactly RunError (not a subclass or a wrapper), so the CLI prints the message without a trace.
    assert type(error) is pulumi.RunError, type(error)
    message = str(error)
    # One sentence: a single full stop, at the end.
    assert "\n" not in message and message.endswith(".") and not re.search(r"[.!?]\s", message), message


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("format: cutover-app/1\nname: broken\nimage: {repository: team/web}\nhealth: {path: /h}\nsmoke: [{path: /}]\n", "port"),
        (
            "format: cutover-app/1\nname: broken\nimage: {repository: team/web}\nport: 80\nhealth: {path: /h}\n"
            "smoke: [{path: /}]\nstop: {signal: SIGNOPE}\n",
            "stop.signal",
        ),
        (
            "format: cutover-app/1\nname: broken\nimage: {repository: team/web}\nport: 80\nhealth: {path: /h}\n"
            "smoke: [{path: /}]\nmigrations: {command: [migrate], expand_only: true}\n",
            "database",
        ),
    ],
)
def test_a_bad_app_definition_stops_the_program_with_one_sentence_naming_the_file_and_field(tmp_path, document, field):
    app_file = tmp_path / "cutover-app.yaml"
    app_file.write_text(document)
    with pytest.raises(pulumi.RunError) as caught:
        run_program("dev", {"cutover:app": str(app_file)})
    _assert_one_sentence(caught.value)
    message = str(caught.value)
    assert message.startswith(f"{app_file}: ") and field in message, message
    # Stopped before a single resource was declared.
    assert not caught.value.registrations


def test_project_file():
    assert PROJECT_FILE["name"] == "cutover"
    assert PROJECT_FILE["runtime"] == {"name": "python", "options": {"virtualenv": ".venv"}}
    assert PROJECT_FILE["stackConfigDir"] == "stacks"
    assert (ROOT / "__main__.py").is_file()


def test_schema_covers_exactly_the_cutover_keys():
    cutover_keys = {key.split(":", 1)[1] for key in STACK_FILE_KEYS if key.startswith("cutover:")}
    assert set(SCHEMA) == cutover_keys
    # Pulumi refuses a type or description on another namespace's key; it is documented instead.
    assert "docker:host" not in SCHEMA and "host" not in SCHEMA
    assert "`docker:host`" in (ROOT / "docs" / "pulumi.md").read_text()


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_every_key_is_typed_and_described(name):
    entry = SCHEMA[name]
    assert entry["type"] in PULUMI_TYPES, name
    assert len(entry["description"]) > 20, name
    if "default" in entry:
        assert isinstance(entry["default"], PULUMI_TYPES[entry["type"]]), name


@pytest.mark.parametrize("stack", ["dev", "ci", "prod"])
def test_stack_files_hold_values_of_the_schema_type(stack):
    # Pulumi checks stack values against the schema; a mismatch here would fail `pulumi up` only.
    document = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    for name, entry in SCHEMA.items():
        assert isinstance(document[f"cutover:{name}"], PULUMI_TYPES[entry["type"]]), (stack, name)


def test_schema_defaults_make_a_valid_stack():
    config = {f"cutover:{name}": entry["default"] for name, entry in SCHEMA.items() if "default" in entry}
    # Artefact versions and the engine have no sensible default: a stack must say them.
    without_default = {key for key in STACK_FILE_KEYS if key not in config}
    # Nor does the app: a stack that forgot to name one must not quietly deploy the demo.
    assert without_default == {"docker:host", "cutover:app", "cutover:blueVersion", "cutover:greenVersion"}
    dev = stack_config("dev")
    spec = spec_from_config("new", {**config, **{key: dev[key] for key in without_default}}, source="Pulumi.yaml defaults", stacks_dir=STACKS_DIR)
    assert spec.pool_size == SCHEMA["poolSize"]["default"]
