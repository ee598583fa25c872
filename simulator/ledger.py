"""The audit ledger: one JSON line per stack operation, appended and fsynced before we return.

It records who did what to which stack, when, from what to what, and whether it worked, so a
cutover can be reconstructed after the fact. Records are only ever appended.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from simulator.errors import CutoverError


def state_dir(stack: str) -> Path:
    root = Path(os.environ.get("CUTOVER_STATE_DIR") or Path.home() / ".local/state/cutover")
    path = root / stack
    path.mkdir(parents=True, exist_ok=True)
    return path


class Ledger:
    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.path = state_dir(stack) / "audit.jsonl"

    def record(self, action: str, outcome: str, **details) -> dict:
        entry = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "stack": self.stack,
            "actor": _actor(),
            "action": action,
            "outcome": outcome,
            **details,
        }
        line = json.dumps(entry, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


@contextmanager
def stack_lock(stack: str) -> Iterator[None]:
    """One changing operation per stack at a time; a second one is refused, not queued.

    The lock lives beside the engine (one per machine), not in the state directory: two users, or
    two test runs with their own state directories, share the same containers.
    """
    directory = Path(tempfile.gettempdir()) / "cutover-locks"
    directory.mkdir(mode=0o1777, exist_ok=True)
    with open(directory / f"{stack}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CutoverError(f"another cutover command is changing stack {stack!r} right now; try again when it ends.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"
