"""The switch, and the version stamps: the commands run inside the proxy, and their environment
(pure, no resources).

The live colour appears here and nowhere in a container's inputs. pulumi-command re-runs ``create``
whenever the environment changes (no ``update`` command is set), so `pulumi config set
cutover:liveColor green && pulumi up` is one runtime-API flip inside the running proxy: no reload,
no container restart.
"""

from __future__ import annotations

import shlex

from stacks.spec import StackSpec


def switch_command_args(spec: StackSpec, proxy_container_name: str) -> dict[str, object]:
    return {
        # The colour comes from the environment, not the command text, so the command never
        # changes and a typo cannot smuggle shell syntax into it.
        "create": f'docker exec {shlex.quote(proxy_container_name)} proxy-switch "$LIVE_COLOR"',
        "environment": {"LIVE_COLOR": spec.live_colour, "DOCKER_HOST": spec.docker_host},
    }


def version_command_args(spec: StackSpec, proxy_container_name: str, colour: str, version: str) -> dict[str, object]:
    """Tell the proxy which version ``colour`` runs: it stamps it on every response of that colour
    (the X-Cutover-Version header, from its runtime version map), so no app has to say it.

    The same ``proxy-version`` the simulator runs after a deploy; re-run whenever ``VERSION`` changes.
    """
    if colour not in ("blue", "green"):  # a wiring bug: the colour is part of the command text
        raise ValueError(f"not a colour: {colour!r}")
    return {
        "create": f'docker exec {shlex.quote(proxy_container_name)} proxy-version {colour} "$VERSION"',
        "environment": {"VERSION": version, "DOCKER_HOST": spec.docker_host},
    }
