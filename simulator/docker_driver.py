"""The thin Docker edge: observe a stack, and turn planned actions into engine calls."""

from __future__ import annotations

import io
import os
import tarfile
import time
from contextlib import nullcontext
from typing import Callable

import docker
import docker.errors
import requests.exceptions

from simulator import progress
from simulator.errors import CutoverError
from simulator.planner import Action, Observed, ObservedContainer
from stacks.docker_objects import stack_labels, stack_network
from stacks.ownership import MANAGED_BY, SIMULATOR, owner_labels, refusal
from stacks.spec import PROJECT, StackSpec
from stacks.topology import NO_NEW_PRIVILEGES, SECRET_PLACEHOLDER, ContainerSpec, network_name, secret_value, stack_containers

SECOND_NS = 1_000_000_000


def connect(docker_host: str | None = None) -> docker.DockerClient:
    """The engine a stack names (its ``docker:host``: unix, tcp or ssh), or, without one, the local
    engine (DOCKER_HOST or the default socket); else one clear sentence why not."""
    where = docker_host or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    timeout = engine_timeout()
    try:
        if docker_host:
            # ssh:// through the system's ssh client (its config, keys and known hosts), as the docker CLI does.
            client = docker.DockerClient(base_url=docker_host, timeout=timeout, use_ssh_client=docker_host.startswith("ssh://"))
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        hint = "start one, e.g. with 'make engine'" if where.startswith("unix://") else "check the stack's docker:host and that the engine is reachable from here"
        raise CutoverError(f"no Docker engine answers at {where} ({exc.__class__.__name__}); {hint}.") from None


def engine_timeout() -> float:
    """How long one engine call may go unanswered: CUTOVER_ENGINE_TIMEOUT_S, default 120 s (an
    image build or a graceful stop is one call)."""
    text = os.environ.get("CUTOVER_ENGINE_TIMEOUT_S") or "120"
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not value > 0:
        raise CutoverError(f"CUTOVER_ENGINE_TIMEOUT_S={text!r} is not a number of seconds above 0.")
    return value


