"""The normaliser behind the runtime parity test (tests/parity.py): a ``docker inspect`` dict and a
Pulumi-registered input dict that describe the same container reach the same normal form, and
every field that differs is named with its container.

The inspect dicts are cut down from what Docker 20.10 printed for the simulator's containers; the
inputs from what the Pulumi program registered for them under mocks.
"""

from __future__ import annotations

import copy

import pytest

from tests import parity

SHORT_ID = "32d763c65280"
IMAGE_ID = "sha256:" + "ab" * 32

IMAGE_CONFIG = {
    "Env": ["PATH=/usr/bin:/bin", "PYTHONUNBUFFERED=1", "APP_VERSION=1.0.0"],
    "Cmd": ["python3", "/srv/app.pyz", "gunicorn"],
    "Entrypoint": None,
    "WorkingDir": "/srv",
    "User": "app",
    "Labels": {"cutover.built-from": "source", "cutover.version": "1.0.0"},
    "Healthcheck": None,
    "StopSignal": "",
    "Volumes": None,
}


def inspect() -> dict:
    return {
        "Id": SHORT_ID + "f" * 52,
        "Name": "/cutover-parity-blue-1",
        "Image": IMAGE_ID,
        "Config": {
            "Hostname": "cutover-parity-blue-1",
            "User": "app",
            "Env": [
                "APP_PORT=8000", "CUTOVER_COLOUR=blue", "DATABASE_PASSWORD=simulator-secret",
                "DATABASE_URL=postgresql://cutover:simulator-secret@db:5432/cutover",
                "PATH=/usr/bin:/bin", "PYTHONUNBUFFERED=1", "APP_VERSION=1.0.0",
            ],
            "Cmd": ["python3", "/srv/app.pyz", "gunicorn"],
            "Healthcheck": {"Test": ["CMD", "/srv/probe"], "Interval": 1_000_000_000, "Timeout": 2_000_000_000, "StartPeriod": 2_000_000_000, "Retries": 3},
            "Image": IMAGE_ID,
            "WorkingDir": "/srv",
            "Entrypoint": None,
            "Labels": {
                "cutover.built-from": "source", "cutover.version": "1.0.0", "cutover.colour": "blue",
                "cutover.fingerprint": "a70622769901f581", "cutover.managed-by": "simulator",
            },
            "StopSignal": "SIGTERM",
            "StopTimeout": 40,
        },
        "HostConfig": {
            "Binds": ["cutover-parity-data:/data:rw"],
            "NetworkMode": "default",
            "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "19840"}]},
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "CapAdd": None,
            "CapDrop": ["ALL"],
            "ReadonlyRootfs": True,
            "SecurityOpt": ["no-new-privileges"],
            "Tmpfs": {"/tmp": "rw,nosuid,nodev,noexec,size=64m"},
            "Privileged": False,
        },
        "Mounts": [{"Type": "volume", "Name": "cutover-parity-data", "Source": "/var/lib/docker/volumes/x/_data", "Destination": "/data", "RW": True}],
        "NetworkSettings": {"Networks": {"cutover-parity": {"Aliases": ["cutover-parity-blue-1", SHORT_ID], "IPAMConfig": None}}},
    }


def inputs() -> dict:
    return {
        "name": "cutover-parity-blue-1",
        "image": "sha256:mock-parity-demo:1.0.0",
        "hostname": "cutover-parity-blue-1",
        "user": "app",
        "envs": [
            "APP_PORT=8000", "CUTOVER_COLOUR=blue", "DATABASE_PASSWORD=mock-secret",
            "DATABASE_URL=postgresql://cutover:mock-secret@db:5432/cutover",
        ],
        "healthcheck": {"tests": ["CMD", "/srv/probe"], "interval": "1s", "timeout": "2s", "startPeriod": "2s", "retries": 3.0},
        "stopSignal": "SIGTERM",
        "stopTimeout": 40.0,
        "destroyGraceSeconds": 40.0,
        "wait": True,
        "waitTimeout": 120.0,
        "restart": "unless-stopped",
        "labels": [
            {"label": "cutover.colour", "value": "blue"},
            {"label": "cutover.fingerprint", "value": "b566ee17b0b74c75"},
            {"label": "cutover.managed-by", "value": "pulumi"},
        ],
        "volumes": [{"volumeName": "cutover-parity-data", "containerPath": "/data"}],
        "uploads": [],
        "ports": [{"internal": 8080.0, "external": 19840.0, "ip": "127.0.0.1", "protocol": "tcp"}],
        "networksAdvanced": [{"name": "cutover-parity", "aliases": ["cutover-parity-blue-1"]}],
        "readOnly": True,
        "capabilities": {"adds": [], "drops": ["ALL"]},
        "securityOpts": ["no-new-privileges"],
        "tmpfs": {"/tmp": "rw,nosuid,nodev,noexec,size=64m"},
    }


