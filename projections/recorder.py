"""The read models' SQL, run on the event store's own database connection, and each
projection's tracking recorder.

The read models live in the ledger's database, and the event store already holds a connection
to it (`ledger.recorder.datastore`: sqlite3 or psycopg): writing the rows through it, as the
queries in `projections.stored` read them, costs no second connection and no SQLAlchemy import
(about 0.2 s of every entry's start-up, when the rows were written through SQLAlchemy Core).
SQLAlchemy compiles the tables' DDL (`projections.ddl`), imported only when tables are made.

Positions are kept with the `eventsourcing` library's tracking abstractions: a `Tracking`
(application name, notification id) is inserted by a `TrackingRecorder` in the same transaction
as the rows it accounts for, and `max_tracking_id` is where a projection resumes. Tracking is
single-row per (projection, application) and only moves forward: an insert that would not move
it forward raises the library's `IntegrityError`, which tells a concurrent updater that someone
else has already projected that far.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    PersistenceError,
    Tracking,
    TrackingRecorder,
)

from m22bol.projections import tables

if TYPE_CHECKING:
    from m22bol.ledger.app import TrialLedger

class PositionTaken(IntegrityError):
    """A concurrent updater has already moved the projection to this position or beyond."""


# How long a write waits for another writer (PostgreSQL's lock_timeout; on SQLite the store's
# busy timeout) before giving up; the runner then backs off and retries.
LOCK_TIMEOUT_S = 10


class Sql:
    """Statements on one cursor, written with `?` for parameters in both databases."""

    def __init__(self, cursor: Any, is_sqlite: bool):
        self.cursor = cursor
        self.is_sqlite = is_sqlite

    def run(self, statement: str, params: tuple | list = ()) -> None:
        self.cursor.execute(self._dialect(statement), params)

    def rows(self, statement: str, params: tuple | list = ()) -> list[dict[str, Any]]:
        self.run(statement, params)
        return [dict(row) for row in self.cursor.fetchall()]

    def insert(self, table: tables.Table, rows: list[dict[str, Any]]) -> None:
        """Insert whole rows; a column a row leaves out is NULL."""
        names = table.column_names
        statement = (f"INSERT INTO {table.name} ({', '.join(names)}) "
                     f"VALUES ({', '.join('?' * len(names))})")
        if self.is_sqlite:  # no date type: dates as ISO text, as the queries read them
            values = [tuple(v.isoformat() if isinstance(v, date) else v
                            for v in map(row.get, names)) for row in rows]
        else:
            values = [tuple(map(row.get, names)) for row in rows]
        self.cursor.executemany(self._dialect(statement), values)

    def delete_subjects(self, table: tables.Table, subjects: list[str]) -> None:
        self.run(f"DELETE FROM {table.name} WHERE subject IN ({', '.join('?' * len(subjects))})",
                 subjects)

    def _dialect(self, statement: str) -> str:
        return statement if self.is_sqlite else statement.replace("?", "%s")


class ReadModelStore:
    """Transactions on the ledger's own database connection, and the read models' DDL."""

    def __init__(self, ledger: TrialLedger):
        datastore = getattr(ledger.recorder, "datastore", None)
        kind = type(datastore).__module__.rsplit(".", 1)[-1]
        if kind not in ("sqlite", "postgres"):
            raise ValueError(f"read models need a SQLite or PostgreSQL ledger, not {ledger.url!r}")
        self.datastore = datastore
        self.is_sqlite = kind == "sqlite"

    @contextmanager
    def transaction(self, *, lock_timeout: int = LOCK_TIMEOUT_S) -> Iterator[Sql]:
        """A write transaction. SQLite takes the database's write lock at BEGIN (IMMEDIATE),
        so reads inside see the latest commit and the upgrade from reader to writer cannot
        fail half way. Database errors come out as the library's persistence errors, so the
        runner handles both stores alike."""
        if not self.is_sqlite:
            # The store's transaction turns psycopg's errors into the library's.
            with self.datastore.transaction(commit=True) as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout)}s'")
                yield Sql(cursor, False)
            return
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                yield Sql(cursor, True)
                conn.commit()
            except BaseException as exc:
                conn.rollback()
                if isinstance(exc, sqlite3.IntegrityError):
                    raise IntegrityError(str(exc)) from exc
                if isinstance(exc, sqlite3.OperationalError):  # "database is locked"
                    raise OperationalError(str(exc)) from exc
                raise

    @contextmanager
    def reading(self) -> Iterator[Sql]:
        """A read-only transaction: one consistent view of the read models."""
        with self.datastore.transaction(commit=False) as cursor:
            yield Sql(cursor, self.is_sqlite)

    def ensure_tables(self, projections: dict[str, tuple[tables.Table, ...]],
                      version: int) -> None:
        """Create what is missing; drop and recreate (at position zero) every projection whose
        tables or row-making `version` changed since the database was last written, so a new
        build never writes rows of one shape into tables of another."""
        wanted = {name: fingerprint(owned, version) for name, owned in projections.items()}
        if self._current(wanted):
            return
        from m22bol.projections import ddl  # SQLAlchemy: only when tables must be made

        with self.transaction(lock_timeout=60) as sql:
            self._serialise_ddl(sql)
            for table in (tables.tracking, tables.schema):
                for statement in ddl.create(table, is_sqlite=self.is_sqlite):
                    sql.run(statement)
            found = {r["projection"]: r["fingerprint"]
                     for r in sql.rows(f"SELECT * FROM {tables.schema.name}")}
            for name, wanted_print in wanted.items():
                if found.get(name) == wanted_print:
                    continue
                self.recreate(sql, [t.name for t in projections[name]])
                for table in (tables.tracking, tables.schema):
                    sql.run(f"DELETE FROM {table.name} WHERE projection = ?", (name,))
                sql.insert(tables.schema, [{"projection": name, "fingerprint": wanted_print}])

    def _current(self, wanted: dict[str, str]) -> bool:
        try:
            with self.reading() as sql:
                found = {r["projection"]: r["fingerprint"]
                         for r in sql.rows(f"SELECT * FROM {tables.schema.name}")}
        except PersistenceError:
            return False  # no schema table yet: a database the read models never touched
        return all(found.get(name) == print_ for name, print_ in wanted.items())

    def recreate(self, sql: Sql, names: list[str]) -> None:
        """Drop and create the named tables, inside the caller's transaction."""
        from m22bol.projections import ddl  # SQLAlchemy: only when tables must be made

        self._serialise_ddl(sql)
        for name in names:
            table = tables.BY_NAME[name]
            sql.run(ddl.drop(table, is_sqlite=self.is_sqlite))
            for statement in ddl.create(table, is_sqlite=self.is_sqlite):
                sql.run(statement)

    def empty(self, sql: Sql, names: list[str]) -> None:
        """Delete every row of the named tables, inside the caller's transaction."""
        for name in names:
            sql.run(f"DELETE FROM {name}")

    def _serialise_ddl(self, sql: Sql) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog
        # (duplicate key in pg_type); SQLite is already serialised by BEGIN IMMEDIATE.
        if not self.is_sqlite:
            sql.run("SELECT pg_advisory_xact_lock(?)", (_DDL_LOCK_KEY,))

    def close(self) -> None:
        """Nothing of its own to close: the connection is the event store's."""


