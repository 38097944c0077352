"""A running digest over the notification log, written in the same transaction as the events.

`d(n) = SHA-256(d(previous) | n | aggregate | version | topic | SHA-256(state))`, starting from 32
zero bytes, folded over every stored event in log order. Each write transaction appends one row
(its last log position, the digest there) to `m22bol_log_digests`, which is append-only like the
events. The row costs one indexed read and one insert per save, whatever the ledger's size.

What it is for: an account that remembers (position, digest) from its last command can check
on its next run that the ledger still holds that history by reading one row and the events
added since (`ledger.seen`). An attacker who rewrites or truncates history either leaves the
table alone, and then `audit verify`, which recomputes the digest over every event, names the
first row that no longer matches, or rewrites the table too, and then every account that saw a
rewritten position notices. Doing both unnoticed needs every such account's state file as well.

It lives in the store layer because only the recorder's insert runs inside the transaction that
writes the events (and, on PostgreSQL, under the table lock that orders the log).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

DIGESTS = "m22bol_log_digests"
GENESIS = bytes(32)


def aggregate_text(value: Any) -> str:
    """The aggregate id as folded: the 32 hex digits SQLite stores, whatever the column type."""
    return value.hex if isinstance(value, UUID) else str(value)


def fold(digest: bytes, position: int, aggregate: str, version: int, topic: str,
         state_sha: bytes) -> bytes:
    head = f"{position}\x00{aggregate}\x00{version}\x00{topic}\x00".encode()
    return hashlib.sha256(digest + head + state_sha).digest()


def fold_rows(digest: bytes, rows: Iterable[tuple]) -> tuple[int | None, bytes]:
    """Fold (position, aggregate, version, topic, state) rows; the last position and digest."""
    position = None
    for position, aggregate, version, topic, state in rows:
        digest = fold(digest, position, aggregate_text(aggregate), version, topic,
                      hashlib.sha256(state).digest())
    return position, digest


def events_query(url: str) -> str:
    """Events after a position, in log order, as (position, aggregate, version, topic, state)."""
    if url.startswith("sqlite"):
        return ("SELECT rowid, originator_id, originator_version, topic, state "
                "FROM stored_events WHERE rowid > {p} AND rowid <= {p} ORDER BY rowid")
    return ("SELECT notification_id, originator_id, originator_version, topic, state "
            "FROM m22bol_events WHERE notification_id > {p} AND notification_id <= {p} "
            "ORDER BY notification_id")


def _extend(execute, url: str, last_position: int) -> None:
    """Append the digest at `last_position`, folding every event after the newest row (the
    events this transaction wrote, or on a ledger made before this table, all of them)."""
    p = "?" if url.startswith("sqlite") else "%s"
    rows = execute(f"SELECT position, digest FROM {DIGESTS} ORDER BY position DESC LIMIT 1", ())
    start, digest = (rows[0][0], bytes.fromhex(rows[0][1])) if rows else (0, GENESIS)
    _, digest = fold_rows(digest, execute(events_query(url).format(p=p),
                                          (start, last_position)))
    execute(f"INSERT INTO {DIGESTS} (position, digest) VALUES ({p}, {p})",
            (last_position, digest.hex()), fetch=False)


def create_statement(url: str) -> str:
    kind = "INTEGER" if url.startswith("sqlite") else "BIGINT"
    return (f"CREATE TABLE IF NOT EXISTS {DIGESTS} (position {kind} PRIMARY KEY, "
            "digest TEXT NOT NULL)")


class SQLiteLedgerRecorder(SQLiteApplicationRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), create_statement("sqlite")]

    def _insert_events(self, c, stored_events, **kwargs):
        ids = super()._insert_events(c, stored_events, **kwargs)
        if ids:
            def execute(sql: str, params: tuple, fetch: bool = True) -> list:
                c.execute(sql, params)
                return [tuple(r) for r in c.fetchall()] if fetch else []

            _extend(execute, "sqlite", ids[-1])
        return ids


class PostgresLedgerRecorder(PostgresApplicationRecorder):
    def __init__(self, *args, **kwargs):
        from psycopg.sql import SQL

        super().__init__(*args, **kwargs)
        self.sql_create_statements.append(SQL(create_statement("postgres")))

    def _fetch_ids_after_insert_events(self, curs, stored_events, **kwargs):
        # Runs inside the insert's transaction, after the table lock that orders the log.
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if ids:
            def execute(sql: str, params: tuple, fetch: bool = True) -> list:
                curs.execute(sql, params)
                if not fetch:
                    return []
                return [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                        for r in curs.fetchall()]

            _extend(execute, "postgres", ids[-1])
        return ids


# --- reading ------------------------------------------------------------------------------------


def query(ledger, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of one read-only statement on the ledger's own connection; `{p}` is the
    placeholder."""
    sql = sql.format(p="?" if ledger.url.startswith("sqlite") else "%s")
    with ledger.recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(sql, params)
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                for r in cursor.fetchall()]


def digest_at_or_before(ledger, position: int) -> tuple[int, bytes]:
    """The newest recorded (position, digest) at or before `position`; (0, genesis) if none."""
    rows = query(ledger, f"SELECT position, digest FROM {DIGESTS} WHERE position <= {{p}} "
                 "ORDER BY position DESC LIMIT 1", (position,))
    return (rows[0][0], bytes.fromhex(rows[0][1])) if rows else (0, GENESIS)


def recorded(ledger, position: int) -> bytes | None:
    rows = query(ledger, f"SELECT digest FROM {DIGESTS} WHERE position = {{p}}", (position,))
    return bytes.fromhex(rows[0][0]) if rows else None


def newest(ledger) -> int:
    rows = query(ledger, f"SELECT max(position) FROM {DIGESTS}")
    return rows[0][0] or 0


def fold_events(ledger, digest: bytes, after: int, upto: int) -> tuple[int | None, bytes]:
    """Fold the stored events in (after, upto]; the last position folded and the digest."""
    return fold_rows(digest, query(ledger, events_query(ledger.url), (after, upto)))


def max_position(ledger) -> int:
    return ledger.recorder.max_notification_id() or 0
