"""Empty ledger databases: a SQLite file in a folder, a brand-new PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

POSTGRES_ENV = "M22BOL_TEST_POSTGRES"


def sqlite_url(folder: Path | str) -> str:
    # An absolute folder yields the four-slash form SQLAlchemy expects.
    return f"sqlite:///{folder}/ledger.sqlite"


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a brand-new, empty database, dropped afterwards.

    One database per test keeps tests independent without any cleanup code in the tests,
    and CREATE DATABASE from template1 costs only a few milliseconds.
    """
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV} or run make test")

    # psycopg wants a libpq URL; the server URL is in SQLAlchemy form (postgresql+psycopg://).
    parts = urlsplit(server_url)
    admin_conninfo = parts._replace(scheme="postgresql").geturl()
    name = f"t_{uuid.uuid4().hex}"
    ident = sql.Identifier(name)

    # CREATE/DROP DATABASE cannot run inside a transaction block, hence autocommit.
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        # FORCE: a test that leaked a connection or pool must not make teardown fail.
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
