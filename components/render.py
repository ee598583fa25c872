"""The one place a ``ContainerSpec`` becomes a pulumi-docker ``Container``.

Every container of a stack comes from ``stacks.topology``; this module only translates field by
field, so the Pulumi program holds no second copy of the topology and the parity test can compare
what it declares with what the simulator creates.

Secrets: a ContainerSpec names the secrets it needs (``secret_env``: variable, secret name and a
template such as ``postgresql://app:{secret}@db/app``), never their values. The caller passes the
values as a mapping from secret name to a Pulumi input; each variable is its template with
``{secret}`` replaced by the value, and the environment list that holds them is a secret Output as a
whole, so the values reach neither the state file nor the CLI's diff in clear text.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_docker as docker

from stacks.docker_objects import VolumeSpec
from stacks.ownership import PULUMI, owner_labels
from stacks.topology import SECRET_PLACEHOLDER, ContainerSpec, HealthcheckSpec

# How long `pulumi up` waits for a new container to report healthy before failing the update.
HEALTHY_WAIT_TIMEOUT_S = 120

# A one-shot container (a migration): `up` attaches to it and waits until it exits; with
# must_run=False the provider accepts an exited container (and records its exit code) instead of
# treating it as failed and deleting it. Not auto-removed (rm), or the exit code would be lost and
# the provider would find the container gone right after creating it; `docker logs` still works.
ONE_SHOT_ARGS: dict[str, Any] = {"must_run": False, "attach": True, "logs": False}


def container_args(c: ContainerSpec, secrets: Mapping[str, pulumi.Input[str]], network: pulumi.Input[str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``pulumi_docker.Container`` that reproduce ``c`` exactly.

    ``secrets`` maps each secret name in ``c.secret_env`` to its value; a missing name is a wiring
    bug in the caller and raises ``ValueError``. ``network``: the stack network's ID (an output of
    its resource), else its name from ``c``.

    Every value is written the way the provider reads it back from `docker inspect`, so a
    `pulumi refresh` finds nothing to change (durations in Go's format, capabilities with their
    CAP_ prefix): a difference on any of these inputs would *replace* the container.
    """
    args = {
        "name": c.name,
        "image": c.image,
        "hostname": c.hostname,
        "envs": _envs(c, secrets),
        # In the order the provider reads ports back (by internal port): `ports` is a list, so
        # another order would be a difference on refresh, and ports replace the container.
        "ports": [docker.ContainerPortArgs(internal=p.internal, external=p.external, ip=p.ip, protocol="tcp") for p in sorted(c.ports, key=lambda p: p.internal)],
        # By the network resource's ID when given: the container then depends on the network
        # itself, not on a string that happens to match its name. (The provider never reads this
        # input back for a managed container, so an ID here shows no diff on refresh.)
        "networks_advanced": [docker.ContainerNetworksAdvancedArgs(name=network if network is not None else c.network, aliases=[c.hostname])],
        "healthcheck": _healthcheck(c.healthcheck),
        "restart": c.restart,
        "uploads": [docker.ContainerUploadArgs(file=u.path, content=u.content) for u in c.uploads],
        "volumes": [docker.ContainerVolumeArgs(volume_name=v.volume, container_path=v.container_path) for v in c.volumes],
        # The owner mark is added here, outside the spec, so the fingerprint is the simulator's too.
        "labels": [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(owner_labels(c.labels_with_fingerprint(), PULUMI).items())],
        # The app's own graceful stop (SIGTERM for gunicorn, SIGQUIT for nginx, ...) and how long it
        # may take before Docker kills it.
        "stop_signal": c.stop_signal,
        "stop_timeout": c.stop_timeout_s,
        # Without this the provider removes a container with force (SIGKILL) and in-flight requests
        # die; with it, a retired or replaced container gets its stop signal and its own timeout.
        "destroy_grace_seconds": c.stop_timeout_s,
        # `up` returns only once the container is healthy, so anything that depends on a pool (the
        # switch) never sends traffic to a colour that is still starting. Only with a Docker
        # healthcheck: the provider fails `wait` on a container that has none (an app that declares
        # no health.command), and then only HAProxy's own check stands between it and traffic.
        "wait": c.healthcheck is not None,
        "wait_timeout": HEALTHY_WAIT_TIMEOUT_S,
        # Hardening, as the topology says. Each of these inputs replaces the container when it
        # changes (docs/pulumi.md).
        "read_only": c.read_only,
        "capabilities": docker.ContainerCapabilitiesArgs(adds=docker_capabilities(c.cap_add), drops=docker_capabilities(c.cap_drop)),
        "security_opts": list(c.security_opt),
        "tmpfs": dict(c.tmpfs),
    }
    if c.user:  # otherwise the image's own USER
        args["user"] = c.user
    if c.command:  # otherwise the image's own CMD
        args["command"] = list(c.command)
    return args


