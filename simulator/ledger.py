"""The audit ledger and the per-stack lock, both on the stack's own Docker engine.

**The ledger** is a named volume, ``cutover-<stack>-ledger``, holding ``audit.jsonl``: one JSON
object per line, written only by ``cutover-ledger append`` (images/state) running on the engine,
which under ``flock`` gives each record its ``seq``, the engine's ``time`` and ``prev``, the sha256
of the previous line's exact bytes, then fsyncs it and records the new head (seq and hash of the
last line) beside it. Every operator, every CI job and every state directory that drives the stack
appends to that one chain. The copy under ``$CUTOVER_STATE_DIR/<stack>/ledger-cache.jsonl`` is only
a cache, refreshed on every read, and a witness: ``verify`` checks the ledger still begins with it.

Every changing command appends a *start* record (phase ``start``) once it holds the lock and an
*end* record (phase ``end``, ``start_seq`` naming its start) whatever happens: ok, refused, failed,
interrupted. A start without an end is a command that died half-way; the next changing command
closes it with an ``interrupted`` end record and says so. A command refused by the lock writes one
end record with no start.

**The lock** is a container, ``cutover-<stack>-lock``: Docker refuses a second container of one
name, so creating it is the atomic test-and-set. Its labels name the holder (command, user@host,
pid, since); its heartbeat file is touched every few seconds by the holder, on the engine's clock.
A lock is stale, and released with one line saying so, when its container is not running, when its
holder ran on this machine and that process is gone, or when its heartbeat is older than
``CUTOVER_LOCK_STALE_SECONDS`` (60 by default). It is removed by its container ID, never by name, so
a lock released and taken again meanwhile is never removed by mistake.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import inspect
import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from simulator.errors import CutoverError, Refused
from stacks.ownership import MANAGED_BY, SIMULATOR

GENESIS = "0" * 64
LEDGER_MOUNT = "/ledger"
LEDGER_SCRIPT = "/usr/local/bin/cutover-ledger"
HEARTBEAT_S = 5.0
DEFAULT_STALE_S = 60.0
CACHE_FILE = "ledger-cache.jsonl"
OUTCOMES = ("ok", "refused", "failed", "interrupted")


def state_root() -> Path:
    return Path(os.environ.get("CUTOVER_STATE_DIR") or Path.home() / ".local/state/cutover")


def state_dir(stack: str) -> Path:
    path = state_root() / stack
    path.mkdir(parents=True, exist_ok=True)
    return path


def ledger_volume(stack: str) -> str:
    return f"cutover-{stack}-ledger"


def lock_container_name(stack: str) -> str:
    return f"cutover-{stack}-lock"


def actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{os.uname().nodename}"


# -- the chain: pure functions over the ledger's lines ------------------------------------------


def line_hash(line: str) -> str:
    """What the next record's ``prev`` must be: the sha256 of this line's exact bytes."""
    return hashlib.sha256(line.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    records: int
    problem: str | None = None  # one sentence naming the first record altered, removed, inserted or reordered
    seq: int | None = None  # that record's seq
    line: int | None = None  # its line number (1-based)

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify_chain(lines: list[str], head: dict | None = None, witness: list[str] | None = None) -> ChainReport:
    """Check seq continuity and the prev-hash chain of ``lines``; then the ledger's ``head`` (seq
    and hash of the last line, kept by the writer) and a ``witness`` (a cached earlier copy, which
    the ledger must still begin with). The first problem found is the one reported."""
    expected, prev, records = 1, GENESIS, []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            seq = record["seq"]
            if not isinstance(record, dict) or not isinstance(seq, int):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return ChainReport(number - 1, f"record seq {expected} (line {number}) was altered: it is not a ledger record any more.", expected, number)
        if seq > expected:
            later = [n for n, other in enumerate(lines[number:], start=number + 1) if _seq_of(other) == expected]
            if later:
                return ChainReport(number - 1, f"records were reordered: seq {seq} is at line {number}, before seq {expected} (line {later[0]}).", seq, number)
            missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
            return ChainReport(number - 1, f"record {missing} was removed: line {number} holds seq {seq}.", expected, number)
        if seq < expected:
            if seq == expected - 1:
                return ChainReport(number - 1, f"lines {number - 1} and {number} both say seq {seq}: one of them was inserted.", seq, number)
            return ChainReport(number - 1, f"a record was inserted at line {number}: it says seq {seq}, but seq {expected} comes next.", seq, number)
        if record.get("prev") != prev:
            if number == 1:
                return ChainReport(0, "record seq 1 (line 1) was altered: its prev is not the chain's start.", 1, 1)
            return ChainReport(
                number - 1,
                f"record seq {expected - 1} (line {number - 1}) was altered, or one was inserted before seq {expected}: "
                f"the prev hash of seq {expected} does not match it.",
                expected - 1,
                number - 1,
            )
        records.append(record)
        expected, prev = seq + 1, line_hash(line)
    count = len(records)
    if head:
        head_seq, head_hash = head.get("seq"), head.get("sha256")
        if isinstance(head_seq, int) and head_seq > count:
            missing = f"seq {count + 1}" if head_seq == count + 1 else f"seq {count + 1} to {head_seq}"
            return ChainReport(count, f"record {missing} was removed from the end: the ledger's head says seq {head_seq}.", count + 1, count + 1)
        if isinstance(head_seq, int) and head_seq < count:
            return ChainReport(count, f"a record was inserted at line {head_seq + 1} (seq {head_seq + 1}): the ledger's head says seq {head_seq} is the last.", head_seq + 1, head_seq + 1)
        if count and head_hash != line_hash(lines[count - 1]):
            return ChainReport(count, f"record seq {count} (line {count}, the last) was altered: it does not match the ledger's head.", count, count)
    for number, cached in enumerate(witness or [], start=1):
        if number > count:
            return ChainReport(count, f"record seq {number} was removed: this machine's cache of the ledger had it.", number, number)
        if lines[number - 1] != cached:
            return ChainReport(count, f"record seq {number} (line {number}) was altered: this machine's cache of the ledger had it otherwise.", number, number)
    return ChainReport(count)


def _seq_of(line: str) -> int | None:
    try:
        return json.loads(line)["seq"]
    except (ValueError, KeyError, TypeError):
        return None


def parse_records(lines: list[str]) -> list[dict]:
    """The lines that are records (a damaged line is left out; ``verify`` names it)."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def open_starts(records: list[dict]) -> list[dict]:
    """Start records no end record answers: commands that stopped half-way (or still run)."""
    ended = {r.get("start_seq") for r in records if r.get("phase") == "end"}
    return [r for r in records if r.get("phase") == "start" and r.get("seq") not in ended]


