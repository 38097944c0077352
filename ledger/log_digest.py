"""A running digest over the notification log, written in the same transaction as the events.

Each write transaction appends one row to `m22bol_log_digests`: its last log position and

    d = SHA-256(d_before | for each event it wrote: position, aggregate, version, topic,
                SHA-256(stored bytes))

where `d_before` is the previous row's digest (32 zero bytes for the first). So every row
vouches for the whole log up to its position. The row costs one indexed read and one insert per
save, whatever the ledger's size; the table is append-only like the events.

What it is for: an account that remembers (position, digest) of a row from its last command
checks on its next run that the ledger still holds that history by reading that row, and the
events and rows added since (`ledger.seen`). An attacker who rewrites or truncates history either
leaves the table alone, and then `audit verify`, which recomputes the digest over every event,
names the first row that no longer matches, or rewrites the table too, and then every account
that saw a rewritten row notices. Doing both unnoticed needs every such account's state file.

It lives in the store layer because only the recorder's insert runs inside the transaction that
writes the events (and, on PostgreSQL, under the table lock that orders the log). The
PostgreSQL recorder is in `log_digest_postgres`, so a SQLite ledger never loads psycopg.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from m22bol.ledger.places import events_table, log_position

DIGESTS = "m22bol_log_digests"
GENESIS = bytes(32)


def aggregate_text(value: Any) -> str:
    """The aggregate id as folded: the 32 hex digits SQLite stores, whatever the column type."""
    return value.hex if isinstance(value, UUID) else str(value)


class Folding:
    """The digest of one stretch of the log, from the digest of the row before it."""

    def __init__(self, digest: bytes = GENESIS):
        self._hash = hashlib.sha256(digest)
        # What `add` feeds it, for a caller folding a million events without the call.
        self.update = self._hash.update

    def add(self, position: int, aggregate: str, version: int, topic: str,
            state_sha: bytes) -> None:
        self.update(f"{position}\x00{aggregate}\x00{version}\x00{topic}\x00".encode()
                    + state_sha)

    def digest(self) -> bytes:
        return self._hash.digest()


def fold_rows(digest: bytes, rows: Iterable[tuple]) -> tuple[int | None, bytes]:
    """Fold (position, aggregate, version, topic, state) rows as one stretch; the last position
    and the digest."""
    folding, position = Folding(digest), None
    for position, aggregate, version, topic, state in rows:
        folding.add(position, aggregate_text(aggregate), version, topic,
                    hashlib.sha256(state).digest())
    return position, folding.digest()


def events_query(url: str) -> str:
    """Events after a position, in log order, as (position, aggregate, version, topic, state);
    `{p}` is the placeholder."""
    table, position = events_table(url), log_position(url)
    return (f"SELECT {position}, originator_id, originator_version, topic, state FROM {table} "
            f"WHERE {position} > {{p}} AND {position} <= {{p}} ORDER BY {position}")


class Extension:
    """The digest row one write transaction appends. Started from the newest row, fed every
    stretch of events the transaction inserts (one, or a page at a time for an import), and
    written once, just before the commit: one row per transaction, however many pages."""

    def __init__(self, execute, url: str):
        self.execute, self.url = execute, url
        rows = execute(f"SELECT position, digest FROM {DIGESTS} ORDER BY position DESC LIMIT 1",
                       ())
        self.start, self.before = (rows[0][0], bytes.fromhex(rows[0][1])) if rows \
            else (0, GENESIS)
        self.folding = Folding(self.before)
        self.folded = 0
        self.last: int | None = None

    def fold(self, ids: list[int], rows: list[tuple], digests: list[bytes] | None = None
             ) -> None:
        """Fold events just inserted, from memory, in log order: `rows` as inserted
        (aggregate, version, topic, state), `digests` the SHA-256 of each state when the
        caller has them already (the hash chain made them)."""
        if digests is None:
            digests = [hashlib.sha256(row[3]).digest() for row in rows]
        # The same bytes `Folding.add` feeds, in one update per page (SHA-256 is a stream).
        self.folding.update(b"".join(
            f"{i}\x00{aggregate_text(aggregate)}\x00{version}\x00{topic}\x00".encode() + digest
            for i, (aggregate, version, topic, _), digest in zip(ids, rows, digests,
                                                                 strict=True)))
        self.folded += len(ids)
        self.last = ids[-1] if ids else self.last

    def write(self) -> None:
        """Append the row at the transaction's last position. Folded from memory when the
        events folded are all there is since the newest row; on a ledger made before this
        table (or after a hole), everything since, read back."""
        if self.last is None:
            return
        p = "?" if self.url.startswith("sqlite") else "%s"
        table, position = events_table(self.url), log_position(self.url)
        between = self.execute(f"SELECT count(*) FROM {table} WHERE {position} > {p} AND "
                               f"{position} <= {p}", (self.start, self.last))[0][0]
        if between == self.folded:
            digest = self.folding.digest()
        else:
            _, digest = fold_rows(self.before, self.execute(events_query(self.url).format(p=p),
                                                            (self.start, self.last)))
        self.execute(f"INSERT INTO {DIGESTS} (position, digest) VALUES ({p}, {p})",
                     (self.last, digest.hex()), fetch=False)


def extend(execute, url: str, ids: list[int], rows: list[tuple]) -> None:
    """Append the digest at this transaction's last position (one stretch of events)."""
    extension = Extension(execute, url)
    extension.fold(ids, rows)
    extension.write()


