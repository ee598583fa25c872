"""The five ways of switching versions. Each gets the same two app containers' images (the bench
stack's blue and green: the demo at two versions) and offers setup / switch(to_version) / teardown.

Cutover is the shipped path (a bench stack through the simulator: the HAProxy runtime map flip).
The other four run the same images outside the stack (no stack labels), on the stack's network so
the read-write demo reaches its database with the settings the stack's own containers get.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import docker.errors

from simulator.errors import CutoverError
from simulator.operations import Simulator
from simulator.secrets_store import SecretStore
from stacks.topology import app_container, app_container_names, network_name, secret_value

IMAGES_DIR = Path(__file__).resolve().parent / "images"
PROXY_IMAGES = {"nginx": "cutover-bench-nginx:1", "haproxy": "cutover-bench-haproxy:1", "caddy": "cutover-bench-caddy:1"}
LABEL = {"cutover.benchmark": "bench-way"}
HEALTHY_DEADLINE_S = 60.0
PROXY_PORT = 8080  # inside each alternative proxy's container
MAX_REFUSALS = 3  # cutover preflight refusals in a row before the bench gives up on that way


def build_proxy_images(client, base_image: str, say) -> None:
    """Debian's nginx, haproxy and caddy, each in its own image on the stack's base image."""
    for way, tag in PROXY_IMAGES.items():
        say(f"building {tag} (Debian's {way} on {base_image})")
        client.images.build(path=str(IMAGES_DIR), dockerfile=f"Dockerfile.{way}", tag=tag, buildargs={"BASE_IMAGE": base_image}, rm=True)


def put_file(container, path: str, text: str) -> None:
    """Write ``text`` at ``path`` in a container (created or running) through the engine's archive API."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(Path(path).name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(str(Path(path).parent), buffer.getvalue())


def run_checked(container, command: list[str]) -> None:
    code, output = container.exec_run(command)
    if code != 0:
        raise CutoverError(f"{' '.join(command)} in {container.name} exited {code}: {output.decode(errors='replace').strip()[:300]}")


def remove_quietly(client, name: str) -> None:
    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass


class AppPair:
    """The demo at both versions outside the stack: ``{prefix}-v1`` and ``{prefix}-v2``."""

    def __init__(self, sim: Simulator, images: dict[str, str], prefix: str, publish_port: int | None = None) -> None:
        self.sim = sim
        self.client = sim.client
        self.images = images  # version -> image ID
        self.prefix = prefix
        self.publish_port = publish_port  # stop-then-start: both containers publish the same port
        self.names = {version: f"{prefix}-v{i}" for i, version in enumerate(images, start=1)}

    def create(self, start: bool = True) -> None:
        spec = self.sim.spec
        store = SecretStore(spec.stack)
        for version, name in self.names.items():
            remove_quietly(self.client, name)
            model = app_container(spec, "bench", 1, version)
            env = dict(model.env) | {"CUTOVER_INSTANCE": name}
            for variable, secret, template in model.secret_env:
                env[variable] = secret_value(template, store.get(secret))
            ports = {f"{spec.app.port}/tcp": ("127.0.0.1", self.publish_port)} if self.publish_port else None
            container = self.client.containers.create(self.images[version], name=name, environment=env, network=network_name(spec),
                                                      ports=ports, labels=LABEL, stop_signal=spec.app.stop.signal)
            if start:
                container.start()
        if start:
            for name in self.names.values():
                self.wait_healthy(name)

    def wait_healthy(self, name: str) -> None:
        """Until the app's own health command passes inside the container (a condition, with a deadline)."""
        command = list(self.sim.spec.app.health.command) or ["true"]
        container = self.client.containers.get(name)
        deadline = time.monotonic() + HEALTHY_DEADLINE_S
        while time.monotonic() < deadline:
            container.reload()
            if container.status == "running" and container.exec_run(command).exit_code == 0:
                return
            time.sleep(0.2)
        raise CutoverError(f"{name} did not pass its health command within {HEALTHY_DEADLINE_S:.0f}s.")

    def remove(self) -> None:
        for name in self.names.values():
            remove_quietly(self.client, name)


