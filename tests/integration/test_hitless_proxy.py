"""The proxy changes without dropping a request, stops gracefully, and switches only to a healthy
colour: real Docker, real HAProxy (images/proxy), traffic on 127.0.0.1 only, every loop bounded.

- A backend change (health interval, through `cutover up` on the idle colour and through a direct
  `proxy-backend` on the live one) under steady keep-alive load on both ports: no failed request,
  the same proxy container, a new HAProxy worker.
- A slow request in flight when the proxy container gets `docker stop` still ends with 200.
- `proxy-switch` refuses a colour whose containers are stopped (one sentence, exit 1, live colour
  unchanged); with `--wait` it succeeds once the colour is UP again.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import docker
import pytest
import requests
import yaml

from stacks.proxy_config import backend_path, render_backend
from stacks.spec import load_stack
from stacks.topology import PROXY_STOP_TIMEOUT_S, app_container_name, app_container_names, proxy_container_name
from tests.conftest import REPO_ROOT, demo_copy, remove_app_images, run_cli, static_site_copy, write_stack_file

pytestmark = pytest.mark.docker

SITE = "hitless-site"
SITE_PORT = 19800
DEMO = "hitless-demo"
DEMO_PORT = 19802
SITE_APP = "hitless-site"
DEMO_APP = "hitless-demo"
LOAD_CLIENTS = 4  # per port
SLOW_MS = 3000


def cli(root: Path, stack: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli("--stacks-dir", str(root), *args, "--stack", stack, timeout=timeout)


def up(root: Path, stack: str) -> None:
    result = cli(root, stack, "up", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def stacks(tmp_path_factory, state_dir):
    """Two stacks, up: the static site (two containers a colour) and the demo (one a colour)."""
    root = tmp_path_factory.mktemp("hitless")
    site = static_site_copy(root / "site", SITE_APP)
    write_stack_file(root, SITE, SITE_PORT, **{"cutover:app": str(site / "cutover-app.yaml"), "cutover:poolSize": 2})
    demo = demo_copy(root / "demo", DEMO_APP)
    write_stack_file(root, DEMO, DEMO_PORT, **{"cutover:app": str(demo)})
    for stack, app in ((SITE, SITE_APP), (DEMO, DEMO_APP)):
        cli(root, stack, "down", "--volumes", "--ledger")
        remove_app_images(app)
    began = time.monotonic()
    # Both at once: they share nothing but the engine (and the proxy image, built before).
    ups = [threading.Thread(target=up, args=(root, s)) for s in (SITE, DEMO)]
    for thread in ups:
        thread.start()
    for thread in ups:
        thread.join()
    print(f"\nboth stacks up in {time.monotonic() - began:.1f}s")
    yield root
    downs = [threading.Thread(target=cli, args=(root, s, "down", "--volumes", "--ledger")) for s in (SITE, DEMO)]
    for thread in downs:
        thread.start()
    for thread in downs:
        thread.join()
    for app in (SITE_APP, DEMO_APP):
        remove_app_images(app)


def spec_of(root: Path, stack: str):
    os.environ["CUTOVER_STACKS_DIR"] = str(root)
    try:
        return load_stack(stack)
    finally:
        del os.environ["CUTOVER_STACKS_DIR"]


def proxy(root: Path, stack: str):
    return docker.from_env().containers.get(proxy_container_name(spec_of(root, stack)))


def exec_in(container, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`docker exec` as Pulumi's commands run it: a value in the environment, never the command text."""
    names = [arg for name in (env or {}) for arg in ("-e", name)]
    return subprocess.run(["docker", "exec", *names, container.name, *command], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def proxy_state(container) -> dict:
    result = exec_in(container, "proxy-state")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    return json.loads(result.stdout)


def worker_pid(container) -> str:
    info = exec_in(container, "proxy-admin", "show info").stdout
    return next(line.split(": ")[1] for line in info.splitlines() if line.startswith("Pid: "))


def read_file(container, path: str) -> str:
    return exec_in(container, "cat", path).stdout


def wait_for(condition, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, f"{what} within {seconds}s"
        time.sleep(0.2)


@dataclass
class Load:
    """Keep-alive GETs on a few sessions per URL until stopped (bounded by ``seconds``)."""

    urls: list[str]
    seconds: float = 60
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    reused: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(url,)) for url in self.urls for _ in range(LOAD_CLIENTS)]

    def _client(self, url: str) -> None:
        session = requests.Session()
        end = time.monotonic() + self.seconds
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                response = session.get(url, timeout=5)
                outcome = None if response.status_code == 200 else f"{url}: HTTP {response.status_code}"
            except requests.RequestException as exc:
                outcome = f"{url}: {exc.__class__.__name__}: {exc}"
            with self._lock:
                if outcome is None:
                    self.ok += 1
                else:
                    self.failures.append(outcome)

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        # Running before anything changes: every client has made requests.
        wait_for(lambda: self.ok >= 20 * len(self._threads), 10, "the load is running")
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1)  # requests after the last change count too
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_backend_changes_under_keep_alive_load_drop_no_request(stacks):
    """A new health interval reaches the idle colour through `cutover up`, and the live colour
    through a direct proxy-backend: each a master-worker reload, under load, with nothing dropped."""
    container = proxy(stacks, SITE)
    spec = spec_of(stacks, SITE)
    before_id, before_pid = container.id, worker_pid(container)
    blue_before = read_file(container, backend_path("blue"))
    assert "inter 1000ms" in read_file(container, backend_path("green"))
    urls = [f"http://127.0.0.1:{SITE_PORT}/", f"http://127.0.0.1:{SITE_PORT + 1}/"]
    timings = {}
    with Load(urls) as load:
        write_stack_file(stacks, SITE, SITE_PORT, **{"cutover:app": str(stacks / "site/cutover-app.yaml"), "cutover:poolSize": 2,
                                                      "cutover:healthIntervalMs": 700})
        began = time.monotonic()
        result = cli(stacks, SITE, "up")
        timings["cutover up"] = time.monotonic() - began
        assert result.returncode == 0, result.stdout + result.stderr
        assert "green backend" in result.stdout and "blue backend" not in result.stdout, result.stdout
        live_backend = render_backend(replace(spec, health_interval_ms=700), "blue", app_container_names(spec)["blue"], spec.app.port)
        began = time.monotonic()
        direct = exec_in(container, "proxy-backend", "blue", env={"CUTOVER_BACKEND": live_backend})
        timings["proxy-backend blue"] = time.monotonic() - began
        assert direct.returncode == 0, direct.stderr
    print(f"\n{load.ok} requests on {len(load._threads)} keep-alive sessions, {len(load.failures)} failed; "
          + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items()))
    assert load.failures == [], load.failures[:5]
    container.reload()
    assert container.id == before_id and container.status == "running", "the proxy container was replaced or restarted"
    assert worker_pid(container) != before_pid, "no reload happened"
    # `up` changed only the idle colour; the live one changed by the direct call alone.
    assert "inter 700ms" in read_file(container, backend_path("green"))
    assert blue_before != read_file(container, backend_path("blue")) == live_backend
    # The same text again: nothing to do, no reload.
    pid = worker_pid(container)
    again = exec_in(container, "proxy-backend", "blue", env={"CUTOVER_BACKEND": live_backend})
    assert again.returncode == 0 and "unchanged" in again.stdout
    assert worker_pid(container) == pid


