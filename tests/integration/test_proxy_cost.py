"""The short forms of make proxy-cost and make demo-latency (the full runs are theirs), against the
ci stack: each runs, prints and writes its figures. No speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import docker
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.docker


def test_proxy_cost_short_run_prints_and_writes_figures(ci_stack, tmp_path):
    out = tmp_path / "proxy-cost.json"
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.proxy_cost", "--stack", ci_stack.stack, "--concurrency", "2,4",
         "--seconds", "1", "--warmup", "0", "--rounds", "1", "--path", "/version", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "proxy cost" in result.stdout and "rate ratio" in result.stdout
    figures = json.loads(out.read_text())
    assert [row["connections"] for row in figures["rows"]] == [2, 4]
    for row in figures["rows"]:
        assert row["proxy"]["rps"] > 0 and row["direct"]["rps"] > 0
        assert row["ratios"]["rate"] is not None and row["ratios"]["p99"] is not None
    # The direct containers are gone again.
    left = docker.from_env().containers.list(all=True, filters={"name": f"cutover-{ci_stack.stack}-proxy-cost-direct"})
    assert left == []


def test_demo_latency_short_run_prints_and_writes_figures(ci_stack, tmp_path):
    """make demo-latency's short form: the rehearsal's users for a second, the histogram by request
    name in the figures (no speed asserted)."""
    out = tmp_path / "demo-latency.json"
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.demo_latency", "--stack", ci_stack.stack, "--users", "4", "--seconds", "1",
         "--warmup", "0", "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "latency histogram" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["requests"] > 0 and figures["failures"] == 0
    assert sum(band["requests"] for band in figures["latency_bands"]) == figures["requests"]
    assert "GET /version" in figures["by_name"]


def test_proxy_cost_measures_a_variant_config_in_the_same_run_and_puts_the_shipped_one_back(ci_stack, tmp_path):
    from simulator.proxy_api import ProxyAPI
    from stacks.proxy_config import HAPROXY_CONFIG_PATH, render_base_config
    from stacks.topology import proxy_container_name

    variant = tmp_path / "nbthread1.cfg"
    variant.write_text(render_base_config().replace("    maxconn 4096\n", "    maxconn 4096\n    nbthread 1\n", 1))
    out = tmp_path / "proxy-cost.json"
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.proxy_cost", "--stack", ci_stack.stack, "--concurrency", "2", "--seconds", "1",
         "--warmup", "0", "--rounds", "1", "--path", "/version", "--variant-config", str(variant), "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    assert {run["target"] for run in figures["runs"]} == {"proxy", "direct", "variant"}
    assert figures["variant_rows"][0]["proxy"]["rps"] > 0 and figures["variant_rows"][0]["ratios"]["rate"] is not None
    proxy = docker.from_env().containers.get(proxy_container_name(ci_stack))
    assert proxy.exec_run(["cat", HAPROXY_CONFIG_PATH]).output.decode() == render_base_config()
    info = ProxyAPI(proxy).command("show info")
    assert "Nbthread: 1" not in info  # the shipped config's worker, not the variant's
