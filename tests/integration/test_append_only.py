"""The event store is append-only in the database itself: UPDATE and DELETE issued directly in
SQL (and TRUNCATE on PostgreSQL) fail, whoever sends them, and nothing changes."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from urllib.parse import urlsplit

import psycopg
import pytest

from m22bol.ledger.store import events_table
from tests.support import Driver, new_ledger, open_ledger, store_fingerprint


def sqlite_path(url: str) -> str:
    return url.split("///", 1)[1]


def postgres_conninfo(url: str) -> str:
    return urlsplit(url)._replace(scheme="postgresql").geturl()


def execute_directly(url: str, statement: str) -> None:
    """One statement through the database's own driver, outside the ledger, committed."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(sqlite_path(url))) as con:
            con.execute(statement)
            con.commit()
    else:
        with psycopg.connect(postgres_conninfo(url), autocommit=True) as con:
            con.execute(statement)


REFUSED = (sqlite3.IntegrityError, psycopg.errors.RaiseException)


@pytest.fixture
def recorded(ledger):
    Driver(ledger).enrolled("M22-001")
    return ledger.url


@pytest.mark.parametrize("statement", [
    "UPDATE {table} SET state = state",
    "UPDATE {table} SET originator_version = originator_version + 100",
    "DELETE FROM {table}",
    "DELETE FROM {table} WHERE originator_version = 2",
])
def test_update_and_delete_in_sql_are_refused(recorded, statement):
    before = store_fingerprint(recorded)

    with pytest.raises(REFUSED, match="append-only"):
        execute_directly(recorded, statement.format(table=events_table(recorded)))

    assert store_fingerprint(recorded) == before


@pytest.mark.postgres
def test_truncate_is_refused_on_postgres(postgres_url):
    new_ledger(postgres_url).close()
    before = store_fingerprint(postgres_url)

    with pytest.raises(psycopg.errors.RaiseException, match="TRUNCATE refused"):
        execute_directly(postgres_url, f"TRUNCATE {events_table(postgres_url)}")

    assert store_fingerprint(postgres_url) == before


def test_new_events_are_still_appended(recorded):
    before = len(store_fingerprint(recorded))
    ledger = open_ledger(recorded)
    try:
        Driver(ledger).do("contact", subject="M22-001", date="2025-02-01")
    finally:
        ledger.close()
    assert len(store_fingerprint(recorded)) == before + 1


def test_opening_the_ledger_puts_dropped_triggers_back(sqlite_url):
    new_ledger(sqlite_url).close()
    for op in ("update", "delete"):
        execute_directly(sqlite_url, f"DROP TRIGGER stored_events_no_{op}")
    execute_directly(sqlite_url, "UPDATE stored_events SET state = state")  # unprotected now

    open_ledger(sqlite_url).close()

    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        execute_directly(sqlite_url, "DELETE FROM stored_events")