def test_an_invalid_backend_is_refused_and_changes_nothing(stacks):
    container = proxy(stacks, SITE)
    pid, before = worker_pid(container), read_file(container, backend_path("green"))
    broken = "backend green\n    server green-1 nowhere:notaport\n"
    result = exec_in(container, "proxy-backend", "green", env={"CUTOVER_BACKEND": broken})
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "not valid HAProxy config" in result.stderr, result.stderr
    assert read_file(container, backend_path("green")) == before
    assert worker_pid(container) == pid


def test_switch_refuses_an_unhealthy_colour_and_waits_for_it(stacks):
    container = proxy(stacks, SITE)
    spec = spec_of(stacks, SITE)
    engine = docker.from_env()
    green = [engine.containers.get(app_container_name(spec, "green", i)) for i in (1, 2)]
    assert proxy_state(container)["live"] == "blue"
    for member in green:
        member.stop(timeout=20)
    wait_for(lambda: proxy_state(container)["servers"]["green"]["up"] == 0, 15, "HAProxy sees green down")
    refused = exec_in(container, "proxy-switch", "green")
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "refusing to make green live" in refused.stderr and "green-1" in refused.stderr and "green-2" in refused.stderr
    assert proxy_state(container)["live"] == "blue"
    # Started again a second after the switch began waiting: the switch goes through once they are UP.
    starter = threading.Timer(1.0, lambda: [member.start() for member in green])
    began = time.monotonic()
    starter.start()
    waited = exec_in(container, "proxy-switch", "--wait", "30", "green")
    seconds = time.monotonic() - began
    starter.join()
    print(f"\nproxy-switch --wait: green UP and live after {seconds:.2f}s (containers started after 1 s)")
    assert waited.returncode == 0, waited.stderr
    assert seconds >= 1.0
    state = proxy_state(container)
    assert state["live"] == "green" and state["servers"]["green"] == {"total": 2, "up": 2}
    back = exec_in(container, "proxy-switch", "blue")
    assert back.returncode == 0, back.stderr


def test_a_slow_request_in_flight_survives_docker_stop_of_the_proxy(stacks):
    container = proxy(stacks, DEMO)
    outcome: dict = {}

    def slow() -> None:
        try:
            response = requests.get(f"http://127.0.0.1:{DEMO_PORT}/slow?ms={SLOW_MS}", timeout=30)
            outcome.update(status=response.status_code, body=response.json())
        except requests.RequestException as exc:
            outcome.update(error=repr(exc))

    def in_flight() -> bool:
        stats = exec_in(container, "proxy-admin", "show stat -1 2 -1").stdout  # backends only
        return any(row.split(",")[4] not in ("", "0") for row in stats.splitlines() if row.startswith(("blue,", "green,")))

    request = threading.Thread(target=slow)
    request.start()
    wait_for(in_flight, 5, "the slow request reaches a backend")
    began = time.monotonic()
    container.stop(timeout=PROXY_STOP_TIMEOUT_S)  # Docker sends the image's STOPSIGNAL, SIGUSR1
    stopped_after = time.monotonic() - began
    request.join(timeout=30)
    container.reload()
    print(f"\ndocker stop of the proxy took {stopped_after:.2f}s with a {SLOW_MS} ms request in flight: {outcome}")
    assert outcome.get("status") == 200, outcome
    assert outcome["body"]["slept_ms"] == SLOW_MS
    # HAProxy left by itself once the request was done: no SIGKILL from Docker (exit 137).
    assert container.attrs["State"]["ExitCode"] == 0, container.attrs["State"]
    assert stopped_after < PROXY_STOP_TIMEOUT_S
