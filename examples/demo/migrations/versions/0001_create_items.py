"""Release 1: the items table.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
phase = "expand"
release = 1


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE items (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            body text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
