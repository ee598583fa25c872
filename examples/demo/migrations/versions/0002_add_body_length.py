"""Release 2, expand: a nullable column that version 2 fills and version 1 simply ignores.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"
phase = "expand"
release = 2


def upgrade() -> None:
    op.execute("ALTER TABLE items ADD COLUMN body_length integer")
