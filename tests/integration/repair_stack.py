"""The `repair` stack the interrupted-command tests share (one module at a time), and the CLI
against it, as a user runs it: `cutover --stacks-dir DIR COMMAND --stack repair ...`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

STACK = "repair"
LIVE_PORT = 19720  # and 19721, the preview


def command(stacks: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "simulator", "--stacks-dir", str(stacks), args[0], "--stack", STACK, *args[1:]]


def cli(stacks: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command(stacks, *args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
