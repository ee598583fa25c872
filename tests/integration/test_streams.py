"""Long-lived connections across a switch, for real: the demo app (a copy under an app name of its
own) on stack `stream` (ports 19730/19731, a 3 s drain budget), server-sent event clients on the live
port through HAProxy while the real CLI switches colours.

What must always hold: every event a client receives is whole and parses; a stream on the old
colour keeps delivering after the flip, until the drain budget; it then ends with the final
`event: end` (never cut without it, never mid-event); the client's reconnect lands on the new colour.
Durations (flip to final event, reconnect gap) are printed, not asserted.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import pytest
import requests
import yaml

from simulator.proxy_api import ProxyAPI
from stacks.spec import load_stack, other_colour
from stacks.topology import app_container_name, proxy_container_name
from tests.conftest import demo_copy, REPO_ROOT, remove_app_images, run_cli, write_stack_file

pytestmark = pytest.mark.docker

STACK = "stream"
LIVE_PORT = 19730
PREVIEW_PORT = 19731
APP_NAME = "cutover-stream-demo"
DRAIN_SECONDS = 3
CLIENTS = 4
LIVE = f"http://127.0.0.1:{LIVE_PORT}"
PREVIEW = f"http://127.0.0.1:{PREVIEW_PORT}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, state_dir):
    """The demo as stack `stream`, up: blue 1.0.0 live, green 1.0.1 idle, one container each."""
    root = tmp_path_factory.mktemp("stream")
    app_file = demo_copy(root / "demo", APP_NAME)
    ci = yaml.safe_load((REPO_ROOT / "stacks/Pulumi.ci.yaml").read_text())["config"]
    config = {**ci, "cutover:app": str(app_file), "cutover:poolSize": 1, "cutover:drainSeconds": DRAIN_SECONDS,
              "cutover:blueVersion": "1.0.0", "cutover:greenVersion": "1.0.1", "cutover:liveColor": "blue"}
    config.pop("cutover:livePort"), config.pop("cutover:previewPort")
    write_stack_file(root, STACK, LIVE_PORT, **config)
    cli(root, "down", "--volumes", "--ledger")
    remove_app_images(APP_NAME)
    result = cli(root, "up", timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    yield root
    cli(root, "down", "--volumes", "--ledger")
    remove_app_images(APP_NAME)


def cli(root: Path, *args: str, timeout: float = 600):
    return run_cli("--stacks-dir", str(root), *args, "--stack", STACK, timeout=timeout)


@dataclass
class Stream:
    """One SSE response as a client saw it."""

    colour: str | None = None  # HAProxy's X-Cutover-Colour
    ticks: list[tuple[float, dict]] = field(default_factory=list)  # (received at, data)
    end: dict | None = None  # the final event's data
    ended_at: float | None = None
    problems: list[str] = field(default_factory=list)  # anything cut, unparsable or out of order


def read_stream(url: str, stream: Stream | None = None, max_ticks: int | None = None) -> Stream:
    """Read one SSE response into ``stream`` to its end (or until ``max_ticks``, then hang up),
    checking that every event is whole: a response that ends with half an event buffered was cut."""
    stream = stream if stream is not None else Stream()
    try:
        with requests.get(url, stream=True, timeout=(3, 10)) as response:
            stream.colour = response.headers.get("X-Cutover-Colour")
            if response.status_code != 200:
                stream.problems.append(f"HTTP {response.status_code}")
                return stream
            buffer = b""
            for chunk in response.iter_content(chunk_size=None):
                buffer += chunk
                while b"\n\n" in buffer:
                    raw, buffer = buffer.split(b"\n\n", 1)
                    event = parse_event(raw.decode(), stream)
                    if event is None:
                        continue
                    name, data = event
                    if stream.end is not None:
                        stream.problems.append(f"{name} after the final event")
                    elif name == "end":
                        stream.end, stream.ended_at = data, time.time()
                    elif name == "tick":
                        if data.get("n") != len(stream.ticks) + 1:
                            stream.problems.append(f"tick {data.get('n')} after {len(stream.ticks)} ticks")
                        stream.ticks.append((time.time(), data))
                if max_ticks is not None and len(stream.ticks) >= max_ticks:
                    return stream  # the client hangs up: not the server's doing
            if buffer.strip():
                stream.problems.append(f"cut mid-event: {buffer[:80]!r}")
    except requests.RequestException as exc:
        stream.problems.append(f"{exc.__class__.__name__}: {exc}")
    if stream.end is None:
        stream.problems.append(f"ended after {len(stream.ticks)} ticks without the final event")
    return stream


def parse_event(raw: str, stream: Stream) -> tuple[str, dict] | None:
    fields: dict[str, str] = {}
    for line in raw.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    if set(fields) == {"retry"}:
        return None
    try:
        return fields["event"], json.loads(fields["data"])
    except (KeyError, ValueError):
        stream.problems.append(f"unparsable event {raw!r}")
        return None


class Client(threading.Thread):
    """An SSE client that reconnects when its stream ends, as EventSource does; it keeps the
    streams it read, and stops after the stream that follows the first reconnect has 2 ticks."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{base_url}/events?count=600"
        self.streams: list[Stream] = []

    def run(self) -> None:
        first = Stream()
        self.streams.append(first)  # filled while it is read, so the test sees it flowing
        read_stream(self.url, first)
        if first.end is not None:
            self.streams.append(read_stream(self.url, max_ticks=2))

    def flowing(self) -> bool:
        return len(self.streams) == 1 and len(self.streams[0].ticks) >= 2


