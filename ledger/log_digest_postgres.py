"""The PostgreSQL recorder of a ledger: inserts ordered by an advisory lock (`ledger.postgres`)
and the log's running digest (`ledger.log_digest`) recorded in the same transaction; apart so
that a SQLite ledger never imports psycopg (about 0.4 s)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import StoredEvent

from m22bol.ledger.log_digest import create_statement, extend, rows_of
from m22bol.ledger.postgres import AdvisoryLockRecorder


class PostgresLedgerRecorder(AdvisoryLockRecorder):
    """`insert_page` and `select_aggregate` work on a cursor the caller holds, so that a long
    import can write page after page in one open transaction and read back what it wrote
    (`ledger.paging`)."""

    def __init__(self, *args, **kwargs):
        from psycopg.sql import SQL

        super().__init__(*args, **kwargs)
        self.sql_create_statements.append(SQL(create_statement("postgres")))
        self.select_aggregate_statement = self.select_events_statement + SQL(
            " ORDER BY originator_version")

    def _fetch_ids_after_insert_events(self, curs, stored_events, **kwargs):
        # Runs inside the insert's transaction, after the lock that orders the log.
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if ids:
            extend(self.executor(curs), "postgres", ids, rows_of(stored_events))
        return ids

    def insert_page(self, curs, rows: list[tuple]) -> list[int]:
        """Insert (aggregate, version, topic, state) rows in one statement, after the lock
        that orders the log (as the library's `_insert_stored_events` does, from plain rows
        rather than its `StoredEvent`s); their positions. The digest is the caller's to fold
        and write."""
        if not rows:
            return []
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(self.insert_events_statement,
                     ([self.construct_pg_stored_event(*row) for row in rows],))
        return list(super()._fetch_ids_after_insert_events(curs, rows))

    def select_aggregate(self, curs, originator_id: UUID) -> list[StoredEvent]:
        curs.execute(self.select_aggregate_statement, (originator_id,), prepare=True)
        return [StoredEvent(originator_id=r["originator_id"],
                            originator_version=r["originator_version"], topic=r["topic"],
                            state=bytes(r["state"])) for r in curs.fetchall()]

    @staticmethod
    def executor(curs):
        def execute(sql: str, params: tuple, fetch: bool = True) -> list:
            curs.execute(sql, params)
            if not fetch:
                return []
            return [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                    for r in curs.fetchall()]

        return execute