def every_container_input() -> list[str]:
    """Every input a pulumi-docker ``Container`` takes (snake_case, as the SDK translates them), not
    only those we set today: an input the program stops setting must not show up as a change either."""
    return sorted(name for name in inspect.signature(docker.ContainerArgs.__init__).parameters if name not in ("self", "__self__"))


def container_options(
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
    retain_on_delete: bool = False,
    create_timeout_s: int | None = None,
    frozen: bool = False,
) -> pulumi.ResourceOptions:
    # Our containers have fixed names and (the proxy) fixed host ports, so the old one must be gone
    # before its replacement can be created; the default create-then-delete would collide.
    # frozen: a container of the colour serving traffic now keeps the inputs it was created with
    # (components/staging.py); Pulumi still creates it from the program's inputs if it is missing.
    return pulumi.ResourceOptions(
        parent=parent,
        depends_on=list(depends_on),
        delete_before_replace=True,
        retain_on_delete=retain_on_delete,
        custom_timeouts=pulumi.CustomTimeouts(create=go_duration(create_timeout_s)) if create_timeout_s is not None else None,
        ignore_changes=every_container_input() if frozen else None,
    )


def stack_network_of(depends_on: Sequence[pulumi.Input[pulumi.Resource]]) -> docker.Network:
    """The stack's network among a container's dependencies: every caller lists it there (a
    container cannot start before its network exists), so the container can name it by ID."""
    networks = [d for d in depends_on if isinstance(d, docker.Network)]
    if len(networks) != 1:  # a wiring bug in the caller
        raise ValueError(f"a container needs exactly one docker.Network among its dependencies, got {len(networks)}")
    return networks[0]


def declare_container(
    c: ContainerSpec,
    parent: pulumi.Resource,
    secrets: Mapping[str, pulumi.Input[str]],
    depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
    image: pulumi.Input[str] | None = None,
    retain_on_delete: bool = False,
    frozen: bool = False,
) -> docker.Container:
    """``c`` as a Docker container; ``image`` (an app version's image ID) replaces its tag, so the
    container runs exactly the artefact that was built, never whatever the tag names later.

    ``retain_on_delete``: `pulumi destroy` (or a replacement) leaves the Docker container alone and
    only forgets it (the database, cutover:keepDataOnDestroy)."""
    # The logical name is the Docker name: one name per container, the same in `docker ps` and in
    # `pulumi stack`.
    args = container_args(c, secrets, network=stack_network_of(depends_on).id)
    if image is not None:
        args["image"] = image
    return docker.Container(c.name, opts=container_options(parent, depends_on, retain_on_delete=retain_on_delete, frozen=frozen), **args)


def declare_one_shot(
    c: ContainerSpec,
    docker_name: str,
    parent: pulumi.Resource,
    secrets: Mapping[str, pulumi.Input[str]],
    depends_on: Sequence[pulumi.Input[pulumi.Resource]] = (),
    image: pulumi.Input[str] | None = None,
    timeout_s: int | None = None,
) -> docker.Container:
    """``c`` as a container that runs once: ``up`` waits for it to exit and records its exit code.

    ``docker_name`` replaces ``c.name`` (and is the logical name), ``image`` (the version's image
    ID) its tag; every other input, the fingerprint label included, is ``c``'s own. ``timeout_s``:
    how long the create (which waits for the run to exit) may take, as Pulumi's custom timeout;
    past it the update fails instead of waiting on (the provider's default is 20 minutes).
    """
    if c.healthcheck is not None or c.restart != "no":  # a wiring bug: a service is not a one-shot
        raise ValueError(f"{c.name} is a long-running container, not a one-shot run")
    args = {**container_args(c, secrets, network=stack_network_of(depends_on).id), **ONE_SHOT_ARGS, "name": docker_name}
    if image is not None:
        args["image"] = image
    return docker.Container(docker_name, opts=container_options(parent, depends_on, create_timeout_s=timeout_s), **args)