class DockerDriver:
    def __init__(self, client: docker.DockerClient, spec: StackSpec, secrets: Callable[[str], str]) -> None:
        self.client = client
        self.spec = spec
        self._secret = secrets

    # -- observing ----------------------------------------------------------------------------

    def stack_containers(self) -> list:
        return self.client.containers.list(all=True, filters={"label": [f"cutover.project={PROJECT}", f"cutover.stack={self.spec.stack}"]})

    def refuse_foreign_stack(self) -> None:
        """Before a changing command touches anything: a stack whose containers Pulumi manages is
        refused with one sentence (stacks/ownership.py), so neither state goes stale."""
        message = refusal(self.spec.stack, {c.name: (c.labels or {}).get(MANAGED_BY) for c in self.stack_containers()}, SIMULATOR)
        if message:
            raise CutoverError(message)

    def observe(self) -> Observed:
        containers = observed_containers(self.stack_containers())
        network_exists = bool(self._own_networks())
        volume_names = frozenset(v.name for v in self.client.volumes.list(filters={"label": f"cutover.stack={self.spec.stack}"}))
        return Observed(containers, network_exists, volume_names)

    def container(self, name: str):
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            raise CutoverError(f"container {name} does not exist; run 'cutover up --stack {self.spec.stack}' first.") from None

    def secret_in_use(self, secret: str) -> str | None:
        """The value a running container of the stack was given for ``secret``, if any."""
        wanted = {c.name: {var: template for var, name, template in c.secret_env if name == secret} for c in stack_containers(self.spec)}
        for container in self.stack_containers():
            templates = wanted.get(container.name, {})
            for entry in container.attrs["Config"].get("Env") or []:
                var, _, value = entry.partition("=")
                if var in templates:
                    # The template around the secret (a URL, say) is known: take out what is not it.
                    prefix, _, suffix = templates[var].partition(SECRET_PLACEHOLDER)
                    if value.startswith(prefix) and value.endswith(suffix) and len(value) > len(prefix) + len(suffix):
                        return value[len(prefix) : len(value) - len(suffix)]
        return None

    def health(self, name: str) -> str:
        """Docker's health status for a container: starting, healthy, unhealthy, stopped or missing.

        A running container whose app declares no Docker health check counts as healthy here; the
        proxy's HTTP check, which every app has, is the gate that decides whether it gets traffic.
        """
        try:
            state = self.client.api.inspect_container(name)["State"]
        except docker.errors.NotFound:
            return "missing"
        return health_of(state)

    # -- acting -------------------------------------------------------------------------------

    def apply(self, action: Action) -> None:
        if action.kind == "create-network":
            network = stack_network(self.spec)
            self.client.networks.create(network.name, driver=network.driver, labels=owner_labels(network.labels, SIMULATOR))
        elif action.kind == "create-volume":
            self.client.volumes.create(action.target, labels=owner_labels(stack_labels(self.spec), SIMULATOR))
        elif action.kind == "create":
            self.create(action.container)
        elif action.kind == "replace":
            self.remove(action.target)
            self.create(action.container)
        elif action.kind == "start":
            self.client.containers.get(action.target).start()
        elif action.kind == "remove":
            self.remove(action.target)
        else:  # a planner bug, not a user error
            raise ValueError(f"unknown action kind {action.kind!r}")

    def create(self, spec: ContainerSpec, start: bool = True):
        """Create, upload files into, and start one container exactly as the spec describes it."""
        api = self.client.api
        if spec.user and spec.volumes:
            self._adopt_volumes(spec)
        host_config = api.create_host_config(
            port_bindings={f"{p.internal}/tcp": (p.ip, p.external) for p in spec.ports},
            restart_policy={"Name": spec.restart},
            binds={v.volume: {"bind": v.container_path, "mode": "rw"} for v in spec.volumes},
            read_only=spec.read_only,
            cap_add=list(spec.cap_add) or None,
            cap_drop=list(spec.cap_drop) or None,
            security_opt=list(spec.security_opt) or None,
            tmpfs=dict(spec.tmpfs) or None,
        )
        networking = api.create_networking_config({spec.network: api.create_endpoint_config(aliases=[spec.hostname])})
        health = spec.healthcheck
        created = api.create_container(
            image=spec.image,
            name=spec.name,
            hostname=spec.hostname,
            user=spec.user or "",
            environment={**dict(spec.env), **{var: secret_value(template, self._secret(name)) for var, name, template in spec.secret_env}},
            command=list(spec.command) or None,
            # The owner mark outside the spec: the fingerprint is the same whichever executor made it.
            labels=owner_labels(spec.labels_with_fingerprint(), SIMULATOR),
            ports=[p.internal for p in spec.ports],
            host_config=host_config,
            networking_config=networking,
            stop_signal=spec.stop_signal,
            stop_timeout=spec.stop_timeout_s,
            healthcheck={
                "test": list(health.test),
                "interval": health.interval_s * SECOND_NS,
                "timeout": health.timeout_s * SECOND_NS,
                "retries": health.retries,
                "start_period": health.start_period_s * SECOND_NS,
            }
            if health
            else None,
        )
        container = self.client.containers.get(created["Id"])
        for upload in spec.uploads:
            container.put_archive(os.path.dirname(upload.path), _tar_one_file(os.path.basename(upload.path), upload.content))
        if start:
            container.start()
        return container

    def _adopt_volumes(self, spec: ContainerSpec) -> None:
        """Hand the volumes of a container that runs as ``spec.user`` to that user, once.

        A volume made by an older image that ran as another user (root for the proxy, another
        uid for the database) is not writable by the hardened one, which would stop at once. A
        one-shot container of the same image, as root with only the capabilities chown needs and
        no network, chowns what is not the user's yet; for a volume already owned it only looks.
        It runs before the container is created, so after the old one has stopped.
        """
        paths = " ".join(f"'{v.container_path}'" for v in spec.volumes)
        script = f'for d in {paths}; do [ "$(stat -c %U "$d")" = "{spec.user}" ] || chown -R "{spec.user}:" "$d"; done'
        container = self.client.containers.create(
            spec.image, entrypoint=["sh", "-c", script], user="0:0", network_mode="none",
            volumes={v.volume: {"bind": v.container_path, "mode": "rw"} for v in spec.volumes},
            cap_drop=["ALL"], cap_add=["CHOWN", "DAC_READ_SEARCH"], security_opt=list(NO_NEW_PRIVILEGES),
            labels=owner_labels({**dict(stack_labels(self.spec)), "cutover.role": "adopt"}, SIMULATOR),
        )
        try:
            container.start()
            code = container.wait(timeout=120)["StatusCode"]
            if code != 0:
                output = container.logs().decode(errors="replace").strip().splitlines()
                raise CutoverError(
                    f"could not give the volumes of {spec.name} to its user {spec.user} (exit {code}: {output[-1] if output else 'no output'})."
                )
        finally:
            container.remove(force=True)

    def run_once(self, spec: ContainerSpec, timeout_s: float | None = None) -> tuple[int, str, str]:
        """Run a one-shot container to completion; return (exit code, stdout, stderr). Always removed.

        ``timeout_s`` (default: the stack's cutover:migrationTimeoutSeconds, the bound Pulumi puts
        on the same run): past it the run is killed and removed, and the command fails with one
        sentence instead of waiting on.
        """
        timeout_s = self.spec.migration_timeout_s if timeout_s is None else timeout_s
        self.remove(spec.name)
        container = self.create(spec, start=False)
        try:
            container.start()
            try:
                exit_code = container.wait(timeout=timeout_s)["StatusCode"]
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                raise CutoverError(
                    f"{spec.name} ({spec.version or spec.role}) did not finish within {timeout_s:g} s (cutover:migrationTimeoutSeconds) "
                    f"and was stopped; see what it was doing in the app's own logs, raise the timeout if it needs longer."
                ) from None
            stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
            stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
            return exit_code, stdout, stderr
        finally:
            container.remove(force=True)

    def exec_in(self, name: str, command: tuple[str, ...], timeout_s: float) -> tuple[int, str, str]:
        """Run ``command`` in the running container ``name``; return (exit code, stdout, stderr).
        Bounded like ``run_once``: past ``timeout_s`` the command fails with one sentence."""
        import concurrent.futures

        container = self.container(name)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        try:
            done = pool.submit(container.exec_run, list(command), demux=True)
            try:
                result = done.result(timeout=timeout_s)
            except concurrent.futures.TimeoutError:
                raise CutoverError(f"{' '.join(command)} in {name} did not finish within {timeout_s:g} s (cutover:migrationTimeoutSeconds).") from None
        finally:
            pool.shutdown(wait=False)
        out, err = result.output or (None, None)
        return result.exit_code, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")

    def files_in_image(self, image: str, directory: str, suffix: str) -> dict[str, str]:
        """The text of every ``*suffix`` file directly in ``directory`` of ``image``, read without
        running anything in it (a created, never started container, then removed)."""
        container = self.client.containers.create(
            image, command=["true"], labels=owner_labels({"cutover.project": PROJECT, "cutover.stack": self.spec.stack, "cutover.role": "inspect"}, SIMULATOR)
        )
        try:
            try:
                stream, _ = container.get_archive(directory.rstrip("/") + "/.")
            except docker.errors.NotFound:
                raise CutoverError(f"image {image} has no directory {directory} (the app's migrations.sql_dir).") from None
            archive = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
            files = {}
            for member in archive.getmembers():
                name = member.name.removeprefix("./")
                if member.isfile() and "/" not in name and name.endswith(suffix):
                    files[name] = archive.extractfile(member).read().decode(errors="replace")
            return files
        finally:
            container.remove(force=True)

    def remove(self, name: str) -> None:
        """Stop gracefully (SIGTERM, the container's own stop timeout) and remove."""
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return
        if container.status == "running":
            container.stop(timeout=int(container.attrs["Config"].get("StopTimeout") or 10))
        container.remove(force=True)

    def _own_networks(self) -> list:
        # The engine's name filter matches a part of the name: stack "lat" would also find the
        # network of stack "latci" (and `down` would remove it under that stack's containers).
        wanted = network_name(self.spec)
        return [n for n in self.client.networks.list(names=[wanted]) if n.name == wanted]

    def remove_network_and_volumes(self, with_volumes: bool) -> list[str]:
        removed = []
        for network in self._own_networks():
            network.remove()
            removed.append(f"network {network.name}")
        if with_volumes:
            for volume in self.client.volumes.list(filters={"label": f"cutover.stack={self.spec.stack}"}):
                if (volume.attrs.get("Labels") or {}).get("cutover.role") == "ledger":
                    continue  # the audit ledger outlives the stack: only 'down --volumes --ledger' removes it
                volume.remove(force=True)
                removed.append(f"volume {volume.name}")
        return removed

    def remove_volume(self, name: str) -> None:
        try:
            self.client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def wait_healthy(self, names: list[str], deadline_s: float) -> None:
        """Block until every named container reports healthy, or fail naming the ones that did not."""
        wait_until(
            lambda: all(self.health(n) == "healthy" for n in names),
            deadline_s,
            lambda: "containers not healthy after {:.0f}s: ".format(deadline_s)
            + ", ".join(f"{n} ({self.health(n)})" for n in names if self.health(n) != "healthy"),
            what=f"waiting for {', '.join(names)} to be healthy",
        )


