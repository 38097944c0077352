"""Ledger databases for one test: a SQLite file in a folder, a brand-new PostgreSQL database;
empty, or copied from an initialised one."""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

POSTGRES_ENV = "M22BOL_TEST_POSTGRES"


def sqlite_url(folder: Path | str) -> str:
    # An absolute folder yields the four-slash form SQLAlchemy expects.
    return f"sqlite:///{folder}/ledger.sqlite"


def copy_sqlite_ledger(source_url: str, folder: Path | str) -> str:
    """A copy of a closed SQLite ledger (the file and any journal beside it) in `folder`."""
    source = source_url.removeprefix("sqlite:///")
    url = sqlite_url(folder)
    for name in glob.glob(glob.escape(source) + "*"):
        shutil.copyfile(name, url.removeprefix("sqlite:///") + name[len(source):])
    return url


def libpq_url(url: str) -> str:
    """psycopg wants a libpq URL; ledger URLs are in SQLAlchemy form (postgresql+psycopg://)."""
    return urlsplit(url)._replace(scheme="postgresql").geturl()


def read_rows(url: str, query: str) -> list[tuple]:
    """The rows of one query, read straight from the ledger's database."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return conn.execute(query).fetchall()
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(query).fetchall()


@contextmanager
def fresh_postgres_database(template: str | None = None) -> Iterator[str]:
    """The URL of a brand-new database, dropped afterwards: empty, or a copy of the database
    `template` names (which nobody may be connected to).

    One database per test keeps tests independent without any cleanup code in the tests.
    """
    server_url = os.environ.get(POSTGRES_ENV)
    if not server_url:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV} or run make test")

    parts = urlsplit(server_url)
    admin_conninfo = libpq_url(server_url)
    name = f"t_{uuid.uuid4().hex}"
    ident = sql.Identifier(name)

    # CREATE/DROP DATABASE cannot run inside a transaction block, hence autocommit.
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        create = sql.SQL("CREATE DATABASE {}").format(ident)
        if template:
            create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(create)
    try:
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        # FORCE: a test that leaked a connection or pool must not make teardown fail.
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
