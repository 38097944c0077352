"""Ledger databases for one test: a SQLite file in a folder, a brand-new PostgreSQL database;
empty, or copied from an initialised one. A new PostgreSQL database is set up as a site's
owner sets one up (`m22bol db setup`): ordinary commands create nothing."""

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

import orjson
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


def forge_trial_snapshot(url: str, change) -> None:
    """An attacker with write access to a SQLite ledger's file rewrites the trial's latest
    snapshot: `change` edits its decoded body in place."""
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db, db:
        version, state = db.execute("SELECT originator_version, state FROM stored_snapshots "
                                    "ORDER BY originator_version DESC LIMIT 1").fetchone()
        body = orjson.loads(state)
        change(body)
        db.execute("UPDATE stored_snapshots SET state = ? WHERE originator_version = ?",
                   (orjson.dumps(body), version))


@contextmanager
def fresh_postgres_database(template: str | None = None) -> Iterator[str]:
    """The URL of a brand-new database, dropped afterwards with its group roles: empty but set
    up by its owner (`db setup`: tables, triggers, the writer and reader roles), or a copy of
    the database `template` names (which nobody may be connected to).

    One database per test keeps tests independent without any cleanup code in the tests. A
    copy has the template's tables, triggers and grants, the grants naming the template's
    roles (the copy has none of its own): the tests act on it as the owner. Tests with real
    staff logins take a database set up for itself (`postgres_url`).
    """
    from m22bol.cli.db import setup_database
    from m22bol.ledger.postgres import group_roles

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
    url = parts._replace(path=f"/{name}").geturl()
    try:
        if not template:
            setup_database(url)
        yield url
    finally:
        # FORCE: a test that leaked a connection or pool must not make teardown fail.
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
            for role in group_roles(url):  # roles are the server's, not the database's
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
