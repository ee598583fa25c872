"""The demo artefact's one entry point: ``python3 cutover-demo.pyz COMMAND [ARGS...]``.

The zipapp (built by build_artefact.py) holds the app and its pinned dependencies; every command
the app definition runs goes through here:

  gunicorn [OPTIONS] APP       serve: gunicorn --config python:gunicorn_conf service:application
  migrate VERB [ARGS]          the migration contract: describe, current, sql FROM TO, expand, contract
  healthcheck [PATH]           Docker's HEALTHCHECK: exit 0 when GET PATH (default /healthz) answers 200
  run SCRIPT [ARGS]            run a Python file with the artefact's dependencies importable
  info                         this artefact's sha256, shiv build id and pinned dependencies (JSON)
  end-streams                  the drain hook: end the /events streams open now, each with a final event

Imports are per command, so a health check never loads SQLAlchemy.
"""

from __future__ import annotations

import sys

COMMANDS = ("gunicorn", "migrate", "healthcheck", "run", "info", "end-streams")


def _name_process(name: str) -> None:
    """Call this process ``name`` in ps, top and pgrep (what Debian's gunicorn script was called);
    the workers it forks inherit the name. Cosmetic: a failure is ignored."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME
    except Exception:
        pass


def gunicorn(args: list[str]) -> int:
    from gunicorn.app.wsgiapp import run

    _name_process("gunicorn")
    sys.argv = ["gunicorn", *args]
    run()
    return 0


def info() -> int:
    import hashlib
    import json
    import zipfile
    from importlib import metadata
    from pathlib import Path

    artefact = sys.argv[0]
    with open(artefact, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    with zipfile.ZipFile(artefact) as archive:
        environment = json.loads(archive.read("environment.json"))
    here = Path(__file__).resolve().parent  # the artefact's extracted site-packages
    dependencies = {d.metadata["Name"]: d.version for d in metadata.distributions() if Path(d.locate_file("")).resolve() == here}
    print(json.dumps({
        "artefact": artefact,
        "sha256": digest,
        "build_id": environment["build_id"],
        "built_at": environment["built_at"],
        "shiv": environment["shiv_version"],
        "dependencies": dict(sorted(dependencies.items(), key=lambda kv: kv[0].lower())),
    }))
    return 0


def main() -> int:
    argv = sys.argv[1:]
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "gunicorn":
        return gunicorn(args)
    if command == "migrate":
        import migrate

        return migrate.main(args)
    if command == "healthcheck":
        import healthcheck

        return healthcheck.main(args)
    if command == "run" and args:
        import runpy

        sys.argv = args
        runpy.run_path(args[0], run_name="__main__")
        return 0
    if command == "info":
        return info()
    if command == "end-streams":
        import streams

        return streams.end_streams()
    print(__doc__, file=sys.stderr)
    print(f"cutover-demo: unknown command {' '.join(argv)!r}; use one of {', '.join(COMMANDS)}.", file=sys.stderr)
    return 2
