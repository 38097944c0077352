"""The read models' database (SQLAlchemy Core on the ledger's own database) and each
projection's tracking recorder.

Positions are kept with the `eventsourcing` library's tracking abstractions: a `Tracking`
(application name, notification id) is inserted by a `TrackingRecorder` in the same transaction
as the rows it accounts for, and `max_tracking_id` is where a projection resumes. Tracking is
single-row per (projection, application) and only moves forward: an insert that would not move
it forward raises the library's `IntegrityError`, which tells a concurrent updater that someone
else has already projected that far.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from eventsourcing.persistence import (
    IntegrityError,
    OperationalError,
    Tracking,
    TrackingRecorder,
)
from sqlalchemy import event

from m22bol.ledger.store import sqlite_name
from m22bol.projections import tables

# How long a write waits for another writer (SQLite's busy timeout, PostgreSQL's lock_timeout)
# before giving up; the runner then backs off and retries.
LOCK_TIMEOUT_S = 10


def sqlalchemy_url(ledger_url: str) -> str:
    """The SQLAlchemy URL of the database the ledger's events are in."""
    scheme, sep, rest = ledger_url.partition("://")
    base = scheme.split("+")[0]
    if not sep:
        raise ValueError(f"not a database URL: {ledger_url!r}")
    if base == "sqlite":
        # A read-only file is opened as the event store opens it, so queries still work.
        name = sqlite_name(rest.removeprefix("/"))
        return "sqlite:///" + (name + "&uri=true" if name.startswith("file:") else name)
    if base in ("postgresql", "postgres"):
        # The store speaks psycopg 3; without a driver SQLAlchemy would pick psycopg2.
        return "postgresql+psycopg://" + rest
    raise ValueError(f"unsupported ledger URL scheme: {scheme!r}")


class ReadModelStore:
    """An engine on the ledger's database, write transactions that serialise writers, DDL."""

    def __init__(self, ledger_url: str):
        url = sqlalchemy_url(ledger_url)
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = sa.create_engine(url, connect_args={"timeout": LOCK_TIMEOUT_S})
            _begin_immediately(self.engine)
        else:
            self.engine = sa.create_engine(url, pool_size=2, max_overflow=2)

    @contextmanager
    def transaction(self, *, lock_timeout: int = LOCK_TIMEOUT_S) -> Iterator[sa.Connection]:
        """A write transaction. SQLite takes the database's write lock at BEGIN (IMMEDIATE),
        so reads inside see the latest commit and the upgrade from reader to writer cannot
        fail half way. Database errors come out as the library's persistence errors, so the
        runner handles both stores alike."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(m22bol_write=True)
                with conn.begin():
                    if not self.is_sqlite:
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(lock_timeout)}s'")
                    yield conn
        except sa.exc.IntegrityError as exc:
            raise IntegrityError(str(exc.orig)) from exc
        except sa.exc.OperationalError as exc:
            # SQLite "database is locked"; PostgreSQL lock timeouts, deadlocks, serialisation
            # failures (psycopg files all of these under OperationalError).
            raise OperationalError(str(exc.orig)) from exc

    def ensure_tables(self, projections: dict[str, tuple[sa.Table, ...]],
                      version: int) -> None:
        """Create what is missing; drop and recreate (at position zero) every projection whose
        tables or row-making `version` changed since the database was last written, so a new
        build never writes rows of one shape into tables of another."""
        wanted = {name: self._fingerprint(owned, version) for name, owned in projections.items()}
        if self._current(wanted):
            return
        with self.transaction(lock_timeout=60) as conn:
            self._serialise_ddl(conn)
            tables.metadata.create_all(
                conn, tables=[tables.tracking, tables.schema], checkfirst=True)
            s = tables.schema
            found = {r.projection: r.fingerprint for r in conn.execute(sa.select(s))}
            for name, fingerprint in wanted.items():
                if found.get(name) == fingerprint:
                    continue
                self.recreate(conn, [t.name for t in projections[name]])
                t = tables.tracking
                conn.execute(sa.delete(t).where(t.c.projection == name))
                conn.execute(sa.delete(s).where(s.c.projection == name))
                conn.execute(sa.insert(s), {"projection": name, "fingerprint": fingerprint})

    def _current(self, wanted: dict[str, str]) -> bool:
        with self.engine.connect() as conn:
            try:
                s = tables.schema
                found = {r.projection: r.fingerprint for r in conn.execute(sa.select(s))}
            except (sa.exc.OperationalError, sa.exc.ProgrammingError):
                return False  # no schema table yet: a database the read models never touched
        return all(found.get(name) == fingerprint for name, fingerprint in wanted.items())

    def _fingerprint(self, owned: tuple[sa.Table, ...], version: int) -> str:
        from sqlalchemy.schema import CreateIndex, CreateTable

        ddl = [str(CreateTable(t).compile(self.engine)) for t in owned]
        ddl += [str(CreateIndex(i).compile(self.engine)) for t in owned
                for i in sorted(t.indexes, key=lambda i: i.name or "")]
        return hashlib.sha256("\n".join([f"rows {version}", *ddl]).encode()).hexdigest()

    def recreate(self, conn: sa.Connection, names: list[str]) -> None:
        """Drop and create the named tables, inside the caller's transaction."""
        self._serialise_ddl(conn)
        chosen = [tables.BY_NAME[n] for n in names]
        tables.metadata.drop_all(conn, tables=chosen, checkfirst=True)
        tables.metadata.create_all(conn, tables=chosen, checkfirst=True)

    def empty(self, conn: sa.Connection, names: list[str]) -> None:
        """Delete every row of the named tables, inside the caller's transaction."""
        for name in names:
            conn.execute(sa.delete(tables.BY_NAME[name]))

    def _serialise_ddl(self, conn: sa.Connection) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog
        # (duplicate key in pg_type); SQLite is already serialised by BEGIN IMMEDIATE.
        if not self.is_sqlite:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK_KEY})

    def close(self) -> None:
        self.engine.dispose()


