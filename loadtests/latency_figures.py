"""The pure figures of loadtests.proxy_cost and loadtests.demo_latency: no Docker, no wrk, no Locust
(importing those modules imports Locust, which patches the standard library), so tests import this."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from loadtests.report import percentile
from simulator.errors import CutoverError

# The goals for the proxy, proxy/direct on the same machine in one run.
GOAL_RATE = 0.90
GOAL_P99 = 1.20


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    quantiles_us: list[int]
    cpu_s: float


@dataclass
class Run:
    target: str  # "proxy" or "direct"
    connections: int
    round: int
    requests: int
    seconds: float
    rps: float
    failures: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float | None] = field(default_factory=dict)  # % of one core over the run
    # Proxy runs: server connections the proxy opened vs requests it sent on an idle one (http-reuse).
    server_connects: int | None = None
    server_reuses: int | None = None


def merged_percentile(results: list[WrkResult], pct: float) -> float:
    """Pure: the pct-th percentile (ms) of several wrk processes' latencies, each process's quantile
    function weighted by its request count."""
    samples: list[tuple[int, float]] = []
    for r in results:
        if r.requests and r.quantiles_us:
            weight = r.requests / len(r.quantiles_us)
            samples.extend((q, weight) for q in r.quantiles_us)
    if not samples:
        return 0.0
    samples.sort()
    total = sum(w for _, w in samples)
    wanted, seen = total * pct / 100.0, 0.0
    for value, weight in samples:
        seen += weight
        if seen >= wanted - 1e-9:
            return round(value / 1000.0, 3)
    return round(samples[-1][0] / 1000.0, 3)


def parse_wrk_output(text: str) -> dict:
    """The JSON line our done() hook printed (wrk's own report comes before it)."""
    for line in reversed(text.splitlines()):
        if line.startswith('{"requests"'):
            return json.loads(line)
    raise CutoverError(f"wrk printed no figures: {text.strip()[-300:]!r}")


def split(connections: int, parts: int) -> list[int]:
    """Pure: ``connections`` over ``parts`` processes as evenly as whole numbers allow (none empty)."""
    base, extra = divmod(connections, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def summarise(runs: list[Run], connections: int) -> dict:
    """Pure: one concurrency's runs -> its row (rates averaged over rounds, latencies of the rounds' median)."""
    row: dict = {"connections": connections}
    for target in ("proxy", "direct"):
        mine = [r for r in runs if r.target == target and r.connections == connections]
        failures = sum(r.failures for r in mine)
        rps = sum(r.rps for r in mine) / len(mine)
        cpus: dict[str, float | None] = {}
        for key in mine[0].cpu:
            values = [r.cpu[key] for r in mine]
            cpus[key] = None if any(v is None for v in values) else round(sum(values) / len(values), 1)
        row[target] = {
            "rps": round(rps, 1),
            "max_rps_0_failures": round(rps, 1) if failures == 0 else None,
            "failures": failures,
            "p50_ms": round(sorted(r.p50_ms for r in mine)[len(mine) // 2], 3),
            "p99_ms": round(sorted(r.p99_ms for r in mine)[len(mine) // 2], 3),
            "cpu_percent": cpus,
            # CPU per request (ms): what each part spends on one request, robust to a busy machine
            # where rates and latencies mostly measure the wait for a CPU.
            "cpu_ms_per_request": {k: (round(10 * v / rps, 3) if v is not None and rps else None) for k, v in cpus.items()},
        }
        if target == "proxy" and all(r.server_connects is not None for r in mine):
            row[target]["server_connections_opened"] = sum(r.server_connects for r in mine)
            row[target]["server_connection_reuses"] = sum(r.server_reuses for r in mine)
    p, d = row["proxy"], row["direct"]
    row["ratios"] = {
        "rate": round(p["rps"] / d["rps"], 3) if d["rps"] else None,
        "p50": round(p["p50_ms"] / d["p50_ms"], 3) if d["p50_ms"] else None,
        "p99": round(p["p99_ms"] / d["p99_ms"], 3) if d["p99_ms"] else None,
    }
    r = row["ratios"]
    row["meets_goals"] = r["rate"] is not None and r["p99"] is not None and r["rate"] >= GOAL_RATE and r["p99"] <= GOAL_P99
    return row


def by_name(records) -> dict[str, dict]:
    """Pure: per request name, count, failures and p50/p99 of the successful ones."""
    names: dict[str, list] = {}
    for record in records:
        names.setdefault(record.name, []).append(record)
    out = {}
    for name, mine in sorted(names.items()):
        latencies = sorted(r.latency_ms for r in mine if not r.failed)
        out[name] = {"requests": len(mine), "failures": sum(r.failed for r in mine),
                     "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}
    return out


# Latency bands (ms) of demo_latency's histogram: fine below 50 ms, where ordinary requests are,
# and coarse above, where a fixed delay shows up as a cluster in one band.
BANDS_MS = (5, 10, 20, 50, 100, 200, 300, 400, 1000)


def latency_bands(records, edges=BANDS_MS) -> list[dict]:
    """Pure: successful requests counted per latency band, each band with its share of all of them
    and its requests by name (a delay hitting one kind of request shows as one name in one band)."""
    ok = [r for r in records if not r.failed]
    bounds = [0.0, *edges, float("inf")]
    bands = []
    for low, high in zip(bounds, bounds[1:]):
        mine = [r for r in ok if low <= r.latency_ms < high]
        names: dict[str, int] = {}
        for record in mine:
            names[record.name] = names.get(record.name, 0) + 1
        bands.append({"from_ms": low, "to_ms": None if high == float("inf") else high, "requests": len(mine),
                      "share": round(len(mine) / len(ok), 4) if ok else 0.0,
                      "by_name": dict(sorted(names.items(), key=lambda item: -item[1]))})
    return bands
