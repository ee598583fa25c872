"""Schema changes as part of the release: what a version needs, the lint gate, running migrations.

cutover knows no migration tool. A read-write app declares its migration commands (docs/migrations.md),
each run as a one-shot container of the version's own image with the database env:

- **self-describing** (contract ``cutover-migrations/1``): ``describe`` says which revisions the
  artefact has and which it needs, ``current`` reads the database's revision, ``sql FROM TO`` prints
  a step's SQL for the lint gate, ``expand`` and ``contract`` apply them;
- **expand-only**: one migrate command that cannot describe itself. Every run is an expand step;
  the ``*.sql`` files under its ``sql_dir`` that the new image has and the live one has not go
  through the lint gate first. Nothing is ever contracted, so every version runs on every schema.

A read-only app (no database) has no schema at all: :class:`NoSchema` says so to every question.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from simulator.docker_driver import DockerDriver
from simulator.errors import CutoverError
from stacks.app import MIGRATION_CONTRACT, ExpandOnlyMigrations, SelfDescribingMigrations
from stacks.topology import app_image_ref, migration_container

# Squawk rules that make an *expand* migration backward-incompatible: the live (older) version would
# break on the migrated schema, and rollback with it. Other squawk findings are advice, not a gate.
BLOCKING_RULES = frozenset(
    {
        "ban-drop-column",
        "ban-drop-table",
        "ban-drop-database",
        "renaming-column",
        "renaming-table",
        "changing-column-type",
        "adding-required-field",
        "adding-not-nullable-field",
        "ban-drop-not-null",
    }
)


@dataclass(frozen=True)
class Release:
    """What one artefact says about the schema (its ``describe``, docs/migrations.md)."""

    version: str
    revisions: tuple[dict, ...]
    needs: str | None
    finalize_to: str | None
    works_until: str | None

    def index(self, revision: str | None) -> int:
        """Position of a revision in the chain; -1 for an empty database."""
        if revision is None:
            return -1
        ids = [r["id"] for r in self.revisions]
        if revision not in ids:
            raise CutoverError(f"the database is at revision {revision}, which version {self.version} does not know; deploy a newer version.")
        return ids.index(revision)

    def runs_on(self, current: str | None) -> bool:
        """Whether this version works on a database at ``current`` (unknown revisions are newer)."""
        if current is not None and current not in {r["id"] for r in self.revisions}:
            return False
        return self.index(current) <= self.index(self.works_until)

    def pending(self, current: str | None, target: str | None) -> list[dict]:
        return list(self.revisions[self.index(current) + 1 : self.index(target) + 1])


@dataclass(frozen=True)
class Violation:
    revision: str
    file: str
    rule: str
    line: int
    statement: str
    message: str

    def describe(self) -> str:
        return f"{self.file}: rule {self.rule} at line {self.line} of its SQL ({self.statement!r}): {self.message}"


def describe_contract_error(version: str, problem: str) -> CutoverError:
    return CutoverError(
        f"version {version}'s migrations 'describe' did not follow cutover-migrations/{MIGRATION_CONTRACT} ({problem}); see docs/migrations.md."
    )


def parse_release(version: str, output: str) -> Release:
    """The last line ``describe`` printed, checked against the contract."""
    lines = output.strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        raise describe_contract_error(version, "its last line of output is not JSON") from None
    if not isinstance(data, dict):
        raise describe_contract_error(version, "it printed no JSON object")
    if data.get("contract") != MIGRATION_CONTRACT:
        raise describe_contract_error(version, f"'contract' is {data.get('contract')!r}, not {MIGRATION_CONTRACT}")
    revisions = data.get("revisions")
    if not isinstance(revisions, list) or not all(isinstance(r, dict) and {"id", "phase", "down"} <= set(r) for r in revisions):
        raise describe_contract_error(version, "'revisions' must be a list of objects with id, phase and down")
    ids = [r["id"] for r in revisions]
    for key in ("needs", "finalize_to", "works_until"):
        if data.get(key) is not None and data[key] not in ids:
            raise describe_contract_error(version, f"{key!r} names {data.get(key)!r}, which is not one of its revisions")
    if any(r["phase"] not in ("expand", "contract") for r in revisions):
        raise describe_contract_error(version, "every revision's phase must be 'expand' or 'contract'")
    return Release(
        version=version,
        revisions=tuple({**r, "file": r.get("file") or r["id"]} for r in revisions),
        needs=data.get("needs"),
        finalize_to=data.get("finalize_to"),
        works_until=data.get("works_until"),
    )


class Schema:
    """The questions a deploy, a switch and a finalize ask about the database, for any contract."""

    read_write = True

    def __init__(self, driver: DockerDriver) -> None:
        self.driver = driver
        self.spec = driver.spec
        # The image ID a version is bound to (set by the simulator); None falls back to its tag.
        self.image_of: Callable[[str], str | None] = lambda version: None

    def incompatibility(self, version: str, running_in: str | None = None) -> str | None:
        """Why ``version`` cannot run on the database as it is now, or None when it can.

        ``running_in`` names a running container of ``version``'s own artefact (same image ID, same
        database settings): a read-only command may run there, by ``docker exec``, instead of in a
        one-shot container created, started, waited on and removed for it (seconds on a busy engine)."""
        raise NotImplementedError

    def expand(self, version: str, live_version: str | None, lint: bool = True) -> list[str]:
        """Run ``version``'s pending expand steps (lint-gated); the steps applied."""
        raise NotImplementedError

    def lint_gate(self, version: str, live_version: str | None) -> list[str]:
        """The gate ``expand`` passes first, applying nothing: the steps it would apply (as it
        would report them), or the deploy's one sentence why it is blocked. The Pulumi program's
        ExpandLintGate runs this before its migration container (components/release_gates.py)."""
        raise NotImplementedError

    def finalize_plan(self, version: str) -> list[str]:
        """The contract steps ``cutover finalize`` would apply for ``version`` (empty: nothing to do)."""
        raise NotImplementedError

    def contract(self, version: str) -> list[str]:
        raise NotImplementedError

    def _run(self, version: str, command: tuple[str, ...], what: str, running_in: str | None = None) -> str:
        if running_in is not None:
            code, out, err = self.driver.exec_in(running_in, command, self.spec.migration_timeout_s)
        else:
            code, out, err = self.driver.run_once(migration_container(self.spec, version, command, self.image_of(version)))
        if code != 0:
            reason = (err.strip().splitlines() or out.strip().splitlines() or [f"exit status {code}"])[-1]
            raise CutoverError(f"version {version} could not {what} ({' '.join(command)} exited {code}): {reason}")
        return out

    def _apply(self, version: str, command: tuple[str, ...], step: str) -> str:
        code, out, err = self.driver.run_once(migration_container(self.spec, version, command, self.image_of(version)))
        if code != 0:
            reason = (err.strip().splitlines() or out.strip().splitlines() or [f"exit status {code}"])[-1]
            raise CutoverError(self.failure(version, command, step, code, reason))
        return out

    def failure(self, version: str, command: tuple[str, ...], step: str, code: int, reason: str) -> str:
        # The contract promises an all-or-nothing step (docs/migrations.md), so the schema is as it was.
        return f"{step} migration of {version} failed and was rolled back, schema unchanged: {reason}"

    def _blocked(self, version: str, violations: list[Violation]) -> None:
        if violations:
            raise CutoverError(
                f"deploy of {version} blocked by the migration lint gate, nothing was applied: " + "; ".join(v.describe() for v in violations)
            )


