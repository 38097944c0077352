"""The PostgreSQL recorder of a ledger: inserts ordered by an advisory lock (`ledger.postgres`)
and the log's running digest (`ledger.log_digest`) recorded in the same transaction; apart so
that a SQLite ledger never imports psycopg (about 0.4 s)."""

from __future__ import annotations

from m22bol.ledger.log_digest import create_statement, extend
from m22bol.ledger.postgres import AdvisoryLockRecorder


class PostgresLedgerRecorder(AdvisoryLockRecorder):
    def __init__(self, *args, **kwargs):
        from psycopg.sql import SQL

        super().__init__(*args, **kwargs)
        self.sql_create_statements.append(SQL(create_statement("postgres")))

    def _fetch_ids_after_insert_events(self, curs, stored_events, **kwargs):
        # Runs inside the insert's transaction, after the lock that orders the log.
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if ids:
            def execute(sql: str, params: tuple, fetch: bool = True) -> list:
                curs.execute(sql, params)
                if not fetch:
                    return []
                return [tuple(r.values()) if isinstance(r, dict) else tuple(r)
                        for r in curs.fetchall()]

            extend(execute, "postgres", ids, stored_events)
        return ids
