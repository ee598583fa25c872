"""Migrations the tests put into a copy of the demo: the same text wherever a test needs it, so a
version built from it (its tag names its source) is the same artefact in every test."""

from __future__ import annotations

# Replaces the demo's own 0003: an expand step that drops a column, which old code still reads.
# The migration lint gate must refuse it before anything runs (rule ban-drop-column).
DROP_COLUMN_FILE = "0003_drop_body_length.py"
DROP_COLUMN_REPLACES = "0003_require_body_length.py"
DROP_COLUMN = '''\
from alembic import op
revision = "0003"
down_revision = "0002"
phase = "expand"
release = 5
def upgrade():
    op.execute("ALTER TABLE items DROP COLUMN body_length")
'''
