"""Draining a colour taken out of service: wait for its open requests, then ask the app to end the rest.

Ordinary requests finish within the drain budget (``cutover:drainSeconds``); long-lived ones
(server-sent events, long polls) never do by themselves. When the budget runs out with requests
still open and the app definition declares a drain hook (``drain.command``), the hook runs in each
of the colour's containers, all at once, and the drain waits up to ``drain.close_seconds`` more for
the app to close them at a message boundary. Without a hook, what is still open is left to the
container's graceful stop (or to the next switch).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable

import docker.errors

from stacks.app import Drain

POLL_S = 0.1


@dataclass
class DrainOutcome:
    drained: bool  # nothing of the colour is open any more
    hook_ran_in: list[str]  # containers the drain hook was run in (none while the budget sufficed)
    hook_failures: list[str]  # one sentence per container where it did not exit 0


def wait_closed(open_requests: Callable[[], int], deadline_s: float) -> bool:
    """Poll until nothing is open (True) or the deadline passes (False)."""
    end = time.monotonic() + deadline_s
    while open_requests() > 0:
        if time.monotonic() > end:
            return False
        time.sleep(POLL_S)
    return True


def drain(
    open_requests: Callable[[], int],
    budget_s: float,
    hook: Drain | None,
    containers: Callable[[], list[str]],
    exec_in: Callable[[str, tuple[str, ...]], tuple[int, str]],
) -> DrainOutcome:
    """Wait up to ``budget_s`` for ``open_requests()`` to reach 0; then run ``hook`` in each of
    ``containers()`` (through ``exec_in``, which returns exit code and output) and wait up to the
    hook's ``close_seconds`` more."""
    if wait_closed(open_requests, budget_s):
        return DrainOutcome(True, [], [])
    if hook is None:
        return DrainOutcome(False, [], [])
    names = containers()
    failures = run_hook(names, hook, exec_in)
    return DrainOutcome(wait_closed(open_requests, hook.close_seconds), names, failures)


def run_hook(names: list[str], hook: Drain, exec_in: Callable[[str, tuple[str, ...]], tuple[int, str]]) -> list[str]:
    """Run the hook in every container at once; one that has not answered within ``close_seconds``
    is reported and left behind (its thread ends with the exec), so a stuck hook cannot hold up a switch."""
    failures = []
    pool = ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="drain-hook")
    try:
        runs = {pool.submit(exec_in, name, hook.command): name for name in names}
        done, not_done = wait(runs, timeout=hook.close_seconds)
        for future in not_done:
            failures.append(f"the drain hook did not finish within {hook.close_seconds}s in {runs[future]}")
        for future in done:
            name = runs[future]
            try:
                code, output = future.result()
            except docker.errors.DockerException as exc:
                failures.append(f"the drain hook could not run in {name}: {exc.__class__.__name__}")
                continue
            if code != 0:
                last = (output.strip().splitlines() or ["no output"])[-1]
                failures.append(f"the drain hook exited {code} in {name}: {last}")
    finally:
        pool.shutdown(wait=False)
    return failures


def docker_exec(client: docker.DockerClient) -> Callable[[str, tuple[str, ...]], tuple[int, str]]:
    """``exec_in`` for real containers: the command runs as the container's own user."""

    def exec_in(name: str, command: tuple[str, ...]) -> tuple[int, str]:
        result = client.containers.get(name).exec_run(list(command))
        return result.exit_code, result.output.decode(errors="replace")

    return exec_in
