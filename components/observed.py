"""What the proxy says right now, read while the program runs: which colour is live, which version
each colour was stamped with, how many servers each colour's backend has.

The program needs it *before* it declares anything, because resource options (``ignore_changes``
on the colour that serves traffic) are fixed at registration. pulumi-command's ``local.run``
invoke runs at program time, in ``pulumi preview`` and ``pulumi up`` alike, so it reads the real
proxy through the same ``docker`` CLI (and ``DOCKER_HOST``) the switch uses. Parsing is pure
(``parse_proxy_state``); only ``read_proxy_state`` touches the engine.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi
from pulumi_command import local

from stacks.spec import COLOURS, StackSpec


class ObservedStateError(ValueError):
    """The proxy exists but its state could not be read or understood."""


@dataclass(frozen=True)
class ObservedState:
    """``live`` is None when there is no proxy yet (the stack's first ``up``): nothing serves."""

    live: str | None = None
    # Colour -> the version the proxy stamps on its responses; a colour never stamped is absent.
    versions: Mapping[str, str] = field(default_factory=dict)
    # Colour -> number of servers in its backend (0 or absent: unknown / empty).
    server_totals: Mapping[str, int] = field(default_factory=dict)


NOTHING_LIVE = ObservedState()


# What an older proxy image (cutover-proxy:2, before proxy-state) is asked instead, so the first `up`
# after an upgrade still knows which colour serves: its colour and version maps and its config's
# server lines, all on its state volume, behind a marker line.
LEGACY_MARKER = "cutover-legacy-proxy"
_STATE_DIR = "/var/lib/haproxy/state"
_LEGACY_READ = (
    f"echo {LEGACY_MARKER}; cat {_STATE_DIR}/colours.map; echo --versions--; cat {_STATE_DIR}/versions.map 2>/dev/null || true; "
    f"echo --servers--; grep -E '^[[:space:]]+server[[:space:]]' {_STATE_DIR}/haproxy.cfg || true"
)


def state_command(proxy_container_name: str) -> str:
    """The shell command behind the invoke.

    ``docker ps`` fails when the engine cannot be reached, and then so does the invoke: an engine we
    cannot see must never look like "no proxy yet", or the first-``up`` rules (nothing live, nothing
    held back) would apply to a stack that is serving traffic. A missing proxy container prints
    ``{}``; an existing one answers with its own ``proxy-state`` (one JSON line), or, an older image
    without it, with its state files. A stopped proxy fails the ``docker exec``, and so the invoke.
    """
    name = shlex.quote(proxy_container_name)
    return (
        "set -e; "
        f'found=$(docker ps --all --quiet --filter "name=^/{proxy_container_name}$"); '
        'if [ -z "$found" ]; then echo "{}"; '
        f"elif docker exec {name} sh -c 'command -v proxy-state' >/dev/null; then docker exec {name} proxy-state; "
        f"else docker exec {name} sh -c {shlex.quote(_LEGACY_READ)}; fi"
    )


def _parse_legacy(text: str) -> ObservedState:
    colours, _, rest = text.partition("--versions--")
    versions, _, servers = rest.partition("--servers--")
    pairs = [line.split() for line in colours.splitlines()[1:]]
    live = next((words[1] for words in pairs if len(words) == 2 and words[0] == "live"), None)
    if live not in COLOURS:
        raise ObservedStateError(f"the proxy's colour map names no live colour (blue or green): {colours.strip()[:200]!r}")
    stamped = {w[0]: w[1] for w in (line.split() for line in versions.splitlines()) if len(w) == 2 and w[0] in COLOURS and w[1] != "unknown"}
    totals: dict[str, int] = {}
    for line in servers.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "server" and words[1].rsplit("-", 1)[0] in COLOURS:
            colour = words[1].rsplit("-", 1)[0]
            totals[colour] = totals.get(colour, 0) + 1
    return ObservedState(live=live, versions=stamped, server_totals=totals)


def parse_proxy_state(text: str) -> ObservedState:
    """``proxy-state``'s JSON line (or ``{}`` for no proxy, or an older proxy's state files) as an
    ObservedState."""
    if text.lstrip().startswith(LEGACY_MARKER):
        return _parse_legacy(text.lstrip())
    try:
        document: Any = json.loads(text.strip() or "{}")
    except json.JSONDecodeError as exc:
        raise ObservedStateError(f"proxy-state printed something that is not JSON: {text.strip()[:200]!r} ({exc.msg})") from None
    if not isinstance(document, dict):
        raise ObservedStateError(f"proxy-state printed {type(document).__name__}, not a JSON object")
    if not document:
        return NOTHING_LIVE
    live = document.get("live")
    if live not in COLOURS:
        raise ObservedStateError(f"proxy-state names no live colour (blue or green): {live!r}")
    versions = document.get("versions") or {}
    servers = document.get("servers") or {}
    if not isinstance(versions, dict) or not isinstance(servers, dict):
        raise ObservedStateError("proxy-state's versions and servers must be JSON objects")
    totals = {}
    for colour, counts in servers.items():
        total = counts.get("total") if isinstance(counts, dict) else None
        if colour in COLOURS and isinstance(total, int) and total > 0:
            totals[colour] = total
    return ObservedState(
        live=live,
        versions={c: str(v) for c, v in versions.items() if c in COLOURS and v},
        server_totals=totals,
    )


def read_proxy_state(spec: StackSpec, proxy_container_name: str) -> ObservedState:
    """Ask the stack's engine (blocking: the answer decides how resources are registered)."""
    try:
        result = local.run(
            command=state_command(proxy_container_name),
            environment={"DOCKER_HOST": spec.docker_host},
        )
        return parse_proxy_state(result.stdout or "")
    except ObservedStateError as exc:
        raise pulumi.RunError(f"could not read which colour is live from {proxy_container_name}: {exc}.") from None
    except Exception as exc:  # the invoke failed: the engine is unreachable or proxy-state failed
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise pulumi.RunError(
            f"could not read which colour is live from {proxy_container_name} on {spec.docker_host} ({first_line}); "
            "nothing was changed."
        ) from None


def observed_summary(observed: ObservedState) -> Mapping[str, Any]:
    """For the stack's outputs: what the program saw before it decided anything."""
    return {"live": observed.live, "versions": dict(observed.versions)}
