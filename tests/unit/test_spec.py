"""The stack loader: every stack file loads, and bad config fails with one sentence naming key and file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stacks.spec import REQUIRED_KEYS, STACKS_DIR, SpecError, StackSpec, known_stacks, load_stack, spec_from_config

STACKS = ("dev", "ci", "prod")


def ci_config() -> dict:
    """The ci stack's raw config, as a starting point that each test breaks in one place.

    Its app definition is named by absolute path, so the copy loads from any directory.
    """
    config = dict(yaml.safe_load((STACKS_DIR / "Pulumi.ci.yaml").read_text())["config"])
    config["cutover:app"] = str((STACKS_DIR / config["cutover:app"]).resolve())
    return config


def write_stack(stacks_dir: Path, name: str, config: dict) -> Path:
    path = stacks_dir / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    return path


def assert_one_sentence(message: str, *must_name: str) -> None:
    """One line, one sentence (ends with '.', no sentence break inside), naming each of ``must_name``."""
    for text in must_name:
        assert text in message, f"{text!r} is not named in {message!r}"
    assert "\n" not in message, message
    assert message.endswith("."), message
    # Paths, quoted values and numbers legitimately carry dots; only what is left may not end a sentence.
    body = message[:-1]
    for text in must_name:
        body = body.replace(text, "X")
    body = re.sub(r"'[^']*'", "X", body)
    assert not re.search(r"[.!?](\s|$)", body), f"more than one sentence: {message!r}"


# -- the real stack files ------------------------------------------------------------------------


def test_the_three_stacks_are_known():
    assert set(STACKS) <= set(known_stacks())


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_loads(stack):
    spec = load_stack(stack)
    assert isinstance(spec, StackSpec)
    assert spec.stack == stack
    assert spec.live_colour in ("blue", "green")
    assert spec.idle_colour != spec.live_colour
    assert spec.live_port != spec.preview_port
    assert spec.pool_size >= 1


def test_stacks_are_identical_apart_from_size_ports_and_host():
    """Identical environments: only where a stack runs and how big it is may differ (and how long the
    simulator watches a switch: docs/pulumi.md, What may differ between stacks)."""
    allowed_to_differ = {"stack", "docker_host", "pool_size", "bind_address", "live_port", "preview_port", "watch_seconds"}
    specs = [load_stack(s) for s in STACKS]
    for field in StackSpec.__dataclass_fields__:
        if field not in allowed_to_differ:
            assert len({getattr(s, field) for s in specs}) == 1, f"{field} differs between stacks"


def test_ci_stack_values():
    spec = load_stack("ci")
    assert (spec.pool_size, spec.bind_address, spec.live_port, spec.preview_port) == (2, "127.0.0.1", 18080, 18081)
    assert spec.live_url() == "http://127.0.0.1:18080"
    assert spec.preview_url() == "http://127.0.0.1:18081"
    assert spec.version_of("blue") == spec.blue_version
    assert spec.version_of("green") == spec.green_version


def test_a_local_stack_bound_to_every_interface_is_reached_through_loopback(tmp_path):
    config = ci_config()
    config["cutover:bindAddress"] = "0.0.0.0"
    spec = load_stack("everywhere", write_stack(tmp_path, "everywhere", config).parent)
    assert spec.engine_host is None
    assert spec.live_url() == f"http://127.0.0.1:{spec.live_port}"


def test_a_remote_stack_is_reached_on_its_engines_host():
    """prod lives on the engine its docker:host names, so its ports are published there."""
    spec = load_stack("prod")
    assert spec.docker_host.startswith("ssh://") and spec.engine_host == "prod-docker.internal"
    assert spec.live_url() == f"http://prod-docker.internal:{spec.live_port}"


# -- numeric strings (Pulumi stores CLI-set config as strings) -----------------------------------


def test_numeric_strings_are_accepted(tmp_path):
    config = ci_config()
    config.update({
        "cutover:poolSize": "3",
        "cutover:livePort": "9080",
        "cutover:previewPort": "9081",
        "cutover:healthIntervalMs": "500",
        "cutover:drainSeconds": "0",
    })
    spec = load_stack("strings", write_stack(tmp_path, "strings", config).parent)
    assert (spec.pool_size, spec.live_port, spec.preview_port, spec.health_interval_ms, spec.drain_seconds) == (3, 9080, 9081, 500, 0)
    assert all(isinstance(v, int) for v in (spec.pool_size, spec.live_port, spec.preview_port))


def test_a_file_written_by_pulumi_config_set_loads(tmp_path):
    """`pulumi config set` writes every value as a string; such a file must load as the original."""
    as_strings = {key: str(value) for key, value in ci_config().items()}
    write_stack(tmp_path, "ci", as_strings)
    assert load_stack("ci", tmp_path) == load_stack("ci")


# -- bad config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key_names_key_and_file(tmp_path, key):
    config = ci_config()
    del config[key]
    path = write_stack(tmp_path, "bad", config)
    with pytest.raises(SpecError) as raised:
        load_stack("bad", tmp_path)
    assert "missing" in str(raised.value)
    assert_one_sentence(str(raised.value), key, str(path))


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_value_counts_as_missing(tmp_path, empty):
    config = ci_config()
    config["cutover:app"] = empty
    path = write_stack(tmp_path, "bad", config)
    with pytest.raises(SpecError) as raised:
        load_stack("bad", tmp_path)
    assert_one_sentence(str(raised.value), "cutover:app", str(path))


@pytest.mark.parametrize(
    "key, value",
    [
        ("cutover:poolSize", "two"),
        ("cutover:poolSize", True),  # YAML `yes`/`true`: a bool is not a size
        ("cutover:poolSize", 2.5),
        ("cutover:poolSize", 0),
        ("cutover:poolSize", "0"),
        ("cutover:poolSize", -1),
        ("cutover:poolSize", 21),
        ("cutover:livePort", "80a"),
        ("cutover:livePort", 70000),
        ("cutover:previewPort", [8081]),
        ("cutover:healthIntervalMs", 50),
        ("cutover:drainSeconds", "-5"),
        ("cutover:liveColor", "red"),
        ("cutover:liveColor", "Blue"),
        ("cutover:bindAddress", "localhost"),
        ("docker:host", "/var/run/docker.sock"),
        ("cutover:app", "no-such-app.yaml"),
        ("cutover:app", 3),
        ("cutover:blueVersion", "1.0 beta"),
        ("cutover:greenVersion", 2),
        ("cutover:baseImage", "Debian:Bookworm"),
    ],
)
def test_bad_value_names_key_and_file(tmp_path, key, value):
    config = ci_config()
    config[key] = value
    path = write_stack(tmp_path, "bad", config)
    with pytest.raises(SpecError) as raised:
        load_stack("bad", tmp_path)
    assert_one_sentence(str(raised.value), key, str(path))


def test_pool_size_two_as_a_word(tmp_path):
    config = ci_config()
    config["cutover:poolSize"] = "two"
    path = write_stack(tmp_path, "bad", config)
    with pytest.raises(SpecError) as raised:
        load_stack("bad", tmp_path)
    assert str(raised.value) == f"{path}: cutover:poolSize must be a whole number from 1 to 20, got 'two'."


def test_unknown_colour_is_refused():
    config = ci_config()
    config["cutover:liveColor"] = "purple"
    with pytest.raises(SpecError) as raised:
        spec_from_config("ci", config, source="Pulumi.ci.yaml")
    assert_one_sentence(str(raised.value), "cutover:liveColor", "Pulumi.ci.yaml", "purple")


def test_pool_size_zero_is_refused():
    config = ci_config()
    config["cutover:poolSize"] = 0
    with pytest.raises(SpecError) as raised:
        spec_from_config("ci", config, source="Pulumi.ci.yaml")
    assert_one_sentence(str(raised.value), "cutover:poolSize", "Pulumi.ci.yaml")


@pytest.mark.parametrize("preview", [18080, "18080"])
def test_equal_live_and_preview_ports_are_refused(tmp_path, preview):
    config = ci_config()
    config["cutover:previewPort"] = preview  # "18080" is the same port once converted
    path = write_stack(tmp_path, "bad", config)
    with pytest.raises(SpecError) as raised:
        load_stack("bad", tmp_path)
    assert_one_sentence(str(raised.value), "cutover:previewPort", "cutover:livePort", str(path))


def test_unknown_key_is_refused(tmp_path):
    config = ci_config()
    config["cutover:replicas"] = 3
    path = write_stack(tmp_path, "bad", config)
    with pytest.raises(SpecError) as raised:
        load_stack("bad", tmp_path)
    assert "unknown key" in str(raised.value)
    assert_one_sentence(str(raised.value), "cutover:replicas", str(path))


def test_non_existent_stack_names_the_file_it_looked_for():
    with pytest.raises(SpecError) as raised:
        load_stack("staging")
    message = str(raised.value)
    assert_one_sentence(message, "staging", str(STACKS_DIR / "Pulumi.staging.yaml"))
    for stack in STACKS:
        assert stack in message  # says which stacks do exist


def test_stack_name_cannot_leave_the_stacks_dir():
    with pytest.raises(SpecError) as raised:
        load_stack("../stacks/Pulumi.ci")
    assert_one_sentence(str(raised.value), "'../stacks/Pulumi.ci'")


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_text("config:\n  cutover:poolSize: [2\n  cutover:livePort: 18080\n")
    with pytest.raises(SpecError) as raised:
        load_stack("broken", tmp_path)
    assert "YAML" in str(raised.value)
    assert_one_sentence(str(raised.value), str(path))


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "config: 3\n", "other:\n  cutover:poolSize: 2\n"])
def test_file_without_a_config_mapping_names_the_file(tmp_path, text):
    path = tmp_path / "Pulumi.empty.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as raised:
        load_stack("empty", tmp_path)
    assert_one_sentence(str(raised.value), str(path), "config")


def test_a_bad_app_definition_is_named_with_its_field(tmp_path):
    """The stack loads its app definition; a bad one is one sentence naming the app file and field."""
    app_file = tmp_path / "cutover-app.yaml"
    app_file.write_text((STACKS_DIR / "../examples/static-site/cutover-app.yaml").resolve().read_text().replace("port: 9090", "port: 0"))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    config = ci_config()
    config["cutover:app"] = "cutover-app.yaml"  # relative to the stack file's directory
    write_stack(tmp_path, "bad", config)
    with pytest.raises(SpecError) as raised:
        load_stack("bad", tmp_path)
    assert_one_sentence(str(raised.value), str(app_file), "port")


def test_stacks_dir_comes_from_the_environment(tmp_path, monkeypatch):
    write_stack(tmp_path, "mine", ci_config())
    monkeypatch.setenv("CUTOVER_STACKS_DIR", str(tmp_path))
    assert known_stacks() == ["mine"]
    assert load_stack("mine").stack == "mine"


def test_spec_error_is_a_value_error():
    # Callers that only know ValueError still catch it; the CLI turns it into one line on stderr.
    assert issubclass(SpecError, ValueError)


# -- the watch after a switch (optional keys) ----------------------------------------------------


def test_the_watch_is_on_by_default_for_the_shipped_stacks():
    for stack in STACKS:
        spec = load_stack(stack)
        assert spec.watch_seconds > 0 and spec.watch_min_requests >= 1, stack


def test_watch_keys_are_read_and_zero_turns_it_off(tmp_path):
    config = {**ci_config(), "cutover:watchSeconds": "0", "cutover:watchMax5xxPercent": 2.5, "cutover:watchMinRequests": 50, "cutover:watchMaxResponseMs": 800}
    write_stack(tmp_path, "w", config)
    spec = load_stack("w", tmp_path)
    assert (spec.watch_seconds, spec.watch_max_5xx_percent, spec.watch_min_requests, spec.watch_max_response_ms) == (0, 2.5, 50, 800)


@pytest.mark.parametrize(
    "key, value",
    [("cutover:watchSeconds", -1), ("cutover:watchSeconds", "ten"), ("cutover:watchMax5xxPercent", 101),
     ("cutover:watchMax5xxPercent", "lots"), ("cutover:watchMinRequests", 0), ("cutover:watchMaxResponseMs", True)],
)
def test_bad_watch_values_name_key_and_file(tmp_path, key, value):
    path = write_stack(tmp_path, "bad", {**ci_config(), key: value})
    with pytest.raises(SpecError) as raised:
        load_stack("bad", tmp_path)
    assert_one_sentence(str(raised.value), key, str(path))
