"""The local swarm's edge container (its config: simulator/edge_config.py, docs/cluster.md "The edge").

One HAProxy container, ``cutover-cluster-NAME-edge``, of the proxy image the simulator already
builds (images/proxy) run with its own config instead of the proxy's entrypoint. It publishes the
cluster's ``--publish`` ports on 127.0.0.1 (fixed when it is created) and balances each over the
traffic nodes; a later ``up`` with more workers rewrites its config and reloads it (master-worker:
the old worker finishes its connections), so connections in flight are never cut.
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import Callable

import docker
import docker.errors

from simulator.edge_config import CONFIG_PATH, SOCKET_PATH, EdgeServer, render, server_states
from simulator.errors import CutoverError
from stacks.topology import PROXY_IMAGE

EDGE_ROLE = "edge"
# From a (re)load to the edge listing every server: HAProxy starts in well under a second.
RELOAD_DEADLINE_S = 20


class Edge:
    def __init__(self, client: docker.DockerClient, container: str, network: str, labels: dict[str, str],
                 say: Callable[[str], None] = print) -> None:
        self.client = client
        self.container = container
        self.network = network
        self.labels = labels
        self.say = say

    def find(self):
        try:
            return self.client.containers.get(self.container)
        except docker.errors.NotFound:
            return None

    def published(self) -> list[int] | None:
        """The ports the edge publishes (fixed when it was created); None when there is no edge."""
        container = self.find()
        if container is None:
            return None
        bindings = container.attrs["HostConfig"].get("PortBindings") or {}
        return sorted(int(p.split("/")[0]) for p in bindings)

    def ensure(self, ports: tuple[int, ...], servers: list[EdgeServer]) -> None:
        """Create (or start) the edge for ``ports`` and make its backends list ``servers``."""
        config = render(ports, servers)
        container = self.find()
        if container is None:
            self.say(f"starting {self.container} (127.0.0.1:{', 127.0.0.1:'.join(map(str, sorted(set(ports))))} to {len(servers)} traffic node(s))")
            try:
                container = self.client.containers.create(
                    PROXY_IMAGE, entrypoint=["haproxy", "-W", "-db", "-f", CONFIG_PATH], name=self.container,
                    hostname=self.container, network=self.network, labels=self.labels,
                    ports={f"{p}/tcp": ("127.0.0.1", p) for p in sorted(set(ports))},
                )
            except docker.errors.APIError as exc:
                raise CutoverError(f"the edge {self.container} could not be created: {exc.explanation or exc}.") from None
            self._write(container, config)
            self._start(container)
        else:
            if container.status != "running":
                self.say(f"starting {self.container}")
                self._start(container)
            if self._config(container) != config:
                # New traffic nodes: validate the new config, then reload (SIGUSR2 to the master).
                self.say(f"reloading {self.container} for {len(servers)} traffic node(s)")
                self._write(container, config)
                code, output = container.exec_run(["haproxy", "-c", "-q", "-f", CONFIG_PATH])
                if code != 0:
                    raise CutoverError(f"the edge's new config is invalid: {output.decode(errors='replace').strip()}.")
                container.kill(signal="SIGUSR2")
        self._wait_serving(container, {s.name for s in servers})

    def _start(self, container) -> None:
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise CutoverError(f"the edge {self.container} could not start: {exc.explanation or exc}.") from None

    @staticmethod
    def _write(container, config: str) -> None:
        data = config.encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(CONFIG_PATH.rsplit("/", 1)[1])
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())  # read by the haproxy user
            tar.addfile(info, io.BytesIO(data))
        container.put_archive(CONFIG_PATH.rsplit("/", 1)[0], archive.getvalue())

    @staticmethod
    def _config(container) -> str:
        code, output = container.exec_run(["cat", CONFIG_PATH])
        return output.decode(errors="replace") if code == 0 else ""

    def servers(self) -> list[dict] | None:
        """Every backend server's state from the edge's runtime API; None when the edge does not answer."""
        container = self.find()
        if container is None or container.status != "running":
            return None
        code, output = container.exec_run(["sh", "-c", f"echo 'show stat' | socat stdio unix-connect:{SOCKET_PATH}"])
        if code != 0 or not output.strip():
            return None
        return server_states(output.decode(errors="replace"))

    def _wait_serving(self, container, names: set[str]) -> None:
        end = time.monotonic() + RELOAD_DEADLINE_S
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                tail = container.logs(tail=3).decode(errors="replace").strip().replace("\n", " | ")
                raise CutoverError(f"the edge {self.container} exited ({tail}); see 'docker logs {self.container}'.")
            states = self.servers()
            if states is not None and {row["node"] for row in states} == names:
                return
            if time.monotonic() > end:
                raise CutoverError(f"the edge {self.container} did not serve its {len(names)} traffic node(s) within "
                                   f"{RELOAD_DEADLINE_S}s; see 'docker logs {self.container}'.")
            time.sleep(0.2)

    def status(self) -> dict | None:
        container = self.find()
        if container is None:
            return None
        return {"container": self.container, "state": container.status, "ports": self.published(), "servers": self.servers() or []}

    def remove(self) -> bool:
        container = self.find()
        if container is None:
            return False
        container.remove(force=True)
        return True
