"""The release gates, one copy for both paths: `cutover deploy` (simulator/operations.py) and the
Pulumi program's gate resources (components/release_gates.py) call these very functions.

- the lint gate of pending expand steps: ``Schema.lint_gate`` (simulator/schema.py), before any
  migration runs;
- the live version's smoke checks and write/read probe after expand: :func:`live_after_expand`;
- the smoke test of a colour before it takes live traffic: :func:`release_checks`.

Each raises ``CutoverError`` with one sentence when its gate fails.
"""

from __future__ import annotations

from typing import Callable

from simulator.docker_driver import DockerDriver
from simulator.proxy_api import ProxyAPI
from simulator.smoke import probe_write, smoke_test
from stacks.spec import StackSpec
from stacks.topology import proxy_container_name


def release_checks(spec: StackSpec, base_url: str, colour: str, version: str, label: str) -> list[str]:
    """The app's declared smoke checks through ``base_url`` (enough rounds to reach every server,
    each answer stamped ``colour`` ``version`` by the proxy), then its write probe; the servers seen."""
    servers = smoke_test(base_url, spec.app.smoke, colour, version, rounds=2 * spec.pool_size)
    if spec.app.write_probe is not None:
        probe_write(base_url, spec.app.write_probe, label)
    return servers


def live_release(driver: DockerDriver) -> tuple[str | None, str | None, str | None]:
    """(live colour, the version its pool runs, that pool's image ID) as the stack is now: the
    colour from the proxy's map, the rest from the containers' labels. All None without a running
    proxy; version and image None when the live colour has no (or a mixed) pool."""
    observed = driver.observe()
    proxy = observed.containers.get(proxy_container_name(driver.spec))
    if proxy is None or not proxy.running:
        return None, None, None
    live = ProxyAPI(driver.container(proxy.name)).colours()["live"]
    return live, observed.pool_version(live), observed.pool_image(live)


def live_after_expand(spec: StackSpec, live: str | None, live_version: str | None, applied: list[str], say: Callable[[str], None]) -> bool:
    """After expand steps were applied: the live version must still work on the migrated schema
    (its smoke checks and write probe through the live port). False when there was nothing to check
    (no step applied, or nothing live)."""
    if not applied or not live or not live_version:
        return False
    release_checks(spec, spec.live_url(), live, live_version, f"live {live_version} after {applied[-1]}")
    say(f"live version {live_version} still passes its smoke checks{' and write probe' if spec.app.write_probe else ''} on the migrated schema")
    return True