class CutoverWay:
    name = "cutover (HAProxy map flip)"
    key = "cutover"

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.port = sim.spec.live_port
        self.refused = 0
        self.last_attempt_at: float | None = None

    def setup(self) -> None:
        pass  # the stack is up

    def switch(self, to_version: str) -> float | None:
        """The shipped switch (preflight of the idle colour, the map flip, drain, watch); returns
        when the proxy confirmed the flip.

        A preflight may refuse: on a saturated machine Docker's health command (2 s timeout) can
        fail on a colour that serves fine. That is cutover's guard working, not a dropped request:
        it is counted (``refused``), the colour's containers are waited on until Docker calls them
        healthy again, and the switch is tried again; ``last_attempt_at`` says when the attempt
        that flipped began (the bench measures from there and notes the refusals)."""
        self.last_attempt_at = None
        status = self.sim.status()
        if status.pools[status.live].version == to_version:
            return None
        target = next(colour for colour, pool in status.pools.items() if pool.version == to_version)
        for _ in range(MAX_REFUSALS + 1):
            try:
                return self.sim.switch().flipped_at
            except CutoverError as exc:
                if "refusing" not in str(exc):
                    raise
                self.refused += 1
                self._wait_docker_healthy(target)
                self.last_attempt_at = time.time()
        raise CutoverError(f"cutover refused {MAX_REFUSALS + 1} switches to {target} in a row.")

    def _wait_docker_healthy(self, colour: str) -> None:
        deadline = time.monotonic() + HEALTHY_DEADLINE_S
        names = app_container_names(self.sim.spec)[colour]
        while time.monotonic() < deadline:
            states = [(self.sim.client.containers.get(n).attrs["State"].get("Health") or {}).get("Status") for n in names]
            if all(state in ("healthy", None) for state in states):
                return
            time.sleep(0.5)

    def teardown(self) -> None:
        pass


class StopStartWay:
    name = "stop-then-start"
    key = "stop-start"

    def __init__(self, sim: Simulator, images: dict[str, str], port: int) -> None:
        self.pair = AppPair(sim, images, f"{network_name(sim.spec)}-stopstart", publish_port=port)
        self.port = port
        self.running = next(iter(images))

    def setup(self) -> None:
        self.pair.create(start=False)
        self.pair.client.containers.get(self.pair.names[self.running]).start()
        self.pair.wait_healthy(self.pair.names[self.running])

    def switch(self, to_version: str) -> None:
        client = self.pair.client
        client.containers.get(self.pair.names[self.running]).stop(timeout=self.pair.sim.spec.app.stop.grace_seconds)
        client.containers.get(self.pair.names[to_version]).start()
        self.running = to_version

    def teardown(self) -> None:
        self.pair.remove()


class _ProxyWay:
    """An alternative proxy in its own container, publishing ``port``, in front of the shared app pair."""

    key = ""
    config_path = ""

    def __init__(self, sim: Simulator, pair: AppPair, port: int) -> None:
        self.sim = sim
        self.pair = pair
        self.port = port
        self.container = None
        self.container_name = f"{network_name(sim.spec)}-{self.key}"

    def config(self, upstream: str) -> str:
        raise NotImplementedError

    def setup(self) -> None:
        client = self.pair.client
        remove_quietly(client, self.container_name)
        self.container = client.containers.create(PROXY_IMAGES[self.key], name=self.container_name, network=network_name(self.sim.spec),
                                                  ports={f"{PROXY_PORT}/tcp": ("127.0.0.1", self.port)}, labels=LABEL)
        first = next(iter(self.pair.names.values()))
        put_file(self.container, self.config_path, self.config(f"{first}:{self.sim.spec.app.port}"))
        self.container.start()

    def upstream(self, to_version: str) -> str:
        return f"{self.pair.names[to_version]}:{self.sim.spec.app.port}"

    def teardown(self) -> None:
        remove_quietly(self.pair.client, self.container_name)


class NginxWay(_ProxyWay):
    name = "nginx reload"
    key = "nginx"
    config_path = "/etc/nginx/conf.d/upstream.conf"

    def config(self, upstream: str) -> str:
        return f"upstream app {{\n    server {upstream};\n    keepalive 32;\n}}\n"

    def switch(self, to_version: str) -> None:
        put_file(self.container, self.config_path, self.config(self.upstream(to_version)))
        run_checked(self.container, ["nginx", "-s", "reload"])


class HAProxyReloadWay(_ProxyWay):
    name = "HAProxy reload"
    key = "haproxy"
    config_path = "/etc/haproxy/bench.cfg"

    def config(self, upstream: str) -> str:
        return (
            "global\n    master-worker\n"
            "defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n"
            f"frontend web\n    bind :{PROXY_PORT}\n    default_backend app\n"
            f"backend app\n    server app {upstream}\n"
        )

    def switch(self, to_version: str) -> None:
        put_file(self.container, self.config_path, self.config(self.upstream(to_version)))
        run_checked(self.container, ["sh", "-c", "kill -USR2 1"])  # the master (PID 1) reloads: new workers, old ones finish


class CaddyWay(_ProxyWay):
    name = "Caddy /load"
    key = "caddy"
    config_path = "/etc/caddy/bench.json"

    def config(self, upstream: str) -> str:
        route = {"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": upstream}]}]}
        return json.dumps({"admin": {"listen": "localhost:2019"},
                           "apps": {"http": {"servers": {"bench": {"listen": [f":{PROXY_PORT}"], "routes": [route]}}}}})

    def switch(self, to_version: str) -> None:
        put_file(self.container, "/tmp/next.json", self.config(self.upstream(to_version)))
        run_checked(self.container, ["curl", "-sSf", "-X", "POST", "-H", "Content-Type: application/json",
                                     "--data-binary", "@/tmp/next.json", "http://localhost:2019/load"])
