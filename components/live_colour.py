"""LiveColour: the live colour as a resource whose read observes the proxy (a Pulumi dynamic provider).

The switch used to be a ``local.Command``: it flipped the proxy when its inputs changed and never
looked again, so a flip made outside Pulumi (``cutover switch``, by hand) stayed invisible. Here
- ``create``/``update`` flip the proxy with ``proxy-switch --wait <s> <colour>`` (``docker exec``
  into the proxy on the stack's ``docker:host``), refused with one sentence, live colour unchanged,
  when the colour's servers are not all UP in HAProxy within the wait;
- ``read`` (``pulumi refresh``) puts the colour the proxy really routes to in the state, so a
  colour changed outside Pulumi shows as drift and the next ``pulumi up`` restores the configured
  one (``diff`` compares that observed colour with the configured one).

Until the proxy image has ``proxy-state`` and a health-checking ``proxy-switch --wait`` (issue 10
part 4), the provider reads the runtime API the way ``simulator/proxy_api.py`` does (it *is* that
code) and waits for the servers itself; with them, it uses them.

The provider runs in-process (the Python dynamic-provider host), so tests call its methods directly
against a real proxy; the Pulumi engine is not needed for that.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from stacks.spec import COLOURS

# How long create/update wait for the target colour's servers to be UP before refusing.
DEFAULT_WAIT_S = 60
# Inputs whose change means "flip again": the colour, where the proxy is, and the proxy container
# itself (a replaced proxy starts from the colour on its state volume).
FLIP_INPUTS = ("colour", "proxy", "docker_host", "proxy_id")
# `docker exec` of a program the image does not have (an older proxy image).
NOT_IN_IMAGE = (126, 127)


class SwitchRefused(Exception):
    """One sentence: why the colour was not made live (the live colour is unchanged)."""


@dataclass(frozen=True)
class ProxyView:
    live: str
    # colour -> (servers, servers UP, the ones not UP as "name STATUS (check)")
    servers: dict[str, tuple[int, int, tuple[str, ...]]]
    has_proxy_state: bool

    def ready(self, colour: str) -> bool:
        total, up, _ = self.servers.get(colour, (0, 0, ()))
        return total > 0 and up == total

    def why_not(self, colour: str) -> str:
        total, up, down = self.servers.get(colour, (0, 0, ()))
        if total == 0:
            return f"{colour} has no server in HAProxy"
        return f"{up} of {total} {colour} servers are UP in HAProxy" + (f" ({', '.join(down)})" if down else "")


def _proxy(docker_host: str, name: str):
    """The proxy container on the stack's engine, or None when it does not exist."""
    import docker.errors

    from simulator.docker_driver import connect

    try:
        return connect(docker_host).containers.get(name)
    except docker.errors.NotFound:
        return None


def observe(container) -> ProxyView:
    """What the proxy routes now: ``proxy-state`` (one JSON line) when the image has it, else the
    runtime API read as the simulator reads it (simulator/proxy_api.py)."""
    result = container.exec_run(["proxy-state"], demux=True)
    if result.exit_code == 0:
        state = json.loads((result.output[0] or b"").decode().strip().splitlines()[-1])
        servers = {c: (int(s.get("total", 0)), int(s.get("up", 0)), ()) for c, s in (state.get("servers") or {}).items()}
        return ProxyView(state["live"], servers, True)
    if result.exit_code not in NOT_IN_IMAGE:
        stderr = (result.output[1] or b"").decode(errors="replace").strip()
        raise SwitchRefused(f"proxy-state failed in {container.name} (exit {result.exit_code}): {stderr or 'no message'}.")
    from simulator.proxy_api import ProxyAPI

    api = ProxyAPI(container)
    by_backend = api.servers_by_backend()
    servers = {}
    for colour in COLOURS:
        members = by_backend.get(colour, [])
        servers[colour] = (len(members), sum(s.up for s in members), tuple(f"{s.server} {s.status} ({s.check})" for s in members if not s.up))
    return ProxyView(api.colours()["live"], servers, False)


