"""Alembic environment: every pending migration runs in ONE transaction, with a lock timeout.

PostgreSQL's DDL is transactional, so a run that fails half-way leaves the schema exactly as it was.
The lock timeout keeps a migration from queueing behind a long query while the live colour's
requests queue behind the migration.
"""

from alembic import context
from sqlalchemy import create_engine, pool, text

from db_settings import LOCK_TIMEOUT, STATEMENT_TIMEOUT, database_url

config = context.config


def run_offline() -> None:
    context.configure(url=database_url(redact=True), literal_binds=True, dialect_name="postgresql", transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=False)
        with context.begin_transaction():
            connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            connection.execute(text(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"))
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
