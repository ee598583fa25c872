"""The four DORA keys, derived from a stack's ledger: pure functions over its records.

Only end records whose outcome is ``ok`` count (a refused or failed switch changed nothing). The
moment a switch made a version live is its ``flipped_at`` (the proxy confirmed the flip), else the
end record's ``time``.

- **Deployment frequency**: switches that made a *new* version live (a version not live before on
  this stack; a rollback, or a switch back to a version already seen, is not a deployment), per day
  over the ledger's span (first to last record, counted as at least one day).
- **Lead time for changes**: from the commit time of a deployed version's source (``commit_time``,
  recorded by ``build``/``deploy`` when the source is in git) to the switch that made it live.
  Unknown when no record of that version has a commit time; never guessed.
- **Change failure rate**: deployments undone within the window (default one hour): the next
  flip after it (a ``rollback``, an ``auto-rollback`` by the switch's watch, or a ``switch``)
  brought back the version that was live before, within the window. Failed deployments / deployments.
- **Time to restore**: for each failed deployment, from its switch to the flip that undid it.

Medians are reported for the durations (as DORA does), with every value behind them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timezone

from simulator.ledger import parse_time

DEFAULT_WINDOW_S = 3600.0
FLIPS = ("switch", "rollback", "auto-rollback")


@dataclass(frozen=True)
class Flip:
    seq: int
    command: str
    at: datetime
    before: str | None  # the live version before
    after: str | None  # the live version after
    actor: str | None


def moment(record: dict) -> datetime:
    flipped = record.get("flipped_back_at") if record.get("command") == "auto-rollback" else record.get("flipped_at")
    if isinstance(flipped, (int, float)):
        return datetime.fromtimestamp(flipped, tz=timezone.utc)
    return parse_time(record["time"])


def _live_version(colours: dict | None) -> str | None:
    if not colours or not colours.get("live"):
        return None
    return (colours.get(colours["live"]) or {}).get("version")


def flips(records: list[dict]) -> list[Flip]:
    """Every flip that happened, in the order it happened: successful switches and rollbacks, a
    switch that was rolled back automatically (it ended ``failed``, but its version was live) and
    the automatic rollback itself (recorded inside that switch, so before the switch's end)."""
    result = []
    for r in records:
        if r.get("phase") != "end" or r.get("command") not in FLIPS:
            continue
        if r.get("outcome") != "ok" and not (r.get("command") == "switch" and r.get("auto_rollback")):
            continue
        before = r.get("from_version") or _live_version(r.get("colours_before"))
        after = r.get("to_version") or _live_version(r.get("colours_after"))
        result.append(Flip(r["seq"], r["command"], moment(r), before, after, r.get("actor")))
    return sorted(result, key=lambda flip: flip.at)


def deployments(records: list[dict]) -> list[tuple[Flip, Flip | None]]:
    """Each switch that made a new version live, with the successful flip that came next (or None)."""
    seen: set[str] = set()
    for r in records:  # what was live before the first flip (an 'up', say) is not new
        if r.get("phase") == "end" and r.get("outcome") == "ok" and r.get("command") not in FLIPS:
            live = _live_version(r.get("colours_after"))
            if live:
                seen.add(live)
            break
    all_flips = flips(records)
    result = []
    for index, flip in enumerate(all_flips):
        if flip.before:
            seen.add(flip.before)
        if flip.command == "switch" and flip.after and flip.after not in seen:
            result.append((flip, all_flips[index + 1] if index + 1 < len(all_flips) else None))
        if flip.after:
            seen.add(flip.after)
    return result


def commit_times(records: list[dict]) -> dict[str, datetime]:
    """Each version's source commit time, from its build or deploy records (the latest one wins)."""
    times = {}
    for r in records:
        if r.get("phase") == "end" and r.get("outcome") == "ok" and r.get("version") and r.get("commit_time"):
            times[r["version"]] = parse_time(r["commit_time"])
    return times


def span_days(records: list[dict]) -> float:
    stamps = [parse_time(r["time"]) for r in records if r.get("time")]
    if not stamps:
        return 0.0
    return (max(stamps) - min(stamps)).total_seconds() / 86400


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def dora(records: list[dict], window_s: float = DEFAULT_WINDOW_S) -> dict:
    deployed = deployments(records)
    commits = commit_times(records)
    days = span_days(records)

    changes = []
    for flip, _ in deployed:
        committed = commits.get(flip.after)
        changes.append({
            "version": flip.after,
            "seq": flip.seq,
            "live_at": flip.at.isoformat(),
            "commit_time": committed.isoformat() if committed else None,
            "seconds": round((flip.at - committed).total_seconds(), 3) if committed else None,
        })
    known = [c["seconds"] for c in changes if c["seconds"] is not None]

    failures = []
    for flip, following in deployed:
        if following is None or following.after != flip.before or following.before != flip.after:
            continue
        seconds = (following.at - flip.at).total_seconds()
        if seconds <= window_s:
            failures.append({
                "version": flip.after, "seq": flip.seq, "switched_at": flip.at.isoformat(),
                "undone_by": following.command, "undone_seq": following.seq, "undone_at": following.at.isoformat(),
                "seconds": round(seconds, 3),
            })

    count = len(deployed)
    return {
        "span": {"days": round(days, 4), "records": len(records)},
        "deployment_frequency": {
            "deployments": count,
            "per_day": round(count / max(days, 1.0), 3),
            "versions": [flip.after for flip, _ in deployed],
        },
        "lead_time": {
            "median_seconds": _median(known),
            "known": len(known),
            "unknown": len(changes) - len(known),
            "changes": changes,
        },
        "change_failure_rate": {
            "rate": round(len(failures) / count, 4) if count else None,
            "failed": len(failures),
            "deployments": count,
            "window_seconds": window_s,
        },
        "time_to_restore": {
            "median_seconds": _median([f["seconds"] for f in failures]),
            "restores": failures,
        },
    }