def flip(docker_host: str, proxy: str, colour: str, wait_s: float) -> tuple[str, str]:
    """Make ``colour`` live, or raise :class:`SwitchRefused` leaving the live colour as it was.

    Returns (the colour live before, what proxy-switch printed)."""
    if colour not in COLOURS:
        raise SwitchRefused(f"liveColor must be one of {', '.join(COLOURS)}, got {colour!r}.")
    container = _proxy(docker_host, proxy)
    if container is None:
        raise SwitchRefused(f"the proxy container {proxy} does not exist on {docker_host}, so no colour can be made live.")
    view = observe(container)
    before = view.live
    if view.has_proxy_state:
        # The image's own switch waits for the colour's servers and refuses an unhealthy one.
        command = ["proxy-switch", "--wait", str(int(wait_s)), colour]
    else:
        # An older image's proxy-switch flips whatever the state: wait and check here instead.
        deadline = time.monotonic() + wait_s
        while not view.ready(colour) and time.monotonic() < deadline:
            time.sleep(0.5)
            view = observe(container)
        if not view.ready(colour):
            raise SwitchRefused(f"refusing to make {colour} live: after {wait_s:g}s {view.why_not(colour)}; {proxy} still sends live traffic to {before}.")
        command = ["proxy-switch", colour]
    result = container.exec_run(command, demux=True)
    stdout = (result.output[0] or b"").decode(errors="replace").strip()
    if result.exit_code != 0:
        stderr = (result.output[1] or b"").decode(errors="replace").strip().splitlines()
        reason = (stderr[-1] if stderr else f"proxy-switch exited {result.exit_code}").rstrip(".")
        raise SwitchRefused(f"{reason}; {proxy} still sends live traffic to {observe(container).live}.")
    return before, stdout


class LiveColourProvider(ResourceProvider):
    # Holds no secret (it has no state at all): keep the serialized provider readable in the state.
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(f"{props['proxy']}-live-colour", self._flip(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._flip(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        container = _proxy(props["docker_host"], props["proxy"])
        if container is None:
            # No proxy, no live colour: the resource is gone, and the next `up` creates it again.
            return ReadResult(None, {})
        observed = {**props, "colour": observe(container).live}
        # As outputs and as inputs: the next diff compares the configured colour with what is live.
        return ReadResult(id_, observed, observed)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in FLIP_INPUTS if olds.get(key) != news.get(key)]
        # Never a replacement: a flip is an update in place (and delete does nothing).
        return DiffResult(changes=bool(changed), replaces=[], stables=[], delete_before_replace=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Forgetting the resource must not move traffic: the proxy keeps its colour.
        return None

    def _flip(self, props: dict[str, Any]) -> dict[str, Any]:
        try:
            before, printed = flip(props["docker_host"], props["proxy"], props["colour"], float(props.get("wait_seconds") or DEFAULT_WAIT_S))
        except SwitchRefused:
            raise
        except Exception as exc:  # the engine, the exec: one sentence rather than a trace of ours
            raise SwitchRefused(f"could not make {props['colour']} live on {props['proxy']}: {exc}") from None
        # When this resource last ran proxy-switch: what the ledger record of the switch re-runs on.
        return {**props, "previous": before, "stdout": printed, "flipped_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class LiveColour(Resource, module="cutover", name="LiveColour"):
    """``colour`` is live on ``proxy``; ``previous``, ``stdout`` and ``flipped_at`` say what the last
    flip found, printed and when."""

    colour: pulumi.Output[str]
    previous: pulumi.Output[str]
    stdout: pulumi.Output[str]
    flipped_at: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        proxy: pulumi.Input[str],
        docker_host: str,
        colour: str,
        proxy_id: pulumi.Input[str],
        wait_seconds: int = DEFAULT_WAIT_S,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        props = {
            "proxy": proxy,
            "docker_host": docker_host,
            "colour": colour,
            "proxy_id": proxy_id,
            "wait_seconds": wait_seconds,
            "previous": None,
            "stdout": None,
            "flipped_at": None,
        }
        super().__init__(LiveColourProvider(), name, props, opts)