def rows_of(stored_events) -> list[tuple]:
    """The library's `StoredEvent`s as the rows `insert_page` takes."""
    return [(s.originator_id, s.originator_version, s.topic, s.state) for s in stored_events]


def create_statement(url: str) -> str:
    kind = "INTEGER" if url.startswith("sqlite") else "BIGINT"
    return (f"CREATE TABLE IF NOT EXISTS {DIGESTS} (position {kind} PRIMARY KEY, "
            "digest TEXT NOT NULL)")


class SQLiteLedgerRecorder(SQLiteApplicationRecorder):
    """The library's SQLite recorder, inserting a batch in one `executemany` (the library
    inserts row by row to learn each row's position) and keeping the log's digest.

    `insert_page` and `select_aggregate` work on a cursor the caller holds, so that a long
    import can write page after page in one open transaction and read back what it wrote
    (`ledger.paging`)."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), create_statement("sqlite")]

    def _insert_events(self, c, stored_events, **kwargs):
        rows = rows_of(stored_events)
        ids = self.insert_page(c, rows)
        if ids:
            extend(self.executor(c), "sqlite", ids, rows)
        return ids

    def insert_page(self, c, rows: list[tuple]) -> list[int]:
        """Insert (aggregate, version, topic, state) rows; their positions. SQLite gives each
        new row one more than the largest rowid, and this transaction holds the write lock
        from its first insert, so the page's rows are the last len(page) positions (the
        digest's count checks it)."""
        if not rows:
            return []
        c.executemany(self.insert_events_statement, [
            (aggregate.hex if isinstance(aggregate, UUID) else aggregate, version, topic, state)
            for aggregate, version, topic, state in rows])
        c.execute(self.select_max_notification_id_statement)
        last = c.fetchone()[0]
        return list(range(last - len(rows) + 1, last + 1))

    def select_aggregate(self, c, originator_id: UUID) -> list[StoredEvent]:
        c.execute(self.select_events_statement + "ORDER BY originator_version",
                  (originator_id.hex,))
        return [StoredEvent(originator_id=self.convert_originator_id(r["originator_id"]),
                            originator_version=r["originator_version"], topic=r["topic"],
                            state=r["state"]) for r in c.fetchall()]

    @staticmethod
    def executor(c):
        def execute(sql: str, params: tuple, fetch: bool = True) -> list:
            c.execute(sql, params)
            return [tuple(r) for r in c.fetchall()] if fetch else []

        return execute


# --- reading ------------------------------------------------------------------------------------


def query(ledger, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of one read-only statement on the ledger's own connection; `{p}` is the
    placeholder."""
    sql = sql.format(p="?" if ledger.url.startswith("sqlite") else "%s")
    with ledger.recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(sql, params)
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                for r in cursor.fetchall()]


def events_between(ledger, start: int, stop: int, page: int = 5000):
    """The events in log positions (start, stop] as `events_query` rows, read a page at a
    time: after a million-line import that is a million states, which read at once were
    gigabytes of memory (bench/README.md, "Writing")."""
    sql = events_query(ledger.url) + f" LIMIT {int(page)}"
    while start < stop:
        rows = query(ledger, sql, (start, stop))
        yield from rows
        if len(rows) < page:
            return
        start = rows[-1][0]


def recorded_after(ledger, position: int) -> list[tuple[int, bytes]]:
    """The rows after `position`, oldest first: one per write transaction since."""
    return [(at, bytes.fromhex(digest)) for at, digest in query(
        ledger, f"SELECT position, digest FROM {DIGESTS} WHERE position > {{p}} "
        "ORDER BY position", (position,))]


def recorded(ledger, position: int) -> bytes | None:
    rows = query(ledger, f"SELECT digest FROM {DIGESTS} WHERE position = {{p}}", (position,))
    return bytes.fromhex(rows[0][0]) if rows else None


def newest(ledger) -> int:
    return query(ledger, f"SELECT max(position) FROM {DIGESTS}")[0][0] or 0