def wait_until(condition: Callable[[], bool], deadline_s: float, failure: Callable[[], str], interval_s: float = 0.2,
               what: str | None = None) -> None:
    """Poll ``condition`` until it holds; past the deadline raise with ``failure()`` as the message.
    With ``what``, the wait shows as a live step (simulator/progress.py)."""
    end = time.monotonic() + deadline_s
    with progress.step(what) if what else nullcontext() as shown:
        while True:
            if condition():
                return
            if time.monotonic() > end:
                raise CutoverError(failure())
            if shown:
                shown.update(f"up to {deadline_s:.0f}s")
            time.sleep(interval_s)


def _tar_one_file(name: str, content: str) -> bytes:
    data = content.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def observed_containers(listed: list) -> dict[str, ObservedContainer]:
    """The stack's containers as the planner sees them, from one listing (``stack_containers``)."""
    containers = {}
    for container in listed:
        labels = container.labels
        containers[container.name] = ObservedContainer(
            name=container.name,
            role=labels.get("cutover.role", ""),
            colour=labels.get("cutover.colour"),
            version=labels.get("cutover.version"),
            fingerprint=labels.get("cutover.fingerprint"),
            running=container.status == "running",
            image_id=container.attrs.get("Image"),
        )
    return containers


def health_of(state: dict) -> str:
    """Docker's health status from a container's inspected ``State`` (``DockerDriver.health``)."""
    if not state.get("Running"):
        return "stopped"
    return state.get("Health", {}).get("Status", "healthy")