def commands(records: list[dict]) -> list[dict]:
    """One row per command: its start and end merged (the end's fields win). A start with no end
    is ``interrupted``; an end with no start (a lock refusal) stands alone."""
    starts = {r["seq"]: r for r in records if r.get("phase") == "start"}
    rows: dict[int, dict] = {}
    for record in records:
        if record.get("phase") == "start":
            rows[record["seq"]] = {**record, "outcome": "interrupted", "reason": "no end record: the command stopped half-way", "end_seq": None}
        elif record.get("phase") == "end":
            start = starts.get(record.get("start_seq"))
            key = record.get("start_seq") if start else record["seq"]
            merged = {**(start or {}), **{k: v for k, v in record.items() if v is not None}}
            merged.update(seq=key, end_seq=record["seq"], started=start.get("time") if start else record.get("time"), time=start.get("time") if start else record.get("time"))
            merged["ended"] = record.get("time")
            rows[key] = merged
    return [rows[k] for k in sorted(rows)]


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- the engine side ----------------------------------------------------------------------------


# How long acquire() keeps looking when the lock's name is taken but no holder is listed yet.
LOCK_CONTENTION_S = 5.0


class LockHeld(Refused):
    """Another changing command holds the stack's lock."""


class Ledger:
    """The stack's ledger and lock on its engine. ``ensure_image`` builds the state image (only
    when it is missing or its script changed); ``say`` prints one line for the operator."""

    def __init__(self, stack: str, client=None, ensure_image: Callable[[], str] | None = None, say: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.client = client
        self._ensure_image = ensure_image
        self.say = say
        self.volume = ledger_volume(stack)
        self.lock_name = lock_container_name(stack)
        self.cache = state_dir(stack) / CACHE_FILE
        self._image: str | None = None
        self._lock = None  # our lock container, while we hold it
        self._beating: threading.Event | None = None
        self._current: "Operation | None" = None
        self._before_start: list[dict] | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def image(self) -> str:
        if self._image is None:
            if self._ensure_image is None:
                raise CutoverError("internal: the ledger has no way to build its image")
            self._image = self._ensure_image()
        return self._image

    def _ensure_volume(self) -> None:
        import docker.errors

        try:
            self.client.volumes.get(self.volume)
        except docker.errors.NotFound:
            # cutover.role=ledger keeps it out of 'down --volumes' (an audit trail outlives the stack).
            self.client.volumes.create(self.volume, labels={"cutover.project": "cutover", "cutover.stack": self.stack, "cutover.role": "ledger", MANAGED_BY: SIMULATOR})

    def exists(self) -> bool:
        import docker.errors

        try:
            self.client.volumes.get(self.volume)
            return True
        except docker.errors.NotFound:
            return False

    def _run(self, *args: str) -> str:
        """``cutover-ledger ARGS`` on the engine: in our lock container while we hold it (an exec,
        ~60 ms), else in a one-shot container of the state image with the volume mounted."""
        if self._lock is not None:
            result = self._lock.exec_run([LEDGER_SCRIPT, *args], demux=True)
            out, err = result.output
            if result.exit_code != 0:
                raise CutoverError(f"the ledger on the engine refused ({' '.join(args[:1])}): {(err or out or b'').decode(errors='replace').strip()}")
            return (out or b"").decode()
        self._ensure_volume()
        import docker.errors

        try:
            out = self.client.containers.run(
                self.image(), [LEDGER_SCRIPT, *args], remove=True, network_mode="none",
                volumes={self.volume: {"bind": LEDGER_MOUNT, "mode": "rw"}},
                labels={"cutover.project": "cutover", "cutover.role": "ledger-writer", "cutover.ledger": self.stack, MANAGED_BY: SIMULATOR},
            )
        except docker.errors.ContainerError as exc:
            raise CutoverError(f"the ledger on the engine refused ({' '.join(args[:1])}): {(exc.stderr or b'').decode(errors='replace').strip()}") from None
        return out.decode()

    def append(self, record: dict) -> dict:
        body = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
        line = self._run("append", body).strip().splitlines()[-1]
        return json.loads(line)

    def read(self) -> tuple[list[str], dict | None]:
        """The ledger's lines and its head, as they are on the engine; refreshes the local cache
        (the witness is read first, so a verify compares against what this machine saw before)."""
        if not self.exists():
            return [], None
        out = self._run("read").splitlines()
        head = None
        if out and out[0].startswith('{"head"'):
            head = json.loads(out[0])["head"]
            out = out[1:]
        lines = [line for line in out if line.strip()]
        return lines, head

    def witness(self) -> list[str]:
        if not self.cache.exists():
            return []
        return [line for line in self.cache.read_text().splitlines() if line.strip()]

    def refresh_cache(self, lines: list[str]) -> None:
        temporary = self.cache.with_suffix(".tmp")
        temporary.write_text("".join(line + "\n" for line in lines))
        temporary.replace(self.cache)

    def entries(self) -> list[dict]:
        """Every record (start and end) of the ledger, oldest first."""
        lines, _ = self.read()
        return parse_records(lines)

    def before_start(self) -> list[dict]:
        """The records before the running (outermost) command's start, as it read them under the
        lock (with the ends it appended for interrupted starts); read now outside a command."""
        if self._before_start is None:
            return self.entries()
        return list(self._before_start)

    def remove(self) -> bool:
        """Remove the ledger volume (and this machine's cache): only 'down --volumes --ledger'."""
        import docker.errors

        try:
            self.client.volumes.get(self.volume).remove(force=True)
        except docker.errors.NotFound:
            return False
        except docker.errors.APIError as exc:
            raise CutoverError(f"the ledger volume {self.volume} is in use (another cutover command holds the lock?): {exc.explanation}") from None
        self.cache.unlink(missing_ok=True)
        return True

    # -- the lock ------------------------------------------------------------------------------

    def holder(self):
        """The lock container if someone holds the lock, else None."""
        import docker.errors

        try:
            return self.client.containers.get(self.lock_name)
        except docker.errors.NotFound:
            return None

    def acquire(self, command: str) -> None:
        import docker.errors

        self._ensure_volume()
        labels = {
            "cutover.project": "cutover",
            "cutover.role": "lock",
            MANAGED_BY: SIMULATOR,
            "cutover.lock.stack": self.stack,
            "cutover.lock.command": command,
            "cutover.lock.holder": actor(),
            "cutover.lock.host": os.uname().nodename,
            "cutover.lock.boot": _boot_id(),
            "cutover.lock.pid": str(os.getpid()),
            "cutover.lock.pid-start": _process_start(os.getpid()) or "",
            "cutover.lock.since": _now(),
        }
        # A name Docker refuses (409) while no holder is listed yet is a lock being created or
        # removed at that moment (seen on a loaded machine): look again, for a few seconds at most.
        deadline = time.monotonic() + LOCK_CONTENTION_S
        while time.monotonic() < deadline:
            try:
                container = self.client.containers.create(
                    self.image(), name=self.lock_name, labels=labels, network_mode="none",
                    volumes={self.volume: {"bind": LEDGER_MOUNT, "mode": "rw"}},
                )
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                existing = self.holder()
                if existing is None:
                    time.sleep(0.1)
                    continue  # released or still being created: try again
                reason = self.stale_reason(existing)
                if reason is None:
                    raise LockHeld(f"stack {self.stack} is locked by {_describe_holder(existing.labels)}; try again when it ends.") from None
                try:
                    existing.remove(force=True)  # by ID: a lock taken again meanwhile is another container
                except docker.errors.NotFound:
                    pass
                self.say(f"released the lock on stack {self.stack} left by {_describe_holder(existing.labels)}: {reason}")
                continue
            try:
                container.start()
            except BaseException:
                container.remove(force=True)
                raise
            self._lock = container
            self._start_heartbeat(container.id)
            return
        raise LockHeld(f"stack {self.stack} is locked by another cutover command that keeps taking it; try again.")

    def release(self) -> None:
        import docker.errors

        if self._beating is not None:
            self._beating.set()
            self._beating = None
        if self._lock is not None:
            try:
                self._lock.remove(force=True)
            except docker.errors.NotFound:
                pass
            self._lock = None

    def stale_reason(self, container) -> str | None:
        """Why the lock ``container`` is left over from a dead command, or None while it is held."""
        labels = container.labels or {}
        status = container.status
        if status in ("exited", "dead"):
            return f"its lock container is {status} (the engine restarted?)"
        if labels.get("cutover.lock.host") == os.uname().nodename and labels.get("cutover.lock.boot") == _boot_id():
            pid = int(labels.get("cutover.lock.pid") or 0)
            if pid and not _process_alive(pid, labels.get("cutover.lock.pid-start") or None):
                return f"its holder (pid {pid} on this machine) is gone"
        threshold = float(os.environ.get("CUTOVER_LOCK_STALE_SECONDS") or DEFAULT_STALE_S)
        if status == "running":
            try:
                result = container.exec_run([LEDGER_SCRIPT, "age"])
                age = float(result.output.decode().strip().splitlines()[-1])
            except Exception:
                return None
            if age > threshold:
                return f"no heartbeat from its holder for {age:.0f}s (more than {threshold:.0f}s)"
        elif status == "created":
            created = parse_time(container.attrs["Created"][:26].rstrip("Z") + "+00:00")
            if (datetime.now(timezone.utc) - created).total_seconds() > threshold:
                return f"its lock container never started ({threshold:.0f}s)"
        return None

    def _start_heartbeat(self, container_id: str) -> None:
        stop = threading.Event()
        self._beating = stop

        def beat() -> None:
            import docker

            try:
                client = docker.from_env(timeout=30)
                container = client.containers.get(container_id)
            except Exception:
                return
            while not stop.wait(HEARTBEAT_S):
                try:
                    container.exec_run([LEDGER_SCRIPT, "beat"])
                except Exception:
                    pass  # the next beat tries again; a lock whose beats stop is stale for others

        threading.Thread(target=beat, name=f"cutover-lock-heartbeat-{self.stack}", daemon=True).start()

    # -- commands ------------------------------------------------------------------------------

    @contextmanager
    def command(self, command: str, args: dict, snapshot: Callable[[], dict] | None = None) -> Iterator["Operation"]:
        """Run one changing command under the stack's lock, between a start and an end record.

        A command called inside another (a rehearsal's deploy) records its own start and end but
        does not take the lock again.
        """
        began = time.monotonic()
        base = {"command": command, "args": args, "argv": sys.argv[1:], "stack": self.stack, "actor": actor(), "pid": os.getpid()}
        outer = self._current
        if outer is None:
            try:
                self.acquire(command)
            except LockHeld as exc:
                self.append({**base, "phase": "end", "start_seq": None, "outcome": "refused", "reason": str(exc),
                             "duration_s": round(time.monotonic() - began, 3)})
                raise
        operation = Operation(command, outer)
        try:
            if outer is None:
                # Two reads that do not depend on each other, at once: the ledger (for starts
                # left without an end) and the colours before the command.
                from simulator.parallel import at_once

                (lines, _), before = at_once(self.read, lambda: _safe(snapshot))
                closed = self._close_interrupted(command, lines)
                # What was read, with what was just appended to it: the command's own view of the
                # ledger before its start (``before_start``), so it need not read it again.
                self._before_start = parse_records(lines) + closed
            else:
                before = _safe(snapshot)
            start = self.append({**base, "phase": "start", "parent_seq": outer.start_seq if outer else None,
                                 "colours_before": before, "version": args.get("version")})
            operation.start_seq = start["seq"]
            self._current = operation
            outcome, reason = "ok", None
            try:
                yield operation
            except Refused as exc:
                outcome, reason = "refused", str(exc)
                raise
            except CutoverError as exc:
                outcome, reason = operation.outcome if operation.outcome in ("refused", "failed") else "failed", str(exc)
                raise
            except KeyboardInterrupt as exc:
                outcome, reason = "interrupted", str(exc) or "interrupted by Ctrl-C (SIGINT)"
                raise
            except BaseException as exc:
                outcome, reason = "failed", f"unexpected {exc.__class__.__name__}: {exc}"
                raise
            else:
                if operation.outcome in OUTCOMES:
                    outcome = operation.outcome
                reason = operation.details.pop("reason", None) if outcome != "ok" else None
            finally:
                self._current = outer
                after = _safe(snapshot)
                end = {**base, **_end_details(command, args, operation.details, after), "phase": "end", "start_seq": operation.start_seq,
                       "outcome": outcome, "reason": reason, "colours_before": before, "colours_after": after,
                       "duration_s": round(time.monotonic() - began, 3)}
                try:
                    self.append(end)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # the engine went away: say so, the start stays open
                    self.say(f"could not append the end record of {command} to the ledger: {exc}")
        finally:
            if outer is None:
                self._before_start = None
                self.release()
                for action in operation.after_release:
                    action()

    def earlier_commands(self) -> list[dict]:
        """The command rows before the one running now (whose own start has no end yet)."""
        running = self._current
        # An outermost command read the ledger under its lock just before its start record: that
        # reading serves. A command inside another (a rehearsal's switch) reads it again, since the
        # outer one has added records since.
        outermost = running is not None and running.parent is None
        rows = commands(self.before_start() if outermost else self.entries())
        return [r for r in rows if running is None or running.start_seq is None or r["seq"] < running.start_seq]

    def _close_interrupted(self, command: str, lines: list[str] | None = None) -> list[dict]:
        """Close every start left without an end; returns the end records appended."""
        if lines is None:
            lines, _ = self.read()
        closed = []
        for start in open_starts(parse_records(lines)):
            closed.append(self.append({
                "command": start.get("command"), "args": start.get("args"), "stack": self.stack, "actor": start.get("actor"),
                "phase": "end", "start_seq": start.get("seq"), "outcome": "interrupted", "version": start.get("version"),
                "reason": f"no end record: the command stopped half-way (killed?); noticed by {command} of {actor()}",
                "noticed_by": actor(),
            }))
            self.say(f"note: the previous {start.get('command')} (seq {start.get('seq')}, by {start.get('actor')} at {start.get('time')}) was interrupted")
        return closed

    def after_release(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the command running now has written its end record and let go of
        the lock (removing the ledger volume, which the lock container mounts)."""
        if self._current is None:
            action()
        else:
            operation = self._current
            while operation.parent is not None:
                operation = operation.parent
            operation.after_release.append(action)

    def record(self, action: str, outcome: str, **details) -> None:
        """Add ``details`` (and the outcome) to the end record of the command running now; outside
        any command, append one end record on its own."""
        if self._current is not None:
            self._current.outcome = outcome
            if "error" in details:
                details.setdefault("reason", details.pop("error"))
            self._current.details.update(details)
            return
        self.append({"command": action, "stack": self.stack, "actor": actor(), "phase": "end", "start_seq": None,
                     "outcome": outcome, **details})


@dataclass
class Operation:
    command: str
    parent: "Operation | None"
    start_seq: int | None = None
    outcome: str | None = None
    details: dict = field(default_factory=dict)
    after_release: list[Callable[[], None]] = field(default_factory=list)


def changing(command: str | Callable[[dict], str]):
    """Decorate a Simulator method as a changing command: lock, start record, end record.

    ``command`` is the command's name, or a function of the bound arguments that returns it (and
    may take its own argument out of them). The method's bound arguments are the record's
    ``args``; its result's fields (a dataclass) are
    added to the end record; the Simulator's ``ledger_snapshot()`` gives the colours before and after.
    """

    def wrap(method):
        signature = inspect.signature(method)

        @functools.wraps(method)
        def run(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            values = {k: v for k, v in bound.arguments.items() if k != "self"}
            name = command(values) if callable(command) else command
            snapshot = getattr(self, "ledger_snapshot", None)
            # Before the lock and the start record: a stack another executor manages is refused
            # with nothing changed, not even the ledger.
            guard = getattr(self, "refuse_foreign_stack", None)
            if guard is not None:
                guard()
            with self.ledger.command(name, values, snapshot) as operation:
                if operation.parent is None and hasattr(self, "repair_leftovers"):
                    # What a killed command left is repaired (or named) before this one changes anything.
                    self.repair_leftovers(operation)
                result = method(self, *args, **kwargs)
                operation.details.update({k: v for k, v in _result_details(result).items() if k not in operation.details})
                return result

        return run

    return wrap


def _result_details(result) -> dict:
    if is_dataclass(result):
        details = {}
        for key, value in asdict(result).items():
            details[key] = value
        return details
    if isinstance(result, list):
        return {"changes": [getattr(item, "describe", lambda item=item: str(item))() for item in result]}
    return {}


def _end_details(command: str, args: dict, details: dict, after: dict | None) -> dict:
    """The end record's own fields: what the command reported, plus version, artefact (the image
    ID), source commit and commit time, lifted from wherever the command left them."""
    details = dict(details)
    details.pop("reason", None)
    build = details.pop("artefact", None)
    if isinstance(build, dict):
        details["build"] = build
        source = build.get("source") or {}
        details.setdefault("source_commit", source.get("commit"))
        details.setdefault("commit_time", source.get("commit_time"))
        details.setdefault("source_dirty", source.get("dirty"))
        details.setdefault("image_id", build.get("image_id"))
    if command in ("switch", "rollback"):
        version = details.get("to_version") or _live_version(after)
        image = _live_image(after)
    elif command == "down":
        version, image = details.pop("version", None) or args.get("version"), details.get("image_id")
    else:
        image = details.get("image_id") or (details.get("image") if str(details.get("image", "")).startswith("sha256:") else None)
        version = details.pop("version", None) or args.get("version") or (_live_version(after) if command == "up" else None)
        if image is None and command in ("up", "rehearse"):
            image = _live_image(after)
    return {**details, "version": version, "artefact": image}


def _safe(snapshot: Callable[[], dict] | None) -> dict | None:
    if snapshot is None:
        return None
    try:
        return snapshot()
    except Exception:
        return None


def _live_version(colours: dict | None) -> str | None:
    if not colours or not colours.get("live"):
        return None
    return (colours.get(colours["live"]) or {}).get("version")


def _live_image(colours: dict | None) -> str | None:
    if not colours or not colours.get("live"):
        return None
    return (colours.get(colours["live"]) or {}).get("image")


def _describe_holder(labels: dict) -> str:
    return (
        f"'{labels.get('cutover.lock.command', '?')}' of {labels.get('cutover.lock.holder', '?')} "
        f"(pid {labels.get('cutover.lock.pid', '?')}, since {labels.get('cutover.lock.since', '?')})"
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (tells a reused pid from the holder)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _process_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start:
        return _process_start(pid) == start
    return True
