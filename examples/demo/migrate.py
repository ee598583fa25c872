"""The artefact's own schema tool: ``python3 -m migrate describe|current|sql|expand|contract``.

The reference implementation of cutover's migration contract, cutover-migrations/1
(docs/migrations.md), on Alembic.

Every migration in ``migrations/versions`` says which release introduced it and whether it is an
*expand* step (additive: the previous release keeps working) or a *contract* step (breaks the
previous release: run only after it is retired). From that, each release knows:

- ``needs``: the newest expand revision of its own release or earlier (run before it starts);
- ``finalize_to``: the newest revision of its own release or earlier (run by ``cutover finalize``);
- ``works_until``: the last revision before the first contract step of a *later* release.

Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

HERE = Path(__file__).resolve().parent


def release_of(version: str) -> int:
    major = version.split(".", 1)[0]
    if not major.isdigit():
        raise SystemExit(f"migrate: version {version!r} has no major number to pick its release.")
    return int(major)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE / "migrations"))
    return config


def revisions() -> list[dict]:
    """Every migration, oldest first, with its phase and release."""
    script = ScriptDirectory.from_config(alembic_config())
    ordered = list(reversed(list(script.walk_revisions())))
    result = []
    for rev in ordered:
        phase = getattr(rev.module, "phase", None)
        release = getattr(rev.module, "release", None)
        if phase not in ("expand", "contract") or not isinstance(release, int):
            raise SystemExit(f"migrate: {rev.path} must set phase = 'expand' or 'contract' and release = <int>.")
        result.append({"id": rev.revision, "phase": phase, "release": release, "down": rev.down_revision, "file": Path(rev.path).name})
    return result


def describe(version: str) -> dict:
    release = release_of(version)
    revs = revisions()
    ids = [r["id"] for r in revs]
    needs = [r["id"] for r in revs if r["phase"] == "expand" and r["release"] <= release]
    finalize = [r["id"] for r in revs if r["release"] <= release]
    breaking = [i for i, r in enumerate(revs) if r["phase"] == "contract" and r["release"] > release]
    works_until = ids[breaking[0] - 1] if breaking else (ids[-1] if ids else None)
    return {
        # cutover's migration contract (docs/migrations.md); this tool is its reference implementation.
        "contract": 1,
        "version": version,
        "release": release,
        "revisions": revs,
        "needs": needs[-1] if needs else None,
        "finalize_to": finalize[-1] if finalize else None,
        "works_until": works_until,
    }


def current_revision() -> str | None:
    import psycopg2

    from db_settings import connection_kwargs

    with psycopg2.connect(**connection_kwargs()) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT version_num FROM alembic_version")
        row = cur.fetchone()
        return row[0] if row else None


def upgrade(target: str | None, allowed_phases: set[str], version: str) -> dict:
    info = describe(version)
    current = current_revision()
    ids = [r["id"] for r in info["revisions"]]
    if target is None or (current is not None and ids.index(current) >= ids.index(target)):
        return {"applied": [], "current": current}
    start = ids.index(current) + 1 if current else 0
    pending = info["revisions"][start : ids.index(target) + 1]
    wrong = [r for r in pending if r["phase"] not in allowed_phases]
    if wrong:
        raise SystemExit(f"migrate: {wrong[0]['file']} is a {wrong[0]['phase']} step and cannot run here.")
    command.upgrade(alembic_config(), target)
    return {"applied": [r["id"] for r in pending], "current": current_revision()}


def main(argv: list[str]) -> int:
    version = os.environ.get("APP_VERSION", "0.0.0")
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    verb = argv[0]
    try:
        if verb == "describe":
            print(json.dumps(describe(version)))
        elif verb == "current":
            print(json.dumps({"current": current_revision()}))
        elif verb == "sql" and len(argv) == 3:
            # Offline SQL for one step FROM:TO ("base" for an empty database), for the lint gate.
            command.upgrade(alembic_config(), f"{argv[1]}:{argv[2]}", sql=True)
        elif verb == "expand":
            print(json.dumps(upgrade(describe(version)["needs"], {"expand"}, version)))
        elif verb == "contract":
            print(json.dumps(upgrade(describe(version)["finalize_to"], {"expand", "contract"}, version)))
        else:
            print(f"migrate: unknown command {' '.join(argv)!r}; use describe, current, sql FROM TO, expand or contract.", file=sys.stderr)
            return 2
    except SystemExit:
        raise
    except Exception as exc:  # the one line the deploying user sees; the schema is untouched
        message = " ".join(str(exc).split())[:500]
        print(f"migrate: {verb} failed, nothing was applied: {exc.__class__.__name__}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
