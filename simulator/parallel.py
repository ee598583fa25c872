"""Independent reads at once: each Docker API call or ``docker exec`` is a round trip to the engine
(and a process in a container), so reads that do not depend on each other should not queue."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads and return their results in order. Every call runs to its end; the
    first failure, in the order given, is raised after all of them are done (nothing is left
    running behind the caller's back)."""
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="cutover-read") as pool:
        futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]