class NoSchema(Schema):
    """A read-only deployment: no database, so nothing to check, migrate or finalize."""

    read_write = False

    def incompatibility(self, version: str, running_in: str | None = None) -> str | None:
        return None

    def expand(self, version: str, live_version: str | None, lint: bool = True) -> list[str]:
        return []

    def lint_gate(self, version: str, live_version: str | None) -> list[str]:
        return []

    def finalize_plan(self, version: str) -> list[str]:
        return []

    def contract(self, version: str) -> list[str]:
        return []


class DescribedSchema(Schema):
    """The self-describing contract: the artefact says what it needs (``describe``)."""

    def __init__(self, driver: DockerDriver, commands: SelfDescribingMigrations) -> None:
        super().__init__(driver)
        self.commands = commands
        self._releases: dict[str, Release] = {}

    def release(self, version: str) -> Release:
        """What ``version``'s artefact says of its migrations. An artefact never changes (a version
        is bound to one image ID), so its answer is kept per image ID and asked once."""
        if version not in self._releases:
            image_id = self.image_of(version)
            cache = _describe_cache(image_id, version) if image_id else None
            if cache is not None and cache.is_file():
                output = cache.read_text()
            else:
                output = self._run(version, self.commands.describe, "describe its migrations")
            release = parse_release(version, output)  # checked whether it came from the cache or not
            if cache is not None and not cache.is_file():
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(output.strip().splitlines()[-1] + "\n")
            self._releases[version] = release
        return self._releases[version]

    def current(self, version: str, running_in: str | None = None) -> str | None:
        """The database's revision, as ``version``'s own ``current`` command reads it."""
        out = self._run(version, self.commands.current, "read the schema revision", running_in)
        try:
            data = json.loads(out.strip().splitlines()[-1])
            return data["current"]
        except (json.JSONDecodeError, IndexError, KeyError, TypeError):
            raise CutoverError(
                f"version {version}'s migrations 'current' did not print {{\"current\": REVISION or null}} as its last line; see docs/migrations.md."
            ) from None

    def incompatibility(self, version: str, running_in: str | None = None) -> str | None:
        release = self.release(version)
        current = self.current(version, running_in)
        if release.runs_on(current):
            return None
        return f"it runs {version}, which works up to schema revision {release.works_until}, but the database is at {current} (a later release was finalized)"

    def expand(self, version: str, live_version: str | None, lint: bool = True) -> list[str]:
        pending = self._pending(version, lint)
        if not pending:
            return []
        return _applied(self._apply(version, self.commands.expand, "expand"), [r["id"] for r in pending])

    def lint_gate(self, version: str, live_version: str | None) -> list[str]:
        return [r["id"] for r in self._pending(version, lint=True)]

    def _pending(self, version: str, lint: bool) -> list[dict]:
        """The expand steps ``version`` needs on the database as it is, through the lint gate."""
        release = self.release(version)
        current = self.current(version)
        if not release.runs_on(current):
            raise CutoverError(
                f"version {version} cannot run on the database: it works up to revision {release.works_until}, "
                f"but the schema is at {current} (a later release was finalized)."
            )
        pending = release.pending(current, release.needs)
        if pending and lint:
            self._blocked(version, self.lint(version, pending))
        return pending

    def lint(self, version: str, pending: list[dict]) -> list[Violation]:
        """Squawk over each pending migration's SQL; only backward-incompatible rules block."""
        if self.commands.sql is None:
            raise CutoverError(
                f"version {version} has pending expand migrations ({', '.join(r['id'] for r in pending)}) but the app declares no "
                "migrations.sql command, so the lint gate cannot read their SQL; declare one (docs/migrations.md)."
            )
        violations: list[Violation] = []
        for revision in pending:
            sql = self._run(version, (*self.commands.sql, revision["down"] or "base", revision["id"]), f"print the SQL of {revision['id']}")
            violations += [v for v in _squawk(sql, revision) if v.rule in BLOCKING_RULES]
        return violations

    def finalize_plan(self, version: str) -> list[str]:
        release = self.release(version)
        return [r["id"] for r in release.pending(self.current(version), release.finalize_to)]

    def runs_after_finalize(self, version: str, live_version: str) -> bool:
        return self.release(version).runs_on(self.release(live_version).finalize_to)

    def contract(self, version: str) -> list[str]:
        return _applied(self._apply(version, self.commands.contract, "contract"), self.finalize_plan(version))


