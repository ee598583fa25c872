"""HAProxy's runtime API, reached through ``docker exec`` into the proxy container.

The admin socket is a Unix socket inside the container and is never published on a port; exec is
how both the simulator and the Pulumi switch command reach it, on Linux and Docker Desktop alike.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass

from simulator.errors import CutoverError
from simulator.watch import Sample
from stacks.proxy_config import COLOUR_MAP, VERSION_MAP
from stacks.spec import COLOURS


@dataclass(frozen=True)
class ServerState:
    backend: str
    server: str
    status: str  # UP, DOWN, MAINT, "MAINT (resolution)", no check...
    sessions: int
    check: str
    check_code: str = ""  # the HTTP status the last health check got, if it got one

    @property
    def up(self) -> bool:
        return self.status == "UP"


STATS_READS = 5
EXPECTED_ROWS = {(c, "BACKEND") for c in COLOURS} | {("live", "FRONTEND"), ("preview", "FRONTEND")}


class ProxyAPI:
    def __init__(self, container) -> None:
        self._container = container

    def command(self, line: str) -> str:
        result = self._container.exec_run(["proxy-admin", line])
        output = result.output.decode(errors="replace")
        if result.exit_code != 0:
            raise CutoverError(f"HAProxy runtime API did not answer {line.split()[0]!r} in {self._container.name}: {output.strip()}")
        return output

    def colours(self) -> dict[str, str]:
        """{"live": colour, "preview": colour} as the proxy routes right now.

        The map always holds both keys: an empty reply is a cut-short read of the socket (as for
        the stats, seen under load right after a reload), so it is read again, a few times at
        most, before it counts."""
        return self._colours_from(self.command(f"show map {COLOUR_MAP}"))

    def _colours_from(self, first_reply: str) -> dict[str, str]:
        reply = first_reply
        for attempt in range(STATS_READS - 1):
            if reply.strip():
                break
            time.sleep(0.1 * (attempt + 1))
            reply = self.command(f"show map {COLOUR_MAP}")
        return _colours(reply)

    def batch(self, lines: list[str]) -> list[str]:
        """Several runtime-API commands in one ``docker exec`` (each exec costs a round trip to the
        engine and a process in the container): HAProxy runs ``;``-separated commands in order and
        ends each reply with an empty line. A reply that does not split into one part per command
        is read again one command at a time."""
        text = self.command("; ".join(lines))
        replies = text.split("\n\n")
        if len(replies) == len(lines) + 1 and not replies[-1].strip():
            return [reply + "\n" for reply in replies[:-1]]
        return [self.command(line) for line in lines]

    def read(self) -> tuple[dict[str, str], list[dict[str, str]]]:
        """The colour map and the stats from one exec: what a switch reads before it flips."""
        routing, stat = self.batch([f"show map {COLOUR_MAP}", "show stat"])
        rows = _stat_rows(stat)
        return self._colours_from(routing), rows if _complete(rows) else self.stats()

    def switch_to(self, colour: str, force: bool = False) -> None:
        """Make ``colour`` live in one runtime-API line and persist it (the image's proxy-switch),
        which refuses a colour whose servers are not all UP; ``force`` skips that check (the
        automatic flip back, which judged the colour itself)."""
        result = self._container.exec_run(["proxy-switch", *(["--force"] if force else []), colour])
        if result.exit_code != 0:
            raise CutoverError(result.output.decode(errors="replace").strip() or f"proxy-switch {colour} failed")

    def set_backend(self, colour: str, text: str) -> bool:
        """Make ``colour``'s backend ``text`` (stacks/proxy_config.py render_backend) with the
        image's proxy-backend: validated, then a hitless master-worker reload. The text travels in
        the exec's environment, never its command line. True when the proxy reloaded, False when
        it already had that backend."""
        result = self._container.exec_run(["proxy-backend", colour], environment={"CUTOVER_BACKEND": text})
        output = result.output.decode(errors="replace").strip()
        if result.exit_code != 0:
            raise CutoverError(output or f"proxy-backend {colour} failed")
        return "unchanged" not in output

    def stats(self) -> list[dict[str, str]]:
        """HAProxy's stats, one row per frontend, backend and server.

        Our config always has both colours' backends and both frontends; a reply without all of
        them is a cut-short read of the socket (seen once under load), so it is read again, a few
        times at most, before it counts.
        """
        rows: list[dict[str, str]] = []
        for attempt in range(STATS_READS):
            rows = _stat_rows(self.command("show stat"))
            if _complete(rows):
                return rows
            time.sleep(0.1 * (attempt + 1))
        return rows

    def servers(self, backend: str) -> list[ServerState]:
        return self.servers_by_backend().get(backend, [])

    def servers_by_backend(self, rows: list[dict[str, str]] | None = None) -> dict[str, list[ServerState]]:
        """Every backend's servers from one read of the stats (``rows``, when just read)."""
        return servers_by_backend(self.stats() if rows is None else rows)

    def backend_sessions(self, backend: str) -> int:
        for row in self.stats():
            if row["pxname"] == backend and row["svname"] == "BACKEND":
                return int(row["scur"] or 0)
        raise CutoverError(f"the proxy has no backend named {backend!r}.")

    def watch_sample(self, colour: str, old: str, seconds: float, rows: list[dict[str, str]] | None = None) -> Sample:
        """One reading for the watch after a flip (simulator/watch.py): ``colour``'s backend counters
        (req_tot, hrsp_5xx, rtime) and server statuses, and ``old``'s current sessions, from a
        single ``show stat`` (``rows``, when just read)."""
        rows = self.stats() if rows is None else rows
        backend = next((r for r in rows if r["pxname"] == colour and r["svname"] == "BACKEND"), None)
        previous = next((r for r in rows if r["pxname"] == old and r["svname"] == "BACKEND"), None)
        if backend is None or previous is None:
            raise CutoverError(f"the proxy's stats have no backend {colour if backend is None else old!r}.")
        return Sample(
            seconds=seconds,
            requests=_count(backend, "req_tot"),
            responses_5xx=_count(backend, "hrsp_5xx"),
            response_ms=_count(backend, "rtime"),
            servers={r["svname"]: r["status"] for r in rows if r["pxname"] == colour and r["svname"] not in ("FRONTEND", "BACKEND")},
            old_sessions=_count(previous, "scur"),
            old_servers={r["svname"]: r["status"] for r in rows if r["pxname"] == old and r["svname"] not in ("FRONTEND", "BACKEND")},
        )

    def frontend_counters(self, frontend: str) -> dict[str, int]:
        """Cumulative connections and requests of a frontend: how keep-alive shows up in numbers."""
        for row in self.stats():
            if row["pxname"] == frontend and row["svname"] == "FRONTEND":
                return {"connections": int(row["conn_tot"] or 0), "requests": int(row["req_tot"] or 0)}
        raise CutoverError(f"the proxy has no frontend named {frontend!r}.")

    def set_server_state(self, backend: str, server: str, state: str) -> None:
        reply = self.command(f"set server {backend}/{server} state {state}").strip()
        if reply:
            raise CutoverError(f"HAProxy refused 'set server {backend}/{server} state {state}': {reply}")

    def set_version(self, colour: str, version: str) -> None:
        """Record ``colour``'s version in the proxy's version map (stamped on every response), persisted."""
        result = self._container.exec_run(["proxy-version", colour, version])
        if result.exit_code != 0:
            raise CutoverError(result.output.decode(errors="replace").strip() or f"proxy-version {colour} {version} failed")

    def versions(self) -> dict[str, str]:
        """{colour: version} as the proxy stamps it on responses right now."""
        entries = {}
        for line in self.command(f"show map {VERSION_MAP}").splitlines():
            parts = line.split()
            if len(parts) == 3:
                entries[parts[1]] = parts[2]
        return entries


def _count(row: dict[str, str], column: str) -> int:
    return int(row.get(column) or 0)


def _colours(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:  # "<ref> <key> <value>"
            entries[parts[1]] = parts[2]
    live = entries.get("live")
    if live not in COLOURS:
        raise CutoverError(f"the proxy's colour map has no valid live colour (read {entries!r}).")
    return {"live": live, "preview": entries.get("preview", "")}


def _stat_rows(text: str) -> list[dict[str, str]]:
    header, _, body = text.partition("\n")
    reader = csv.DictReader(io.StringIO(header.lstrip("# ") + "\n" + body))
    return [row for row in reader if row.get("pxname")]


def _complete(rows: list[dict[str, str]]) -> bool:
    # Our config always has both colours' backends and both frontends; a reply without all of
    # them is a cut-short read of the socket (seen once under load).
    return EXPECTED_ROWS <= {(row["pxname"], row["svname"]) for row in rows}


def servers_by_backend(rows: list[dict[str, str]]) -> dict[str, list[ServerState]]:
    found: dict[str, list[ServerState]] = {}
    for row in rows:
        if row["svname"] in ("FRONTEND", "BACKEND"):
            continue
        found.setdefault(row["pxname"], []).append(ServerState(
            backend=row["pxname"],
            server=row["svname"],
            status=row["status"],
            sessions=int(row["scur"] or 0),
            check=row.get("check_status", "") or "",
            check_code=row.get("check_code", "") or "",
        ))
    return found
