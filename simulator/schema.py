"""Schema changes as part of the release: what a version needs, the lint gate, running migrations.

An artefact describes its own schema needs (``python3 -m migrate describe`` inside the image); this
module asks it, reads the database's current revision, lints pending expand migrations with
squawk, and runs them as a one-shot container of the new artefact — before its colour starts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from simulator.docker_driver import DockerDriver
from simulator.errors import CutoverError
from stacks.topology import DATABASE_NAME, database_container_name, migration_container

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
    """What one artefact says about the schema (see app/migrate.py)."""

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


class Schema:
    def __init__(self, driver: DockerDriver) -> None:
        self.driver = driver
        self.spec = driver.spec
        self._releases: dict[str, Release] = {}

    def release(self, version: str) -> Release:
        if version not in self._releases:
            data = json.loads(self._run(version, "describe"))
            self._releases[version] = Release(
                version=version,
                revisions=tuple(data["revisions"]),
                needs=data["needs"],
                finalize_to=data["finalize_to"],
                works_until=data["works_until"],
            )
        return self._releases[version]

    def current(self) -> str | None:
        """The database's revision, read in the database container (no network port involved)."""
        query = "SELECT CASE WHEN to_regclass('alembic_version') IS NULL THEN '' ELSE (SELECT coalesce(max(version_num), '') FROM alembic_version) END"
        container = self.driver.container(database_container_name(self.spec))
        result = container.exec_run(["psql", "--no-psqlrc", "--tuples-only", "--no-align", "--dbname", DATABASE_NAME, "--command", query], user="postgres")
        if result.exit_code != 0:
            raise CutoverError(f"could not read the schema revision: {result.output.decode(errors='replace').strip()}")
        return result.output.decode().strip() or None

    def lint(self, version: str, pending: list[dict]) -> list[Violation]:
        """Squawk over each pending migration's SQL; only backward-incompatible rules block."""
        violations: list[Violation] = []
        for revision in pending:
            sql = self._run(version, "sql", revision["down"] or "base", revision["id"])
            violations += [v for v in _squawk(sql, revision) if v.rule in BLOCKING_RULES]
        return violations

    def migrate(self, version: str, step: str) -> dict:
        """Run ``step`` (expand or contract) as a one-shot container of ``version``'s artefact."""
        code, out, err = self.driver.run_once(migration_container(self.spec, version, step))
        if code != 0:
            reason = (err.strip().splitlines() or [f"exit status {code}"])[-1]
            raise CutoverError(f"{step} migration of {version} failed and was rolled back, schema unchanged: {reason}")
        return json.loads(out.strip().splitlines()[-1])

    def _run(self, version: str, *args: str) -> str:
        spec = replace(migration_container(self.spec, version, args[0]), command=("python3", "-m", "migrate", *args))
        code, out, err = self.driver.run_once(spec)
        if code != 0:
            reason = (err.strip().splitlines() or [f"exit status {code}"])[-1]
            raise CutoverError(f"version {version} could not '{' '.join(args)}' its migrations: {reason}")
        return out


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
