"""Reading the whole store at one moment, in pages: what `audit verify` and a projection
rebuild stream through, without the recorder's per-row objects.

One read transaction covers a whole pass, so an entry committed meanwhile is neither half seen
nor a false alarm (SQLite's WAL snapshot; PostgreSQL's REPEATABLE READ). Writers are never
blocked.
"""

from __future__ import annotations

from collections.abc import Iterator

from m22bol.ledger import log_digest
from m22bol.ledger.store import events_table, log_position

PAGE = 10_000  # rows fetched per round trip


class Snapshot:
    """`with Snapshot(ledger) as snap:` then `snap.stream(sql)` or `snap.rows(sql)`. The SQL
    uses `{p}` for a parameter, `{events}` and `{pos}` for the backend's events table and log
    position column, `{digests}` for the log digests' table."""

    def __init__(self, ledger):
        self.ledger = ledger
        self.sqlite = ledger.url.startswith("sqlite")

    def __enter__(self) -> Snapshot:
        self._transaction = self.ledger.recorder.datastore.transaction(commit=False)
        cursor = self._transaction.__enter__()
        if self.sqlite:
            self._conn = cursor.sqlite_cursor.connection
        else:
            self._conn = cursor.connection
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return self

    def __exit__(self, *exc) -> None:
        self._transaction.__exit__(*exc)

    def _cursor(self, name: str | None = None):
        if self.sqlite:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor
        from psycopg.rows import tuple_row

        if name is None:
            return self._conn.cursor(row_factory=tuple_row)
        cursor = self._conn.cursor(name=name, row_factory=tuple_row)
        cursor.itersize = PAGE
        return cursor

    def stream(self, sql: str, params: tuple = (), name: str = "m22bol_stream") -> Iterator:
        """Rows one page at a time (a server-side cursor, `name`, on PostgreSQL)."""
        cursor = self._cursor(name)
        try:
            cursor.execute(self._sql(sql), params)
            while page := cursor.fetchmany(PAGE):
                yield from page
        finally:
            cursor.close()

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        cursor = self._cursor()
        try:
            cursor.execute(self._sql(sql), params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def _sql(self, sql: str) -> str:
        url = self.ledger.url
        return sql.format(p="?" if self.sqlite else "%s", events=events_table(url),
                          pos=log_position(url), digests=log_digest.DIGESTS)
