"""Config through the Pulumi path: the Pulumi.yaml schema, and bad values stopping the program."""

from __future__ import annotations

import re

import pytest
import yaml
from pulumi_harness import ROOT, run_program, stack_config

from stacks.spec import REQUIRED_KEYS, SpecError, spec_from_config

PROJECT_FILE = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
SCHEMA = PROJECT_FILE["config"]
PULUMI_TYPES = {"integer": int, "string": str}


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
    ],
)
def test_bad_config_stops_the_program_with_one_sentence_naming_the_key(key, overrides, drop):
    with pytest.raises(SpecError) as caught:
        run_program("dev", overrides, drop)
    message = str(caught.value)
    assert key in message
    assert message.startswith("stacks/Pulumi.dev.yaml: ")
    # One sentence: a single full stop, at the end.
    assert message.endswith(".") and not re.search(r"[.!?]\s", message), message


def test_project_file():
    assert PROJECT_FILE["name"] == "cutover"
    assert PROJECT_FILE["runtime"] == {"name": "python", "options": {"virtualenv": ".venv"}}
    assert PROJECT_FILE["stackConfigDir"] == "stacks"
    assert (ROOT / "__main__.py").is_file()


def test_schema_covers_exactly_the_cutover_keys():
    cutover_keys = {key.split(":", 1)[1] for key in REQUIRED_KEYS if key.startswith("cutover:")}
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
    without_default = {key for key in REQUIRED_KEYS if key not in config}
    assert without_default == {"docker:host", "cutover:blueVersion", "cutover:greenVersion"}
    dev = stack_config("dev")
    spec = spec_from_config("new", {**config, **{key: dev[key] for key in without_default}}, source="Pulumi.yaml defaults")
    assert spec.pool_size == SCHEMA["poolSize"]["default"]
