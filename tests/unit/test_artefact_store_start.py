"""ArtefactStore.start() returns only once the store answers /v2/ (simulator/registry.py).

A started container is not yet a listening registry. Here the "registry" is a local HTTP server on
a socket that is bound (so a connection is refused, as Docker's published port refuses while the
registry inside boots) and starts listening only once a probe has been refused: no timing is
involved, and start() passes only if it kept probing until the store answered. Without the wait,
start() returns before anything asked /v2/, and the test fails.
"""

from __future__ import annotations

import http.server
import threading
from types import SimpleNamespace

import docker.errors
import pytest
import requests

from simulator import registry
from simulator.errors import CutoverError


class LateStore(http.server.HTTPServer):
    """Bound now, listening only after ``listen`` is set; records the paths it was asked for."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server_bind()
        self.asked: list[str] = []
        self.listen = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        if self.listen.wait(timeout=30):
            self.server_activate()
            self.serve_forever(poll_interval=0.05)

    @property
    def port(self) -> int:
        return self.server_address[1]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.asked.append(self.path)
        self.send_response(401)  # auth is on: any answer means the registry is up
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


class FakeEngine:
    """The Docker client's containers, as start() uses them: an existing stopped container, or none."""

    def __init__(self, existing: bool) -> None:
        self.started, self.created = [], []
        container = SimpleNamespace(status="exited", start=lambda: self.started.append(True))
        self.existing = container if existing else None
        self.containers = SimpleNamespace(get=self._get, run=lambda image, **kw: self.created.append((image, kw)))

    def _get(self, name: str):
        if self.existing is None:
            raise docker.errors.NotFound(f"no container {name}")
        return self.existing


@pytest.fixture
def store(monkeypatch, tmp_path):
    monkeypatch.setenv("CUTOVER_STATE_DIR", str(tmp_path))  # the generated registry password goes here
    server = LateStore()
    real_get = requests.get
    refused = []

    def probe(url, **kwargs):
        try:
            return real_get(url, **kwargs)
        except requests.ConnectionError:
            refused.append(url)
            server.listen.set()  # the registry comes up only after start() has found it not listening
            raise

    monkeypatch.setattr(registry.requests, "get", probe)
    yield server, refused
    server.listen.set()
    if server.thread.is_alive():
        server.shutdown()
    server.server_close()


@pytest.mark.parametrize("existing", [True, False], ids=["stopped container started", "missing container created"])
def test_start_returns_only_once_the_store_answers_v2(store, existing):
    server, refused = store
    engine = FakeEngine(existing)
    ensured = []
    registry.ArtefactStore(engine, server.port, say=lambda line: None).start(lambda: ensured.append(True))
    if existing:
        assert engine.started == [True] and engine.created == []
    else:
        assert [image for image, _ in engine.created] == [registry.IMAGE] and ensured == [True]
    assert refused == [f"http://127.0.0.1:{server.port}/v2/"]  # it was not listening at first...
    assert server.asked == ["/v2/"]  # ...and start() came back only after it had answered


def test_a_store_that_never_answers_is_one_sentence(store, monkeypatch):
    server, _ = store
    monkeypatch.setattr(registry, "READY_DEADLINE_S", 0.3)
    monkeypatch.setattr(registry.requests, "get", lambda url, **kw: (_ for _ in ()).throw(requests.ConnectionError(url)))
    with pytest.raises(CutoverError) as failed:
        registry.ArtefactStore(FakeEngine(existing=True), server.port, say=lambda line: None).start(lambda: None)
    message = str(failed.value)
    assert len(message.splitlines()) == 1
    assert f"did not answer on 127.0.0.1:{server.port} within 0.3s" in message