def image(config: dict | None = None):
    return lambda ref: parity.ImageFacts(IMAGE_ID, IMAGE_CONFIG if config is None else config)


def declared(i: dict | None = None, config: dict | None = None) -> dict:
    return parity.pulumi_container(inputs() if i is None else i, image(config), secrets=["mock-secret"])


def running(d: dict | None = None, files=None) -> dict:
    return parity.docker_container(inspect() if d is None else d, files, secrets=["simulator-secret"])


def test_the_same_container_seen_from_both_sides_is_equal():
    assert parity.differences(declared(), running(), "c") == []


def test_secrets_show_as_placeholders_inside_their_templates():
    env = running()["env"]
    assert env["DATABASE_PASSWORD"] == "<secret>"
    assert env["DATABASE_URL"] == "postgresql://cutover:<secret>@db:5432/cutover"


def _set(path: tuple, value):
    def change(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return change


_DELETE = object()

# What the simulator might get wrong, and the field the comparison must name for it.
BREAKS = {
    "stop_timeout_s": _set(("Config", "StopTimeout"), _DELETE),
    "stop_signal": _set(("Config", "StopSignal"), "SIGQUIT"),
    "image": _set(("Image",), "sha256:" + "cd" * 32),
    "env[CUTOVER_COLOUR]": _set(("Config", "Env", 1), "CUTOVER_COLOUR=green"),
    "env[APP_PORT]": lambda d: d["Config"]["Env"].remove("APP_PORT=8000"),
    "healthcheck": _set(("Config", "Healthcheck", "Interval"), 2_000_000_000),
    "restart": _set(("HostConfig", "RestartPolicy", "Name"), "always"),
    "labels[cutover.colour]": _set(("Config", "Labels", "cutover.colour"), "green"),
    "labels[cutover.managed-by]": _set(("Config", "Labels", "cutover.managed-by"), _DELETE),
    "mounts": _set(("Mounts", 0, "Destination"), "/elsewhere"),
    "tmpfs[/tmp]": _set(("HostConfig", "Tmpfs", "/tmp"), "rw,size=64m"),
    "ports": _set(("HostConfig", "PortBindings", "8080/tcp", 0, "HostIp"), "0.0.0.0"),
    "networks[cutover-parity]": _set(("NetworkSettings", "Networks", "cutover-parity", "Aliases"), [SHORT_ID]),
    "user": _set(("Config", "User"), "root"),
    "read_only": _set(("HostConfig", "ReadonlyRootfs"), False),
    "cap_add": _set(("HostConfig", "CapAdd"), ["NET_ADMIN"]),
    "cap_drop": _set(("HostConfig", "CapDrop"), None),
    "security_opt": _set(("HostConfig", "SecurityOpt"), None),
    "hostname": _set(("Config", "Hostname"), SHORT_ID),
    "command": _set(("Config", "Cmd"), ["sh"]),
    "privileged": _set(("HostConfig", "Privileged"), True),
}


@pytest.mark.parametrize("field", BREAKS)
def test_each_field_that_differs_is_named_with_its_container(field):
    broken = copy.deepcopy(inspect())
    BREAKS[field](broken)
    found = parity.differences(declared(), running(broken), "cutover-parity-blue-1")
    assert [line.split(": Pulumi declares")[0] for line in found] == [f"cutover-parity-blue-1: {field}"]


def test_a_dropped_stop_timeout_reads_as_dockers_default():
    broken = inspect()
    del broken["Config"]["StopTimeout"]
    assert parity.differences(declared(), running(broken), "c") == ["c: stop_timeout_s: Pulumi declares 40, the simulator runs 10"]


def test_executor_labels_differ_in_value_only():
    # cutover.managed-by says 'simulator' on one side and 'pulumi' on the other: expected.
    assert running()["labels"]["cutover.managed-by"] == declared()["labels"]["cutover.managed-by"] == parity.PER_EXECUTOR


def test_what_the_container_leaves_out_comes_from_its_image():
    i = inputs()
    i["envs"] = [e for e in i["envs"]]
    form = declared(i)
    assert form["env"]["PYTHONUNBUFFERED"] == "1" and form["env"]["PATH"] == "/usr/bin:/bin"
    assert form["command"] == IMAGE_CONFIG["Cmd"] and form["working_dir"] == "/srv"
    assert form["labels"]["cutover.built-from"] == "source"
    # A declared value wins over the image's.
    i["envs"].append("APP_VERSION=2.0.0")
    i["command"] = ["python3", "other"]
    form = declared(i)
    assert form["env"]["APP_VERSION"] == "2.0.0" and form["command"] == ["python3", "other"]


def test_a_declared_entrypoint_drops_the_images_command():
    i = inputs()
    i["entrypoints"] = ["/entry"]
    form = declared(i)
    assert (form["entrypoint"], form["command"]) == (["/entry"], [])


def test_the_images_healthcheck_and_volumes_apply_when_not_declared():
    i = inputs()
    del i["healthcheck"]
    config = {**IMAGE_CONFIG, "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}, "Volumes": {"/data": {}, "/cache": {}}}
    form = declared(i, config)
    assert form["healthcheck"] == {"test": ["CMD-SHELL", "true"], "interval_ns": 5_000_000_000, "timeout_ns": 0, "start_period_ns": 0, "retries": 2}
    # /data is the named volume; /cache, declared by the image only, is an anonymous volume.
    assert [(m["target"], m["source"]) for m in form["mounts"]] == [("/cache", parity.ANONYMOUS), ("/data", "cutover-parity-data")]
    anonymous = {"Type": "volume", "Name": "e" * 64, "Destination": "/cache", "RW": True}
    d = inspect()
    d["Mounts"].append(anonymous)
    assert running(d)["mounts"] == form["mounts"]


def test_a_disabled_healthcheck_is_none():
    d = inspect()
    d["Config"]["Healthcheck"] = {"Test": ["NONE"]}
    assert running(d)["healthcheck"] is None


def test_uploaded_files_compare_by_content():
    i = inputs()
    i["uploads"] = [{"file": "/etc/app.cfg", "content": "a = 1\n"}]
    assert parity.differences(declared(i), running(files={"/etc/app.cfg": b"a = 1\n"}), "c") == []
    found = parity.differences(declared(i), running(files={"/etc/app.cfg": b"a = 2\n"}), "c")
    assert [line.split(": Pulumi")[0] for line in found] == ["c: files[/etc/app.cfg]"]
    assert [line.split(": Pulumi")[0] for line in parity.differences(declared(i), running(files={}), "c")] == ["c: files[/etc/app.cfg]"]


def test_an_input_without_a_rule_is_refused_by_name():
    i = inputs()
    i["logDriver"] = "syslog"
    with pytest.raises(parity.UnmappedInput, match="cutover-parity-blue-1: no parity rule for input\\(s\\) logDriver"):
        declared(i)


def test_provider_only_inputs_are_not_compared():
    i = inputs()
    i.update(wait=False, waitTimeout=5.0, mustRun=True, destroyGraceSeconds=1.0)
    assert parity.differences(declared(i), running(), "c") == []


def test_without_networks_advanced_the_container_is_on_the_default_bridge():
    i = inputs()
    del i["networksAdvanced"]
    assert declared(i)["networks"] == {"bridge": {"aliases": [], "ipv4_address": None, "ipv6_address": None}}


def test_capability_and_security_option_spellings_are_one():
    d = inspect()
    d["HostConfig"].update(CapDrop=["CAP_ALL"], SecurityOpt=["no-new-privileges:true"])
    assert parity.differences(declared(), running(d), "c") == []


@pytest.mark.parametrize("text, ns", [("2s", 2_000_000_000), ("1m30s", 90_000_000_000), ("500ms", 500_000_000), ("", 0), ("1h", 3_600_000_000_000)])
def test_go_durations(text, ns):
    assert parity.go_duration_ns(text) == ns


def test_a_malformed_duration_is_refused():
    with pytest.raises(ValueError):
        parity.go_duration_ns("2 seconds")


def test_one_shot_containers_are_told_apart():
    assert parity.is_one_shot({"attach": True, "mustRun": False})
    assert not parity.is_one_shot(inputs())


def test_volumes_and_networks():
    volume_inputs = {"name": "v", "labels": [{"label": "cutover.stack", "value": "parity"}]}
    assert parity.pulumi_volume(volume_inputs) == parity.docker_volume({"Name": "v", "Driver": "local", "Labels": {"cutover.stack": "parity"}, "Options": None})
    network_inputs = {"name": "n", "driver": "bridge", "labels": [{"label": "cutover.stack", "value": "parity"}]}
    network_inspect = {"Name": "n", "Driver": "bridge", "Labels": {"cutover.stack": "parity"}, "Internal": False, "Attachable": False, "EnableIPv6": False, "Options": {}, "IPAM": {"Driver": "default"}}
    assert parity.pulumi_network(network_inputs) == parity.docker_network(network_inspect)
    found = parity.differences(parity.pulumi_network({**network_inputs, "internal": True}), parity.docker_network(network_inspect), "network n")
    assert found == ["network n: internal: Pulumi declares True, the simulator runs False"]
    with pytest.raises(parity.UnmappedInput):
        parity.pulumi_volume({**volume_inputs, "cluster": {}})