class ExpandOnlySchema(Schema):
    """One migrate command that cannot describe itself: always an expand step, linted by file."""

    def __init__(self, driver: DockerDriver, commands: ExpandOnlyMigrations) -> None:
        super().__init__(driver)
        self.commands = commands

    def incompatibility(self, version: str, running_in: str | None = None) -> str | None:
        return None  # nothing is ever contracted

    def failure(self, version: str, command: tuple[str, ...], step: str, code: int, reason: str) -> str:
        # A command that cannot describe itself promises nothing about what a failed run left.
        return f"the migrate command of {version} ({' '.join(command)}) exited {code}, nothing of {version} was started: {reason}"

    def expand(self, version: str, live_version: str | None, lint: bool = True) -> list[str]:
        new_files = self.new_sql_files(version, live_version)
        if lint:
            self._lint_files(version, new_files)
        self._apply(version, self.commands.command, "expand")
        return self._steps(new_files)

    def lint_gate(self, version: str, live_version: str | None) -> list[str]:
        new_files = self.new_sql_files(version, live_version)
        self._lint_files(version, new_files)
        return self._steps(new_files)

    def _lint_files(self, version: str, new_files: dict[str, str]) -> None:
        violations: list[Violation] = []
        for name, sql in new_files.items():
            violations += [v for v in _squawk(sql, {"id": name, "file": name}) if v.rule in BLOCKING_RULES]
        self._blocked(version, violations)

    def _steps(self, new_files: dict[str, str]) -> list[str]:
        # The command says nothing about what it did; the new SQL files are the best account of it.
        return sorted(new_files) or [" ".join(self.commands.command)]

    def new_sql_files(self, version: str, live_version: str | None) -> dict[str, str]:
        """The SQL files ``version``'s image has (by name and content) that ``live_version``'s has not."""
        if self.commands.sql_dir is None:
            return {}
        new = self.driver.files_in_image(self._image(version), self.commands.sql_dir, ".sql")
        old = self.driver.files_in_image(self._image(live_version), self.commands.sql_dir, ".sql") if live_version and live_version != version else {}
        return {name: sql for name, sql in sorted(new.items()) if old.get(name) != sql}

    def _image(self, version: str) -> str:
        return self.image_of(version) or app_image_ref(self.spec, version)

    def finalize_plan(self, version: str) -> list[str]:
        return []

    def contract(self, version: str) -> list[str]:
        return []


