"""Release 2, contract: backfill, then require the column. Version 1 cannot insert after this.

Runs only from `cutover finalize`, once the colour still running version 1 is retired.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
phase = "contract"
release = 2


def upgrade() -> None:
    op.execute("UPDATE items SET body_length = length(body) WHERE body_length IS NULL")
    op.execute("ALTER TABLE items ALTER COLUMN body_length SET NOT NULL")