def declare_volume(v: VolumeSpec, parent: pulumi.Resource, retain_on_delete: bool = False) -> docker.Volume:
    """``retain_on_delete``: `pulumi destroy` leaves the volume and its data (the database's,
    cutover:keepDataOnDestroy); a later `pulumi up` creates it again under the same name, and Docker
    hands back the existing volume, data and all."""
    return docker.Volume(
        v.name,
        name=v.name,
        labels=volume_labels(v.labels),
        opts=pulumi.ResourceOptions(
            parent=parent,
            # A fixed name: the old volume must go before a new one can take the name.
            delete_before_replace=True,
            retain_on_delete=retain_on_delete,
            # A volume's labels are replace-on-change, and replacing a volume deletes its data: a
            # label (the owner mark added to a stack made before it existed) must never do that.
            ignore_changes=["labels"],
        ),
    )


def volume_labels(labels: Sequence[tuple[str, str]]) -> list[docker.VolumeLabelArgs]:
    return [docker.VolumeLabelArgs(label=k, value=val) for k, val in sorted(owner_labels(labels, PULUMI).items())]


def network_labels(labels: Sequence[tuple[str, str]]) -> list[docker.NetworkLabelArgs]:
    return [docker.NetworkLabelArgs(label=k, value=val) for k, val in sorted(owner_labels(labels, PULUMI).items())]


def docker_capabilities(names: Sequence[str]) -> list[str]:
    """Capability names as Docker keeps them (and the provider reads them back): NET_BIND_SERVICE is
    stored as CAP_NET_BIND_SERVICE, ALL stays ALL. Written otherwise, every refresh would find a
    difference on ``capabilities``, which replaces the container."""
    return [name if name == "ALL" or name.startswith("CAP_") else f"CAP_{name}" for name in (n.upper() for n in names)]


def go_duration(seconds: float) -> str:
    """``seconds`` the way Go's time.Duration.String() writes it, which is how the provider reads a
    healthcheck's durations back from Docker (nanoseconds): 2 -> "2s", 60 -> "1m0s", 3600 ->
    "1h0m0s", 0.5 -> "500ms". "60s" would parse to the same duration but read back as "1m0s": a
    permanent diff after every refresh, and a healthcheck change replaces the container."""
    ns = round(seconds * 1_000_000_000)
    if ns < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return _trimmed(ns, size) + unit
    hours, rest = divmod(ns, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    text = _trimmed(rest, 1_000_000_000) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _trimmed(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(fraction).rjust(digits, '0').rstrip('0')}"


def _envs(c: ContainerSpec, secrets: Mapping[str, pulumi.Input[str]]) -> pulumi.Input[list[str]]:
    plain = [f"{key}={value}" for key, value in c.env]
    if not c.secret_env:
        return plain
    missing = sorted({name for _, name, _ in c.secret_env if name not in secrets})
    if missing:
        raise ValueError(f"{c.name} needs the secret(s) {', '.join(missing)}, which were not passed to it")
    filled = [_secret_entry(variable, template, secrets[name]) for variable, name, template in c.secret_env]
    # Output.secret on the whole list: it stays secret even if a caller passed a plain string.
    return pulumi.Output.secret(pulumi.Output.all(*plain, *filled))


def _secret_entry(variable: str, template: str, secret: pulumi.Input[str]) -> pulumi.Output[str]:
    """``VARIABLE=<template with the secret in place of every {secret}>``, built inside Pulumi.

    The same substitution as ``stacks.topology.secret_value`` (which the simulator applies to a
    plain string), done with ``Output.concat`` so the secret never leaves an Output here.
    """
    parts = template.split(SECRET_PLACEHOLDER)
    if len(parts) < 2:  # the topology never writes one without it: a wiring bug
        raise ValueError(f"{variable}: a secret template must contain {SECRET_PLACEHOLDER}, got {template!r}")
    pieces: list[pulumi.Input[str]] = [parts[0]]
    for part in parts[1:]:
        pieces += [secret, part]
    return pulumi.Output.concat(variable, "=", *pieces)


def _healthcheck(h: HealthcheckSpec | None) -> docker.ContainerHealthcheckArgs | None:
    if h is None:
        return None
    return docker.ContainerHealthcheckArgs(
        tests=list(h.test),
        interval=go_duration(h.interval_s),
        timeout=go_duration(h.timeout_s),
        retries=h.retries,
        start_period=go_duration(h.start_period_s),
    )
