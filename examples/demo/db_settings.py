"""Where the database is, from the container's environment (the password is a stack secret)."""

import os
from urllib.parse import quote

LOCK_TIMEOUT = os.environ.get("MIGRATION_LOCK_TIMEOUT", "5s")
STATEMENT_TIMEOUT = os.environ.get("MIGRATION_STATEMENT_TIMEOUT", "60s")


def connection_kwargs() -> dict:
    return {
        "host": os.environ.get("DATABASE_HOST", "db"),
        "dbname": os.environ.get("DATABASE_NAME", "cutover"),
        "user": os.environ.get("DATABASE_USER", "cutover"),
        "password": os.environ.get("DATABASE_PASSWORD", ""),
        "connect_timeout": 5,
    }


def database_url(redact: bool = False) -> str:
    k = connection_kwargs()
    password = "***" if redact else quote(k["password"], safe="")
    return f"postgresql+psycopg2://{quote(k['user'])}:{password}@{k['host']}/{k['dbname']}"
