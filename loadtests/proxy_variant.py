"""proxy_cost's ``--variant-config``: another HAProxy base config, measured in the same run as the shipped one.

A proxy setting (nbthread, http-reuse, a timeout) is judged by the proxy/direct ratios with and
without it; across two runs of a busy machine the noise is larger than the effect. So the variant is
loaded into the stack's running proxy for its own runs and the shipped config is put back for the
others: the same master-worker reload a backend change uses (the servers' states are handed over),
checked with ``haproxy -c`` first. The shipped config is restored whatever happens.
"""

from __future__ import annotations

import time
from pathlib import Path

from simulator.docker_driver import _tar_one_file
from simulator.errors import CutoverError
from simulator.proxy_api import ProxyAPI
from stacks.proxy_config import BACKENDS_DIR, COLOUR_MAP_DIR, HAPROXY_CONFIG_PATH, render_base_config

RELOAD_TIMEOUT_S = 30.0
CHECK = f"haproxy -c -q -f {HAPROXY_CONFIG_PATH} -f {BACKENDS_DIR}/blue.cfg -f {BACKENDS_DIR}/green.cfg"
# What proxy-backend does after writing a backend: the running worker's server states for the new
# worker, then SIGUSR2 to the master.
RELOAD = (". /usr/local/lib/cutover/proxy-lib.sh && admin 'show servers state' > /run/haproxy/server-state.tmp "
          "&& mv /run/haproxy/server-state.tmp /run/haproxy/server-state && kill -USR2 \"$(cat /run/haproxy/haproxy.pid)\"")


def read_variant(path: str) -> str:
    """The variant file's text; it must be a whole base config (the shipped one is render_base_config())."""
    text = Path(path).read_text()
    if "frontend live" not in text or "defaults" not in text:
        raise CutoverError(f"--variant-config {path} is not a whole HAProxy base config (start from the shipped one: "
                           f"python -c 'from stacks.proxy_config import render_base_config as r; print(r())').")
    return text


class ProxyConfigs:
    """Swaps the running proxy's base config between the shipped text and a variant."""

    def __init__(self, container, variant: str) -> None:
        self.container = container
        self.api = ProxyAPI(container)
        self.texts = {"shipped": render_base_config(), "variant": variant}
        # Unknown until the first use(): the running proxy may hold a variant an interrupted run left.
        self.current: str | None = None

    def _worker_pid(self) -> str:
        info = self.api.command("show info")
        return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Pid:")), "")

    def use(self, which: str) -> None:
        if which == self.current:
            return
        # put_archive goes through the engine onto the state volume (the proxy's root is read-only).
        self.container.put_archive(COLOUR_MAP_DIR, _tar_one_file("haproxy.cfg", self.texts[which]))
        check = self.container.exec_run(["sh", "-c", CHECK])
        if check.exit_code != 0:
            self.container.put_archive(COLOUR_MAP_DIR, _tar_one_file("haproxy.cfg", self.texts[self.current]))
            raise CutoverError(f"HAProxy refuses the {which} config: {check.output.decode(errors='replace').strip()[:300]}")
        before = self._worker_pid()
        result = self.container.exec_run(["sh", "-c", RELOAD])
        if result.exit_code != 0:
            raise CutoverError(f"the proxy did not reload: {result.output.decode(errors='replace').strip()[:300]}")
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                now = self._worker_pid()
            except CutoverError:  # the admin socket between the old worker and the new one
                now = ""
            if now and now != before:
                self.current = which
                return
            time.sleep(0.1)
        raise CutoverError(f"the proxy's new worker did not answer within {RELOAD_TIMEOUT_S:.0f}s after loading the {which} config")

    def restore(self) -> None:
        self.use("shipped")
