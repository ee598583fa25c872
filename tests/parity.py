"""Parity of what really runs: one normal form for a container (and a volume, a network), reached
from two directions, so the two executors can be compared field by field.

- from ``docker inspect`` of what the simulator created (``docker_container``, ``docker_volume``,
  ``docker_network``);
- from the inputs the Pulumi program registers for the same stack under Pulumi's mocks
  (``pulumi_container``, ``pulumi_volume``, ``pulumi_network``), translated the way pulumi-docker
  hands them to the engine (read from the Terraform provider it bridges, kreuzwerker/docker v4.5.0
  for pulumi-docker 5.1 and later: create with the container's config, disconnect it from "bridge",
  connect each ``networks_advanced`` entry with its aliases; StopTimeout only when set), overlaid
  on the image's own configuration the way the engine merges them (env, command, entrypoint, user,
  working dir, labels, healthcheck, stop signal, declared volumes). ``docker inspect`` shows the
  merged result, so both sides describe what the container really runs with.

Pure: no engine, no Pulumi runtime. The caller fetches inspect dicts, image configs and secret
values (tests/integration/test_runtime_parity.py); ``differences`` names container and field.

Fields of the normal form: image (ID), env, command, entrypoint, working_dir, user, hostname,
healthcheck, stop_signal, stop_timeout_s, restart, auto_remove, labels, mounts, tmpfs, ports,
network_mode, networks (with aliases and fixed addresses), read_only, cap_add, cap_drop,
security_opt, privileged, init, files (the content of uploaded files). A Pulumi input this module
has no rule for makes the normaliser raise ``UnmappedInput``: a new input is either mapped here or
listed in ``PROVIDER_ONLY_INPUTS`` with the reason it has no counterpart in ``docker inspect``.

Documented, expected differences (the only ones; everything else must be equal):
- ``EXECUTOR_LABELS``: labels whose *value* says which executor made the object (presence is still
  compared on both sides).
- One-shot containers (migration runs: ``attach``/``mustRun=False``): the Pulumi program keeps each
  exited run (named ``<topology name>-<version>``) to read its exit code; the simulator removes its
  run. ``is_one_shot`` tells them apart: they are not expected among the running stack's
  containers, and are compared as the simulator's driver creates them, under the topology's name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

# Docker's own defaults when a container does not set them (docker stop without -t, no STOPSIGNAL).
DEFAULT_STOP_TIMEOUT_S = 10
DEFAULT_STOP_SIGNAL = "SIGTERM"
SECRET = "<secret>"
PER_EXECUTOR = "<per executor>"
ANONYMOUS = "<anonymous>"
CONTAINER_ID = "<container id>"

# Label -> why its value legitimately differs between the executors.
EXECUTOR_LABELS: dict[str, str] = {
    "cutover.managed-by": "the owner label: each executor stamps its own name, so neither adopts the other's stack",
    "cutover.fingerprint": (
        "each executor's own change digest over the ContainerSpec: the simulator's spec holds the app's image ID, "
        "the Pulumi program's the version's tag (the ID is a provider output it cannot hash at program time)"
    ),
}

# pulumi-docker Container inputs with no counterpart in the container's configuration: they say
# how the provider acts around create/delete, not what the engine runs. Input -> why.
PROVIDER_ONLY_INPUTS: dict[str, str] = {
    "wait": "the provider waits for healthy after create",
    "waitTimeout": "how long it waits",
    "destroyGraceSeconds": "the provider's stop timeout on delete (docker inspect has StopTimeout, compared)",
    "mustRun": "whether the provider accepts an exited container",
    "attach": "the provider attaches until a one-shot exits",
    "logs": "the provider keeps a one-shot's logs in its state",
    "start": "whether the provider starts the container",
    "removeVolumes": "whether the provider removes anonymous volumes on delete",
    "containerReadRefreshTimeoutMilliseconds": "the provider's read timeout",
}


class UnmappedInput(ValueError):
    """A Pulumi input this module cannot compare: map it here or list it as provider-only."""


@dataclass(frozen=True)
class ImageFacts:
    """What an image contributes to a container: its ID and its ``Config`` from ``docker image inspect``."""

    id: str
    config: Mapping[str, Any]


# -- small pure helpers ------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def go_duration_ns(text: str | None) -> int:
    """A Go duration string (pulumi-docker's healthcheck fields: "2s", "1m30s", "500ms") in ns."""
    if not text:
        return 0
    parts = _DURATION.findall(text)
    if "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return round(sum(float(number) * _UNIT_NS[unit] for number, unit in parts))


def _env_dict(entries: Iterable[str]) -> dict[str, str]:
    return dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in entries)