def fingerprint(owned: tuple[tables.Table, ...], version: int) -> str:
    """Of the tables' definitions (names, types, keys, indexes) and of how rows are made: read
    on every command, so computed without compiling any DDL."""
    return hashlib.sha256("\n".join([f"rows {version}", *map(repr, owned)]).encode()).hexdigest()


# An arbitrary constant naming "DDL of the m22bol read models" among advisory locks.
_DDL_LOCK_KEY = 0x6D32_3262_6F6C


class ProjectionTracking(TrackingRecorder):
    """One projection's tracking recorder: its position in each application's log."""

    def __init__(self, store: ReadModelStore, projection: str):
        self.store = store
        self.projection = projection

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.store.transaction() as sql:
            self.insert_tracking_in(sql, tracking)

    def insert_tracking_in(self, sql: Sql, tracking: Tracking) -> None:
        """Move the position forward inside the caller's transaction, or raise IntegrityError."""
        move_forward(sql, [self], tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        return positions(self.store, application_name).get(self.projection)

    def forget(self, sql: Sql) -> None:
        """Back to no position at all, inside the caller's transaction (for a rebuild)."""
        sql.run(f"DELETE FROM {tables.tracking.name} WHERE projection = ?", (self.projection,))


def move_forward(sql: Sql, recorders: list[ProjectionTracking], tracking: Tracking) -> None:
    """Move several projections to one position with one statement (one round trip), or raise
    PositionTaken (an IntegrityError) if any of them is already there or beyond; the caller
    then rolls back.

    On PostgreSQL the upsert waits for a concurrent updater's row locks and then judges against
    what that updater committed, so two updaters cannot both move a projection to the same (or
    an older) position; on SQLite the write lock taken at BEGIN orders them.
    """
    t = tables.tracking.name
    values = ", ".join(["(?, ?, ?)"] * len(recorders))
    params = [v for r in recorders
              for v in (r.projection, tracking.application_name, tracking.notification_id)]
    moved = {row["projection"] for row in sql.rows(
        f"INSERT INTO {t} (projection, application_name, notification_id) VALUES {values} "
        "ON CONFLICT (projection, application_name) DO UPDATE "
        "SET notification_id = excluded.notification_id "
        f"WHERE {t}.notification_id < excluded.notification_id RETURNING projection", params)}
    if already := sorted({r.projection for r in recorders} - moved):
        raise PositionTaken(
            f"{', '.join(already)}: {tracking.application_name} is already projected to "
            f"notification {tracking.notification_id} or beyond"
        )


def positions(store: ReadModelStore, application_name: str) -> dict[str, int]:
    """Every projection's position in the application's log, in one query."""
    with store.reading() as sql:
        found = sql.rows(f"SELECT projection, notification_id FROM {tables.tracking.name} "
                         "WHERE application_name = ?", (application_name,))
    return {row["projection"]: row["notification_id"] for row in found}