# An arbitrary constant naming "DDL of the m22bol read models" among advisory locks.
_DDL_LOCK_KEY = 0x6D32_3262_6F6C


def _begin_immediately(engine: sa.Engine) -> None:
    """pysqlite's own BEGIN is deferred and issued lazily; take control of it instead."""

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        # In WAL mode NORMAL still survives a crash of the process; a power cut may lose the
        # last commits, which take their positions with them: the read models are then
        # behind, never inconsistent, and they are derived data anyway. Saves an fsync.
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("m22bol_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class ProjectionTracking(TrackingRecorder):
    """One projection's tracking recorder: its position in each application's log."""

    def __init__(self, store: ReadModelStore, projection: str):
        self.store = store
        self.projection = projection

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.store.transaction() as conn:
            self.insert_tracking_in(conn, tracking)

    def insert_tracking_in(self, conn: sa.Connection, tracking: Tracking) -> None:
        """Move the position forward inside the caller's transaction, or raise IntegrityError."""
        move_forward(conn, [self], tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        return positions(self.store, application_name).get(self.projection)

    def forget(self, conn: sa.Connection) -> None:
        """Back to no position at all, inside the caller's transaction (for a rebuild)."""
        t = tables.tracking
        conn.execute(sa.delete(t).where(t.c.projection == self.projection))


def move_forward(conn: sa.Connection, recorders: list[ProjectionTracking],
                 tracking: Tracking) -> None:
    """Move several projections to one position with one statement (one round trip), or raise
    IntegrityError if any of them is already there or beyond; the caller then rolls back.

    On PostgreSQL the upsert waits for a concurrent updater's row locks and then judges against
    what that updater committed, so two updaters cannot both move a projection to the same (or
    an older) position; on SQLite the write lock taken at BEGIN orders them.
    """
    t = tables.tracking
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    upsert = insert(t).values([
        {"projection": r.projection, "application_name": tracking.application_name,
         "notification_id": tracking.notification_id} for r in recorders])
    upsert = upsert.on_conflict_do_update(
        index_elements=[t.c.projection, t.c.application_name],
        set_={"notification_id": upsert.excluded.notification_id},
        where=t.c.notification_id < upsert.excluded.notification_id,
    ).returning(t.c.projection)
    moved = {row.projection for row in conn.execute(upsert)}
    if already := sorted({r.projection for r in recorders} - moved):
        raise IntegrityError(
            f"{', '.join(already)}: {tracking.application_name} is already projected to "
            f"notification {tracking.notification_id} or beyond"
        )


def positions(store: ReadModelStore, application_name: str) -> dict[str, int]:
    """Every projection's position in the application's log, in one query."""
    t = tables.tracking
    query = sa.select(t.c.projection, t.c.notification_id).where(
        t.c.application_name == application_name)
    with store.engine.connect() as conn:
        return {row.projection: row.notification_id for row in conn.execute(query)}
