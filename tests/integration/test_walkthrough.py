"""The README's "deploy your own app" walkthrough, run exactly as written: a reader pastes that block
into a shell, so the block itself is the test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, remove_app_images, run_cli

pytestmark = pytest.mark.docker


def walkthrough_block() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough:start -->\n```sh\n(.*?)```\n<!-- walkthrough:end -->", readme, re.DOTALL)
    assert match, "README.md has no walkthrough block between its markers"
    return match.group(1)


def test_the_readme_walkthrough_runs_as_written(tmp_path, state_dir):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CUTOVER_STACKS_DIR", None)
    remove_app_images("hello")  # a reader starts with none of the walkthrough's artefacts
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough_block()],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        )
        print(result.stdout[-3000:])
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # The smoke-tested preview served the new release; the rehearsal passed; the stack is gone.
        assert "Hello from release 2.0.0" in result.stdout
        assert "x-cutover-version: 1.0.0" in result.stdout.lower()
        assert "PASSED: no request dropped" in result.stdout
        assert "stack hello: removed" in result.stdout
    finally:
        run_cli("--stacks-dir", str(tmp_path / "hello"), "down", "--stack", "hello", "--volumes")
