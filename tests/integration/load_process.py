"""A bounded Locust read load in a process of its own (Locust's gevent patches the stdlib):
``python -m tests.integration.load_process --stack S --users N --max-seconds T --ready R --stop F --out O``.

It writes ``R`` once the load has sent its first requests, runs until ``F`` exists (or its time
budget ends), then writes every request (start, end, status, colour and version that served it) to ``O``.
"""

from __future__ import annotations

from loadtests.runner import LoadRun  # noqa: I001  (Locust must patch the standard library first)

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import gevent

from loadtests.users import excluded_tags, rehearsal_users
from stacks.spec import load_stack


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in ("--stack", "--ready", "--stop", "--out"):
        parser.add_argument(option, required=True)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=90)
    args = parser.parse_args()
    spec = load_stack(args.stack)
    load = LoadRun(spec.live_url(), args.users, max_seconds=args.max_seconds, max_requests=200_000,
                   user_classes=rehearsal_users(spec.app), exclude_tags=excluded_tags("read"))
    load.start()
    ready, stop = Path(args.ready), Path(args.stop)
    while load.running and not stop.exists():
        if len(load.records) >= 50 and not ready.exists():
            ready.write_text("ready")
        gevent.sleep(0.05)
    load.stop()
    Path(args.out).write_text(json.dumps({"stopped_because": load.stopped_because, "records": [asdict(r) for r in load.records]}))


if __name__ == "__main__":
    main()