def _describe_cache(image_id: str, version: str) -> Path:
    root = Path(os.environ.get("CUTOVER_STATE_DIR") or Path.home() / ".local/state/cutover")
    return root / "describe" / f"{image_id.replace(':', '-')}-{version}.json"


def schema_for(driver: DockerDriver) -> Schema:
    """The schema handling the app's definition asks for."""
    migrations = driver.spec.app.migrations
    if not driver.spec.app.read_write or migrations is None:
        return NoSchema(driver)
    if isinstance(migrations, ExpandOnlyMigrations):
        return ExpandOnlySchema(driver, migrations)
    return DescribedSchema(driver, migrations)


def _applied(output: str, expected: list[str]) -> list[str]:
    """What an apply command reports ({"applied": [...]} as its last line), or what was pending."""
    try:
        applied = json.loads(output.strip().splitlines()[-1])["applied"]
        if isinstance(applied, list):
            return [str(a) for a in applied]
    except (json.JSONDecodeError, IndexError, KeyError, TypeError):
        pass
    return expected


def _squawk_binary() -> str:
    beside_python = Path(sys.executable).parent / "squawk"
    found = str(beside_python) if beside_python.exists() else shutil.which("squawk")
    if not found:
        raise CutoverError("squawk (the migration linter, from the squawk-cli package) is not installed; run 'make venv'.")
    return found


def _squawk(sql: str, revision: dict) -> list[Violation]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{revision['id']}.sql"
        path.write_text(sql)
        result = subprocess.run([_squawk_binary(), "--reporter", "json", "--pg-version", "15", str(path)], capture_output=True, text=True)
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        raise CutoverError(f"squawk could not lint {revision['file']}: {(result.stderr or result.stdout).strip()[:300]}") from None
    lines = sql.splitlines()
    violations = []
    for finding in findings:
        line = int(finding.get("line", 0))  # squawk counts lines from 0
        statement = lines[line].strip() if 0 <= line < len(lines) else ""
        violations.append(Violation(revision["id"], revision["file"], finding.get("rule_name", "?"), line + 1, statement, finding.get("message", "")))
    return violations