def _redact(value: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            value = value.replace(secret, SECRET)
    return value


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {key: PER_EXECUTOR if key in EXECUTOR_LABELS else value for key, value in (labels or {}).items()}


def _capability(name: str) -> str:
    name = name.upper()
    return name[4:] if name.startswith("CAP_") else name


def _security_opt(option: str) -> str:
    # "no-new-privileges" and "no-new-privileges:true" mean the same to the engine.
    return "no-new-privileges:true" if option in ("no-new-privileges", "no-new-privileges=true") else option


def _tmpfs(entries: Mapping[str, str] | None) -> dict[str, tuple[str, ...]]:
    return {path: tuple(sorted(filter(None, (options or "").split(",")))) for path, options in (entries or {}).items()}


def _healthcheck(test, interval_ns, timeout_ns, start_period_ns, retries) -> dict | None:
    if not test or list(test) == ["NONE"]:
        return None
    return {
        "test": list(test),
        "interval_ns": int(interval_ns or 0),
        "timeout_ns": int(timeout_ns or 0),
        "start_period_ns": int(start_period_ns or 0),
        "retries": int(retries or 0),
    }


def _merge_healthcheck(declared: dict | None, image: Mapping[str, Any] | None) -> dict | None:
    """The engine's merge: no healthcheck declared takes the image's; a declared one takes the
    image's value for each field it leaves at zero."""
    image_hc = _healthcheck(
        (image or {}).get("Test"), (image or {}).get("Interval"), (image or {}).get("Timeout"),
        (image or {}).get("StartPeriod"), (image or {}).get("Retries"),
    )
    if declared is None:
        return image_hc
    if image_hc is None:
        return declared
    return {key: value or image_hc[key] for key, value in declared.items()}


def _file_digest(content: str | bytes) -> str:
    data = content.encode() if isinstance(content, str) else content
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _short_id(container_id: str) -> str:
    return container_id.split(":", 1)[-1][:12]


# -- from docker inspect -----------------------------------------------------------------------


def docker_container(inspect: Mapping[str, Any], files: Mapping[str, str | bytes] | None = None, secrets: Iterable[str] = ()) -> dict:
    """The normal form of a container from ``docker inspect`` (the engine's merged view).

    ``files``: the content of files read out of the container, by path (the paths either side
    uploads); ``secrets``: secret values to show as ``<secret>`` wherever they appear in env.
    """
    secrets = tuple(secrets)
    config = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    short_id = _short_id(inspect.get("Id", ""))
    hc = config.get("Healthcheck") or {}
    mounts = []
    for mount in inspect.get("Mounts") or []:
        source = mount.get("Name") if mount.get("Type") == "volume" else mount.get("Source")
        if mount.get("Type") == "volume" and re.fullmatch(r"[0-9a-f]{64}", source or ""):
            source = ANONYMOUS
        mounts.append({"type": mount.get("Type"), "source": source, "target": mount.get("Destination"), "read_only": not mount.get("RW", True)})
    ports = []
    for key, bindings in (host.get("PortBindings") or {}).items():
        container_port, _, protocol = key.partition("/")
        for binding in bindings or []:
            ports.append({
                "ip": binding.get("HostIp") or "0.0.0.0",
                "host_port": int(binding["HostPort"]) if binding.get("HostPort") else None,
                "container_port": int(container_port),
                "protocol": protocol or "tcp",
            })
    networks = {}
    for name, endpoint in ((inspect.get("NetworkSettings") or {}).get("Networks") or {}).items():
        ipam = endpoint.get("IPAMConfig") or {}
        networks[name] = {
            # The engine adds the container's short ID as an alias on user-defined networks.
            "aliases": sorted(a for a in endpoint.get("Aliases") or [] if a != short_id),
            "ipv4_address": ipam.get("IPv4Address") or None,
            "ipv6_address": ipam.get("IPv6Address") or None,
        }
    restart = host.get("RestartPolicy") or {}
    return {
        "name": (inspect.get("Name") or "").lstrip("/"),
        "image": inspect.get("Image"),
        "env": {key: _redact(value, secrets) for key, value in _env_dict(config.get("Env") or []).items()},
        "command": list(config.get("Cmd") or []),
        "entrypoint": list(config.get("Entrypoint") or []),
        "working_dir": config.get("WorkingDir") or "",
        "user": config.get("User") or "",
        "hostname": CONTAINER_ID if config.get("Hostname") == short_id else config.get("Hostname"),
        "healthcheck": _healthcheck(hc.get("Test"), hc.get("Interval"), hc.get("Timeout"), hc.get("StartPeriod"), hc.get("Retries")),
        "stop_signal": config.get("StopSignal") or DEFAULT_STOP_SIGNAL,
        "stop_timeout_s": config.get("StopTimeout") if config.get("StopTimeout") is not None else DEFAULT_STOP_TIMEOUT_S,
        "restart": {"name": restart.get("Name") or "no", "max_retries": int(restart.get("MaximumRetryCount") or 0)},
        "auto_remove": bool(host.get("AutoRemove")),
        "labels": _labels(config.get("Labels")),
        "mounts": sorted(mounts, key=lambda m: (m["target"], m["type"])),
        "tmpfs": _tmpfs(host.get("Tmpfs")),
        "ports": sorted(ports, key=lambda p: (p["container_port"], p["protocol"], p["ip"])),
        "network_mode": host.get("NetworkMode") or "default",
        "networks": networks,
        "read_only": bool(host.get("ReadonlyRootfs")),
        "cap_add": sorted(_capability(c) for c in host.get("CapAdd") or []),
        "cap_drop": sorted(_capability(c) for c in host.get("CapDrop") or []),
        "security_opt": sorted(_security_opt(o) for o in host.get("SecurityOpt") or []),
        "privileged": bool(host.get("Privileged")),
        "init": bool(host.get("Init")),
        "files": {path: _file_digest(content) for path, content in (files or {}).items()},
    }


def docker_volume(inspect: Mapping[str, Any]) -> dict:
    return {
        "name": inspect.get("Name"),
        "driver": inspect.get("Driver") or "local",
        "labels": _labels(inspect.get("Labels")),
        "options": dict(inspect.get("Options") or {}),
    }


def docker_network(inspect: Mapping[str, Any]) -> dict:
    ipam = inspect.get("IPAM") or {}
    return {
        "name": inspect.get("Name"),
        "driver": inspect.get("Driver"),
        "labels": _labels(inspect.get("Labels")),
        "internal": bool(inspect.get("Internal")),
        "attachable": bool(inspect.get("Attachable")),
        "ipv6": bool(inspect.get("EnableIPv6")),
        "options": dict(inspect.get("Options") or {}),
        "ipam_driver": ipam.get("Driver") or "default",
    }


# -- from the Pulumi program's registered inputs -----------------------------------------------

_CONTAINER_INPUTS = {
    "name", "image", "hostname", "envs", "command", "entrypoints", "workingDir", "user", "healthcheck",
    "stopSignal", "stopTimeout", "restart", "maxRetryCount", "rm", "labels", "volumes", "mounts", "tmpfs",
    "ports", "networksAdvanced", "networkMode", "readOnly", "capabilities", "securityOpts", "privileged",
    "init", "uploads",
}
_VOLUME_INPUTS = {"name", "driver", "labels", "driverOpts"}
_NETWORK_INPUTS = {"name", "driver", "labels", "internal", "attachable", "ipv6", "options", "ipamDriver"}


def _check_inputs(kind: str, name: str, inputs: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(inputs) - known - (set(PROVIDER_ONLY_INPUTS) if kind == "container" else set()))
    if unknown:
        raise UnmappedInput(
            f"{kind} {name}: no parity rule for input(s) {', '.join(unknown)}; map them in tests/parity.py "
            "or, if they have no counterpart in docker inspect, list them in PROVIDER_ONLY_INPUTS with the reason."
        )


def _pulumi_labels(items) -> dict[str, str]:
    # pulumi-docker takes labels as a list of {label, value}.
    return {item["label"]: item["value"] for item in items or []}


def is_one_shot(inputs: Mapping[str, Any]) -> bool:
    """A container the Pulumi program runs once (a migration) rather than keeps running."""
    return bool(inputs.get("attach")) or inputs.get("mustRun") is False


def pulumi_container(
    inputs: Mapping[str, Any],
    image: Callable[[str], ImageFacts],
    secrets: Iterable[str] = (),
    network_names: Mapping[str, str] | None = None,
) -> dict:
    """The normal form of a container from the inputs the Pulumi program registered for it.

    ``inputs``: camelCase, as the mock engine received them, secret wrappers already removed;
    ``image(ref)``: the facts of the image the ``image`` input names (a provider output or a tag),
    as the engine that runs the stack knows it; ``secrets``: values shown as ``<secret>``;
    ``network_names``: network IDs (a container names its network by the Network resource's ID) to
    the names the engine reports.
    """
    name = inputs.get("name", "?")
    _check_inputs("container", name, inputs, _CONTAINER_INPUTS)
    secrets = tuple(secrets)
    facts = image(inputs["image"])
    img = facts.config or {}

    # env: the image's, overridden by the declared (the engine's merge).
    env = _env_dict(img.get("Env") or [])
    env.update(_env_dict(inputs.get("envs") or []))
    # command/entrypoint: a declared entrypoint drops the image's Cmd unless a command is declared.
    entrypoint = list(inputs.get("entrypoints") or [])
    command = list(inputs.get("command") or [])
    if not entrypoint:
        entrypoint = list(img.get("Entrypoint") or [])
        command = command or list(img.get("Cmd") or [])

    h = inputs.get("healthcheck")
    declared_hc = None
    if h:
        declared_hc = _healthcheck(
            h.get("tests"), go_duration_ns(h.get("interval")), go_duration_ns(h.get("timeout")),
            go_duration_ns(h.get("startPeriod")), h.get("retries"),
        ) or {"test": [], "interval_ns": 0, "timeout_ns": 0, "start_period_ns": 0, "retries": 0}

    mounts = []
    for v in inputs.get("volumes") or []:
        if v.get("volumeName"):
            mounts.append({"type": "volume", "source": v["volumeName"], "target": v["containerPath"], "read_only": bool(v.get("readOnly"))})
        elif v.get("hostPath"):
            mounts.append({"type": "bind", "source": v["hostPath"], "target": v["containerPath"], "read_only": bool(v.get("readOnly"))})
        else:  # a volume with no name: the engine makes an anonymous one
            mounts.append({"type": "volume", "source": ANONYMOUS, "target": v["containerPath"], "read_only": bool(v.get("readOnly"))})
    for m in inputs.get("mounts") or []:
        mounts.append({"type": m.get("type"), "source": m.get("source") or (ANONYMOUS if m.get("type") == "volume" else None), "target": m["target"], "read_only": bool(m.get("readOnly"))})
    tmpfs = _tmpfs(inputs.get("tmpfs"))
    covered = {m["target"] for m in mounts} | set(tmpfs)
    # A VOLUME the image declares and nothing mounts over becomes an anonymous volume.
    for path in sorted(img.get("Volumes") or {}):
        if path not in covered:
            mounts.append({"type": "volume", "source": ANONYMOUS, "target": path, "read_only": False})

    ports = [
        {
            "ip": p.get("ip") or "0.0.0.0",  # the provider's default
            "host_port": int(p["external"]) if p.get("external") else None,
            "container_port": int(p["internal"]),
            "protocol": p.get("protocol") or "tcp",
        }
        for p in inputs.get("ports") or []
    ]
    advanced = inputs.get("networksAdvanced") or []
    network_mode = inputs.get("networkMode") or "default"
    if advanced:
        # The provider creates the container, disconnects it from "bridge" and connects these.
        networks = {
            (network_names or {}).get(n["name"], n["name"]): {"aliases": sorted(n.get("aliases") or []), "ipv4_address": n.get("ipv4Address") or None, "ipv6_address": n.get("ipv6Address") or None}
            for n in advanced
        }
    elif network_mode in ("default", "bridge"):
        networks = {"bridge": {"aliases": [], "ipv4_address": None, "ipv6_address": None}}
    else:
        networks = {}
    caps = inputs.get("capabilities") or {}
    files = {}
    for u in inputs.get("uploads") or []:
        if u.get("source"):
            raise UnmappedInput(f"container {name}: an upload from a local file ({u['source']}) cannot be compared here")
        content = u.get("content")
        if content is None and u.get("contentBase64") is not None:
            import base64

            content = base64.b64decode(u["contentBase64"])
        files[u["file"]] = _file_digest(content or "")

    return {
        "name": name,
        "image": facts.id,
        "env": {key: _redact(value, secrets) for key, value in env.items()},
        "command": command,
        "entrypoint": entrypoint,
        "working_dir": inputs.get("workingDir") or img.get("WorkingDir") or "",
        "user": inputs.get("user") or img.get("User") or "",
        "hostname": inputs.get("hostname") or CONTAINER_ID,
        "healthcheck": _merge_healthcheck(declared_hc, img.get("Healthcheck")),
        "stop_signal": inputs.get("stopSignal") or img.get("StopSignal") or DEFAULT_STOP_SIGNAL,
        # The provider sends StopTimeout only when it is set (non-zero).
        "stop_timeout_s": int(inputs["stopTimeout"]) if inputs.get("stopTimeout") else DEFAULT_STOP_TIMEOUT_S,
        "restart": {"name": inputs.get("restart") or "no", "max_retries": int(inputs.get("maxRetryCount") or 0)},
        "auto_remove": bool(inputs.get("rm")),
        "labels": _labels({**(img.get("Labels") or {}), **_pulumi_labels(inputs.get("labels"))}),
        "mounts": sorted(mounts, key=lambda m: (m["target"], m["type"])),
        "tmpfs": tmpfs,
        "ports": sorted(ports, key=lambda p: (p["container_port"], p["protocol"], p["ip"])),
        "network_mode": network_mode,
        "networks": networks,
        "read_only": bool(inputs.get("readOnly")),
        "cap_add": sorted(_capability(c) for c in caps.get("adds") or []),
        "cap_drop": sorted(_capability(c) for c in caps.get("drops") or []),
        "security_opt": sorted(_security_opt(o) for o in inputs.get("securityOpts") or []),
        "privileged": bool(inputs.get("privileged")),
        "init": bool(inputs.get("init")),
        "files": files,
    }


def pulumi_volume(inputs: Mapping[str, Any]) -> dict:
    _check_inputs("volume", inputs.get("name", "?"), inputs, _VOLUME_INPUTS)
    return {
        "name": inputs.get("name"),
        "driver": inputs.get("driver") or "local",
        "labels": _labels(_pulumi_labels(inputs.get("labels"))),
        "options": dict(inputs.get("driverOpts") or {}),
    }


def pulumi_network(inputs: Mapping[str, Any]) -> dict:
    _check_inputs("network", inputs.get("name", "?"), inputs, _NETWORK_INPUTS)
    return {
        "name": inputs.get("name"),
        "driver": inputs.get("driver") or "bridge",
        "labels": _labels(_pulumi_labels(inputs.get("labels"))),
        "internal": bool(inputs.get("internal")),
        "attachable": bool(inputs.get("attachable")),
        "ipv6": bool(inputs.get("ipv6")),
        "options": dict(inputs.get("options") or {}),
        "ipam_driver": inputs.get("ipamDriver") or "default",
    }


# -- comparing ---------------------------------------------------------------------------------


def differences(declared: Mapping[str, Any], running: Mapping[str, Any], what: str) -> list[str]:
    """One line per field (per key, for env, labels, networks, tmpfs and files) that differs:
    ``<what>: <field>: Pulumi declares X, the simulator runs Y``."""
    lines = []
    for field in sorted(set(declared) | set(running)):
        want, have = declared.get(field), running.get(field)
        if want == have:
            continue
        if isinstance(want, Mapping) and isinstance(have, Mapping) and field in ("env", "labels", "networks", "tmpfs", "files"):
            for key in sorted(set(want) | set(have)):
                if want.get(key, "<absent>") != have.get(key, "<absent>"):
                    lines.append(f"{what}: {field}[{key}]: Pulumi declares {want.get(key, '<absent>')!r}, the simulator runs {have.get(key, '<absent>')!r}")
        else:
            lines.append(f"{what}: {field}: Pulumi declares {want!r}, the simulator runs {have!r}")
    return lines
