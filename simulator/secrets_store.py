"""The simulator's secret store: one 0600 file per secret in the stack's state directory.

Values are generated once and reused (the database volume keeps the password it was created
with); they are handed to containers as environment and never printed, logged or shown in status.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Callable

from simulator.ledger import state_dir


class SecretStore:
    def __init__(self, stack: str, recover: Callable[[str], str | None] = lambda name: None) -> None:
        """``recover(name)`` finds a secret already in use (e.g. in a running container) when this
        state directory has none, or raises when one must exist but cannot be found."""
        self.directory = state_dir(stack) / "secrets"
        self._recover = recover

    def get(self, name: str) -> str:
        path = self.directory / name
        if not path.exists():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Letters and digits only: safe in URLs, environment and SQL literals alike.
            value = self._recover(name) or secrets.token_hex(24)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(value)
        return Path(path).read_text().strip()

    def forget_all(self) -> None:
        """Drop every secret (with the volumes that were created with them)."""
        if self.directory.exists():
            for path in self.directory.iterdir():
                path.unlink()