def wait_for(condition, deadline_s: float, what: str, interval_s: float = 0.1) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, f"{what} within {deadline_s}s"
        time.sleep(interval_s)


def last_switch(root: Path) -> dict:
    result = cli(root, "audit", "--json")
    assert result.returncode == 0, result.stderr
    return [r for r in json.loads(result.stdout) if r.get("command") in ("switch", "rollback") and r.get("outcome") == "ok"][-1]


def live_colour() -> str:
    return requests.get(f"{LIVE}/version", timeout=5).headers["X-Cutover-Colour"]


def test_streams_on_the_old_colour_flow_until_the_drain_budget_then_end_and_reconnect_to_the_new(stack):
    old = live_colour()
    clients = [Client(LIVE) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    # Every client has its stream open and flowing before the switch.
    wait_for(lambda: all(c.flowing() for c in clients), 30, "every client's stream open and flowing")

    switched = cli(stack, "switch", timeout=120)
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert "ran the app's drain hook" in switched.stdout, switched.stdout
    record = last_switch(stack)
    new, flipped_at = record["to_colour"], record["flipped_at"]
    assert new != old and record["drained"] is True, record

    for client in clients:
        client.join(timeout=60)
        assert not client.is_alive(), "a client still reading 60 s after the switch"
    for i, client in enumerate(clients):
        first, *rest = client.streams
        assert first.problems == [], f"client {i}: {first.problems}"
        assert first.colour == old and {d["colour"] for _, d in first.ticks} == {old}
        # Kept flowing through the drain budget: ticks after the flip, the final event only once the budget ran out.
        last_tick = max(at for at, _ in first.ticks) - flipped_at
        assert last_tick > DRAIN_SECONDS / 2, f"client {i}: its last tick came {last_tick:.2f}s after the flip"
        assert first.end == {**first.end, "reason": "drain", "colour": old}, first.end
        assert first.ended_at >= flipped_at + DRAIN_SECONDS, f"client {i}: ended {first.ended_at - flipped_at:.2f}s after the flip"
        assert len(rest) == 1, f"client {i} did not reconnect"
        again = rest[0]
        assert again.colour == new and {d["colour"] for _, d in again.ticks} == {new}, (again.colour, again.ticks, again.problems)
        assert len(again.ticks) == 2 and again.problems == [], again.problems
        gap = again.ticks[0][0] - first.ended_at
        print(f"client {i}: {len(first.ticks)} ticks on {old}, the last {last_tick:.2f}s and the final event {first.ended_at - flipped_at:.2f}s after the flip "
              f"(budget {DRAIN_SECONDS}s), first tick on {new} {gap * 1000:.0f} ms after it")



def proxy(root: Path) -> ProxyAPI:
    return ProxyAPI(docker.from_env().containers.get(proxy_container_name(load_stack(STACK, root))))


def app_container(root: Path, colour: str):
    return docker.from_env().containers.get(app_container_name(load_stack(STACK, root), colour, 1))


def test_a_long_request_finishes_across_a_switch_and_streams_opened_after_the_hook_are_not_ended(stack):
    old = live_colour()
    new = other_colour(old)
    # The colour going live had its drain hook run before (as the previous switch did): only
    # streams opened before that moment end; the ones opened once it is live again run their course.
    hook = app_container(stack, new).exec_run(["python3", "/srv/cutover-demo.pyz", "end-streams"])
    assert hook.exit_code == 0, hook.output

    # A train of 2 s requests, one every 0.25 s, until the switch has returned: whenever the flip
    # comes, several are in flight on the old colour, and each must still answer 200 from it.
    answers: list[tuple[float, requests.Response | Exception]] = []  # (finished at, answer)
    stop = threading.Event()

    def one() -> None:
        try:
            answer = requests.get(f"{LIVE}/slow?ms=2000", timeout=30)
        except requests.RequestException as exc:
            answer = exc
        answers.append((time.time(), answer))

    def train() -> None:
        started = []
        while not stop.is_set():
            started.append(threading.Thread(target=one, daemon=True))
            started[-1].start()
            stop.wait(0.25)
        for thread in started:
            thread.join(timeout=30)

    trains = threading.Thread(target=train, daemon=True)
    trains.start()
    wait_for(lambda: proxy(stack).backend_sessions(old) > 0, 10, f"slow requests in flight on {old}")
    try:
        switched = cli(stack, "switch", timeout=120)
    finally:
        stop.set()
        trains.join(timeout=60)
    assert switched.returncode == 0, switched.stdout + switched.stderr
    record = last_switch(stack)
    failed = [a for _, a in answers if isinstance(a, Exception) or a.status_code != 200]
    assert failed == [], failed
    across = [a for at, a in answers if a.headers["X-Cutover-Colour"] == old and at > record["flipped_at"]]
    assert across, f"no slow request on {old} was in flight at the flip"
    # Within the budget: drained by itself, the hook was not needed.
    assert record["drained"] is True and "drain hook" not in switched.stdout, switched.stdout
    print(f"{len(answers)} slow requests (2 s) all answered 200; {len(across)} were in flight on {old} at the flip; "
          f"drain took {record['drain_seconds']}s")

    after = read_stream(f"{LIVE}/events?count=3")
    assert after.problems == [] and after.colour == new, after.problems
    assert [d["n"] for _, d in after.ticks] == [1, 2, 3] and after.end["reason"] == "done", after.end


def test_a_container_stopped_gracefully_ends_its_streams_with_the_final_event(stack):
    idle = other_colour(live_colour())
    stream = Stream()
    reader = threading.Thread(target=read_stream, args=(f"{PREVIEW}/events?count=600", stream), daemon=True)
    reader.start()
    wait_for(lambda: len(stream.ticks) >= 2, 30, f"a stream flowing from {idle} on the preview port")
    container = app_container(stack, idle)
    began = time.monotonic()
    container.stop(timeout=40)  # SIGTERM, as a deploy replacing the container sends it
    stopped_after = time.monotonic() - began
    reader.join(timeout=30)
    assert stream.problems == [] and stream.colour == idle, stream.problems
    assert stream.end["reason"] == "shutdown", stream.end
    print(f"{container.name} stopped in {stopped_after:.2f}s (grace 40 s); its stream ended with the final event after {len(stream.ticks)} ticks")
    restored = cli(stack, "up", timeout=600)
    assert restored.returncode == 0, restored.stdout + restored.stderr
