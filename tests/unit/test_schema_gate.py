"""The schema rules the simulator enforces: release compatibility and the squawk lint gate.

The lint tests run the real squawk binary (squawk-cli from PyPI) on SQL like Alembic emits.
"""

from __future__ import annotations

import pytest

from simulator.errors import CutoverError
from simulator.schema import BLOCKING_RULES, Release, _squawk

REVISIONS = (
    {"id": "0001", "phase": "expand", "release": 1, "down": None, "file": "0001_create_items.py"},
    {"id": "0002", "phase": "expand", "release": 2, "down": "0001", "file": "0002_add_body_length.py"},
    {"id": "0003", "phase": "contract", "release": 2, "down": "0002", "file": "0003_require_body_length.py"},
)
V1 = Release("1.0.0", REVISIONS, needs="0001", finalize_to="0001", works_until="0002")
V2 = Release("2.0.0", REVISIONS, needs="0002", finalize_to="0003", works_until="0003")


def test_old_release_runs_on_expanded_but_not_on_contracted_schema():
    assert V1.runs_on(None) and V1.runs_on("0001") and V1.runs_on("0002")
    assert not V1.runs_on("0003")
    assert V2.runs_on("0003")


def test_a_revision_the_artefact_does_not_know_is_newer_than_it():
    assert not V2.runs_on("0009")
    with pytest.raises(CutoverError, match="revision 0009, which version 2.0.0 does not know"):
        V2.pending("0009", V2.needs)


def test_pending_expand_steps_between_current_and_needs():
    assert [r["id"] for r in V2.pending("0001", V2.needs)] == ["0002"]
    assert [r["id"] for r in V2.pending(None, V2.needs)] == ["0001", "0002"]
    assert V2.pending("0002", V2.needs) == []


ALEMBIC_STYLE = """BEGIN;

-- Running upgrade 0002 -> 0003

{statement};

UPDATE alembic_version SET version_num='0003' WHERE alembic_version.version_num = '0002';

COMMIT;
"""


def lint(statement: str):
    revision = {"id": "0003", "file": "0003_x.py"}
    return [v for v in _squawk(ALEMBIC_STYLE.format(statement=statement), revision) if v.rule in BLOCKING_RULES]


def test_drop_column_is_blocked_with_its_rule_and_line():
    (violation,) = lint("ALTER TABLE items DROP COLUMN body_length")
    assert violation.rule == "ban-drop-column"
    assert violation.line == 5
    assert violation.statement.startswith("ALTER TABLE items DROP COLUMN body_length")
    assert violation.describe().startswith("0003_x.py: rule ban-drop-column at line 5")


@pytest.mark.parametrize(
    "statement, rule",
    [
        ("ALTER TABLE items RENAME COLUMN body TO text", "renaming-column"),
        ("ALTER TABLE items ALTER COLUMN body TYPE varchar(10)", "changing-column-type"),
        ("ALTER TABLE items ADD COLUMN owner text NOT NULL", "adding-required-field"),
    ],
)
def test_backward_incompatible_expand_steps_are_blocked(statement, rule):
    assert rule in {v.rule for v in lint(statement)}


def test_an_additive_nullable_column_passes_the_gate():
    assert lint("ALTER TABLE items ADD COLUMN body_length integer") == []


# -- the migration contract (docs/migrations.md): what `describe` must print -----------------------

import json  # noqa: E402

from simulator.schema import parse_release  # noqa: E402

GOOD = {"contract": 1, "revisions": list(REVISIONS), "needs": "0002", "finalize_to": "0003", "works_until": "0003"}


def test_describe_output_is_read_from_its_last_line():
    release = parse_release("2.0.0", "INFO some log line\n" + json.dumps(GOOD) + "\n")
    assert release == V2


@pytest.mark.parametrize(
    "output, problem",
    [
        ("", "no JSON object"),
        ("not json", "not JSON"),
        (json.dumps({**GOOD, "contract": 2}), "'contract' is 2"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "contract"}), "'contract' is None"),
        (json.dumps({**GOOD, "revisions": [{"id": "0001"}]}), "'revisions' must be"),
        (json.dumps({**GOOD, "needs": "0009"}), "'needs' names '0009'"),
        (json.dumps({**GOOD, "revisions": [{**REVISIONS[0], "phase": "shrink"}], "needs": "0001", "finalize_to": "0001", "works_until": "0001"}), "phase"),
    ],
)
def test_describe_output_that_breaks_the_contract_is_one_sentence(output, problem):
    with pytest.raises(CutoverError) as raised:
        parse_release("2.0.0", output)
    message = str(raised.value)
    assert problem in message and "cutover-migrations/1" in message and "docs/migrations.md" in message
    assert "\n" not in message
