"""Where a switch spends its time before the flip: ``python -m loadtests.switch_profile --stack S``.

Runs ``--switches`` real switches (``Simulator.switch``, preflight, flip, watch, drain) on a stack
that is up, and for each one measures "command to flip" (from the call until the proxy confirmed
the new live colour, the figure `make bench` calls time to all-new for its cutover way), the
Docker API calls and ``docker exec`` runs made before the flip, and timed spans of the steps that
read the world (lock, ledger, status, HAProxy, schema, smoke test). It prints the median switch's
timeline and the figures, and writes them to ``--json``.

``--compare REF`` profiles the tree at git REF as well (exported to a temporary directory and run
in a child process with that tree first on the path), alternating with this tree round by round
on the same stack: before and after, side by side, in one run. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# (module, class or None, attribute, span name): the steps timed, where the tree has them (an
# older tree may lack some; they are skipped).
SPANS = [
    ("simulator.ledger", "Ledger", "acquire", "lock"),
    ("simulator.ledger", "Ledger", "read", "ledger read"),
    ("simulator.ledger", "Ledger", "append", "ledger append"),
    ("simulator.operations", "Simulator", "refuse_foreign_stack", "ownership"),
    ("simulator.operations", "Simulator", "repair_leftovers", "leftovers"),
    ("simulator.operations", "Simulator", "ledger_snapshot", "ledger snapshot"),
    ("simulator.operations", "Simulator", "status", "status"),
    ("simulator.operations", "Simulator", "_preflight", "preflight"),
    ("simulator.operations", None, "smoke_test", "smoke test"),
    ("simulator.schema", "DescribedSchema", "incompatibility", "schema check"),
    ("simulator.proxy_api", "ProxyAPI", "switch_to", "flip"),
    ("simulator.proxy_api", "ProxyAPI", "watch_sample", "watch sample"),
]


MAX_REFUSALS = 3


class Recorder:
    def __init__(self) -> None:
        self.t0 = 0.0
        self.spans: list[dict] = []
        self.execs: list[dict] = []
        self.api_calls = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        self.t0 = time.monotonic()
        self.spans, self.execs, self.api_calls = [], [], 0

    def add(self, kind: list, **row) -> None:
        with self.lock:
            kind.append(row)


def _timed(recorder: Recorder, name: str, function):
    @functools.wraps(function)
    def run(*args, **kwargs):
        began = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            recorder.add(recorder.spans, name=name, start=round(began - recorder.t0, 3), seconds=round(time.monotonic() - began, 3),
                         thread=threading.current_thread().name)
    return run


def instrument(recorder: Recorder) -> None:
    import importlib

    import docker.api.client
    import docker.models.containers

    for module_name, class_name, attribute, name in SPANS:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name, None) if class_name else module
        if owner is not None and hasattr(owner, attribute):
            setattr(owner, attribute, _timed(recorder, name, getattr(owner, attribute)))
    exec_run = docker.models.containers.Container.exec_run

    def counted_exec(self, cmd, *args, **kwargs):
        began = time.monotonic()
        try:
            return exec_run(self, cmd, *args, **kwargs)
        finally:
            line = cmd if isinstance(cmd, str) else " ".join(cmd)
            recorder.add(recorder.execs, command=line[:70], start=round(began - recorder.t0, 3), seconds=round(time.monotonic() - began, 3))
    docker.models.containers.Container.exec_run = counted_exec
    send = docker.api.client.APIClient.send

    def counted_send(self, *args, **kwargs):
        with recorder.lock:
            recorder.api_calls += 1
        return send(self, *args, **kwargs)
    docker.api.client.APIClient.send = counted_send


def profile(stack: str, switches: int) -> list[dict]:
    """``switches`` switches on ``stack`` (this process's tree), one record each."""
    recorder = Recorder()
    instrument(recorder)
    from simulator.errors import CutoverError
    from simulator.operations import Simulator

    sim = Simulator.for_stack(stack, say=lambda line: None)
    runs = []
    for _ in range(switches):
        refused = 0
        while True:
            recorder.reset()
            called = time.time()
            try:
                result = sim.switch()
                break
            except CutoverError as exc:
                # On a saturated machine Docker's health command (2 s timeout) can fail on a colour
                # that serves fine, and the preflight refuses: counted, waited on, tried again.
                if "refusing" not in str(exc) or refused >= MAX_REFUSALS:
                    raise
                refused += 1
                wait_healthy(sim)
        flip = result.flipped_at - called
        before = [s for s in recorder.spans if s["start"] <= flip]
        execs = [e for e in recorder.execs if e["start"] <= flip]
        runs.append({
            "command_to_flip_s": round(flip, 3), "total_s": round(time.time() - called, 3), "to": result.to_colour, "refused_before": refused,
            "execs_before_flip": len(execs), "exec_seconds_before_flip": round(sum(e["seconds"] for e in execs), 3),
            "api_calls": recorder.api_calls, "spans": sorted(before, key=lambda s: s["start"]), "execs": execs,
        })
    return runs


def wait_healthy(sim, deadline_s: float = 90.0) -> None:
    """Until both colours' containers are healthy in Docker again (bounded)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if all(p.healthy == p.total for p in sim.status().pools.values()):
            return
        time.sleep(0.5)


def summary(label: str, runs: list[dict]) -> dict:
    flips = [r["command_to_flip_s"] for r in runs]
    return {
        "tree": label, "switches": len(runs),
        "command_to_flip_p50_s": round(statistics.median(flips), 3), "command_to_flip_max_s": max(flips),
        "execs_before_flip_p50": statistics.median(r["execs_before_flip"] for r in runs),
        "api_calls_p50": statistics.median(r["api_calls"] for r in runs),
        "refused": sum(r.get("refused_before", 0) for r in runs),
    }


def show(label: str, runs: list[dict]) -> None:
    median = sorted(runs, key=lambda r: r["command_to_flip_s"])[len(runs) // 2]
    print(f"\n{label}: the median switch, {median['command_to_flip_s']:.2f}s command to flip, "
          f"{median['execs_before_flip']} docker exec ({median['exec_seconds_before_flip']:.2f}s of them) before the flip")
    for span in median["spans"]:
        where = "" if span["thread"] == "MainThread" else f"  [{span['thread']}]"
        print(f"  {span['start']:6.2f}s  +{span['seconds']:5.2f}s  {span['name']}{where}")


def export_tree(ref: str, directory: Path) -> Path:
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(root), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def child(tree: Path, stack: str, switches: int, stacks_dir: Path) -> list[dict]:
    """Profile ``tree`` (another checkout) in a child process: its simulator first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree), "CUTOVER_STACKS_DIR": str(stacks_dir)}
    out = subprocess.run([sys.executable, __file__, "--worker", "--stack", stack, "--switches", str(switches)],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"profiling {tree} failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.switch_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="a stack that is up (both colours healthy, same version or not)")
    parser.add_argument("--switches", type=int, default=6, help="switches per tree and round (default 6)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating the trees (default 2)")
    parser.add_argument("--compare", metavar="REF", help="also profile the tree at this git ref (before), alternating with this one")
    parser.add_argument("--json", default="switch-profile/results.json", help="where the figures go")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.switches < 1 or args.rounds < 1:
        print("--switches and --rounds must be at least 1.", file=sys.stderr)
        return 1
    if args.worker:
        print(json.dumps(profile(args.stack, args.switches)))
        return 0
    from stacks.spec import stacks_dir_in_use

    here = Path(__file__).resolve().parent.parent
    runs: dict[str, list[dict]] = {"this tree": []}
    with tempfile.TemporaryDirectory(prefix="switch-profile-") as temporary:
        before = export_tree(args.compare, Path(temporary)) if args.compare else None
        if before is not None:
            runs[f"before ({args.compare})"] = []
        for round_ in range(args.rounds):
            if before is not None:
                runs[f"before ({args.compare})"] += child(before, args.stack, args.switches, stacks_dir_in_use())
            runs["this tree"] += child(here, args.stack, args.switches, stacks_dir_in_use())
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    for label, found in runs.items():
        show(label, found)
    summaries = [summary(label, found) for label, found in runs.items()]
    print()
    for s in summaries:
        print(f"{s['tree']:>24}: command to flip p50 {s['command_to_flip_p50_s']:.2f}s (max {s['command_to_flip_max_s']:.2f}s) over "
              f"{s['switches']} switches; {s['execs_before_flip_p50']:g} docker exec before the flip, {s['api_calls_p50']:g} Docker API calls in all"
              + (f"; {s['refused']} preflight refusal(s) waited out" if s["refused"] else ""))
    load = os.getloadavg()
    print(f"load average while measured: {load[0]:.2f} (1 min) on {os.cpu_count()} cores")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stack": args.stack, "load_average_1m": load[0], "summaries": summaries, "runs": runs}, indent=1))
    print(f"figures written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
